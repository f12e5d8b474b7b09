"""Orchestration of ``crmscore report``: read the latest scores and training summary, render."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from crmscore.config import Config
from crmscore.core.schema import CRMData

__all__ = ["latest_scores", "run_report"]

log = logging.getLogger(__name__)


def latest_scores(cfg: Config) -> pd.DataFrame | None:
    """The latest customer scores written back to the CRM store, with owners; ``None`` if none.

    Only a CRM store (``data.source: crm``) holds written-back scores.
    """
    if cfg.data.source != "crm":
        return None
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import read_scores

    engine = create_engine(cfg.data.resolved_crm_url())
    try:
        scores = read_scores(engine, cfg.scoring, "customer_scores", cfg.data.db_schema)
    finally:
        engine.dispose()
    return None if scores.empty else scores


def run_report(
    data: CRMData,
    as_of: date,
    cfg: Config,
    *,
    html_path: Path | None = None,
    json_path: Path | None = None,
    train_summary: Path | None = None,
    scores: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Build the KPI and model report and write the HTML and JSON files.

    Parameters
    ----------
    data : CRMData
        Validated CRM data.
    as_of : date
        Report date (cutoff day).
    cfg : Config
        Full configuration (``report`` block for paths and definitions).
    html_path, json_path : Path, optional
        Output files (default ``report.html_path`` / ``report.json_path``).
    train_summary : Path, optional
        The ``--report-json`` file of ``crmscore train``; without it the report fits quick
        models itself for its model-quality section.
    scores : DataFrame, optional
        Latest customer scores; by default read from the CRM store when present.

    Returns
    -------
    (Path, Path)
        The HTML and JSON files written.
    """
    from crmscore.reporting.content import build_report, write_report

    summary: dict[str, Any] | None = None
    if train_summary is not None:
        summary = json.loads(Path(train_summary).read_text(encoding="utf-8"))
    if scores is None:
        scores = latest_scores(cfg)
    if scores is not None and data.customers is not None and "owner" not in scores.columns:
        owners = data.customers.set_index("customer_id").get("owner")
        if owners is not None:
            scores = scores.assign(owner=scores["customer_id"].map(owners))
    content = build_report(data, as_of, cfg, model_summary=summary, scores=scores)
    return write_report(content, html_path or cfg.report.html_path, json_path or cfg.report.json_path)
