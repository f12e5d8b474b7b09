"""KPI and model report content: :func:`build_report` assembles every section from plain inputs.

The content (KPI trends from :mod:`crmscore.reporting.kpis`, model quality, the accounts most at
risk and the RFM segments) is plain data and PNG figures
(:class:`crmscore.reporting.content.ReportContent`); :func:`crmscore.reporting.html.write_report`
renders it to one self-contained HTML file and writes the numbers to JSON.

The report fits no model. Model quality comes from ``model_summary`` (the dict written by
``crmscore train --report-json``) when given, the at-risk accounts from ``scores`` (the scoring
output); otherwise both come from ``quick`` (:class:`crmscore.reporting.content.QuickModels`),
which the caller fits (``fit_quick_models`` of the ``crmscore report`` orchestration). A section whose
input table is absent shows a "no data" note instead of an empty chart. Only data known at
``as_of`` is used (:func:`crmscore.reporting.kpis.known_data`).

Imports point one way: ``build`` uses ``sections`` and ``quality``, which use ``content`` and
``kpis`` (``kpis`` uses ``kpis_acquisition`` and ``kpi_base``); ``html`` uses ``content``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.core.serial import jsonable
from crmscore.core.time import DateLike, as_of_day
from crmscore.reporting.content import FigureBlock, QuickModels, ReportContent
from crmscore.reporting.kpis import KPI_DEFINITIONS, compute_kpis, known_data
from crmscore.reporting.quality import churn_meaning, quality_section
from crmscore.reporting.sections import (
    acquisition_section,
    at_risk_section,
    customers_section,
    definitions_section,
    revenue_section,
    segments_section,
    summary_section,
)

__all__ = ["REPORT_TABLES", "absent_tables", "build_report"]

logger = logging.getLogger(__name__)

#: The CRM tables whose absence the report records (``numbers["absent_tables"]``); a block that
#: needs a missing one is a "no data" note. Support tickets only feed the churn model's features,
#: so no block needs them directly.
REPORT_TABLES: tuple[str, ...] = ("customers", "transactions", "leads", "marketing_spend", "support_tickets")

_SCORE_COLUMNS = frozenset({"customer_id", "churn_probability", "predicted_clv", "value_at_risk"})


def absent_tables(data: CRMData) -> frozenset[str]:
    """The :data:`REPORT_TABLES` that ``data`` lacks or holds no row of."""
    return frozenset(t for t in REPORT_TABLES if (df := data.get(t)) is None or not len(df))


def _at_risk(scores: pd.DataFrame | None, quick: QuickModels, top_n: int) -> tuple[pd.DataFrame | None, str]:
    """The at-risk accounts to list and where they come from."""
    if scores is not None:
        missing = _SCORE_COLUMNS - set(scores.columns)
        if missing:
            raise ValueError(f"scores lack columns {sorted(missing)}")
        top = scores.sort_values("value_at_risk", ascending=False).head(top_n).copy()
        for c in ("owner", "top_reasons"):
            if c not in top:
                top[c] = None
        return top, "the latest scoring run"
    if quick.scores is not None:
        return quick.scores, "quick models fitted for this report"
    return None, "not available"


def build_report(
    data: CRMData,
    as_of: DateLike,
    cfg: Config,
    *,
    model_summary: Mapping[str, Any] | None = None,
    scores: pd.DataFrame | None = None,
    quick: QuickModels | None = None,
) -> ReportContent:
    """Compute the content of the KPI and model report at the cutoff ``as_of`` (no model is fitted).

    Parameters
    ----------
    data : CRMData
        Canonical CRM tables (not modified); only data known at ``as_of`` is used. Absent tables
        are fine: what needs them is replaced by a "no data" note.
    as_of : date-like
        Report date (cutoff day, UTC). The KPI trends cover the ``report.n_periods`` complete
        ``report.period`` periods ending by it.
    cfg : Config
        Reads ``report`` (periods, definitions, top N), ``features.rfm_bins``, ``churn`` (what
        churn means) and ``clv.horizon_months``.
    model_summary : mapping, optional
        Output of ``crmscore train --report-json``: per-model metrics beside baselines, CLV
        parameters and run details; nested mappings are shown as tables. Without it the quality
        section shows the quick-model checks of ``quick``.
    scores : DataFrame, optional
        Scoring output with ``customer_id``, ``churn_probability``, ``predicted_clv``,
        ``value_at_risk``, ``owner`` and ``top_reasons`` (JSON); without it the at-risk accounts
        are ``quick.scores``.
    quick : QuickModels, optional
        Model outputs fitted by the caller at ``as_of``: the CLV model for the predicted
        lifetime value, the quick churn and CLV checks, at-risk scores and the errors of those
        that failed. None: no model output (the predicted lifetime value and the checks are
        "no data" notes).

    Returns
    -------
    ReportContent
        Sections in :data:`crmscore.reporting.content.SECTIONS` order and the JSON numbers.

    Raises
    ------
    ValueError
        ``scores`` lack one of the required columns.
    """
    as_of = as_of_day(as_of)
    quick = quick if quick is not None else QuickModels()
    rc = cfg.report
    cur = rc.currency
    known = known_data(data, as_of)
    absent = absent_tables(known)
    kpis = compute_kpis(known, as_of, rc, model=quick.clv, rfm_bins=cfg.features.rfm_bins)
    numbers: dict[str, Any] = {
        "title": rc.title,
        "as_of": as_of.date().isoformat(),
        "period": rc.period,
        "currency": cur,
        "customer_definition": rc.customer_definition,
        "absent_tables": sorted(absent),
        "kpis": jsonable(kpis.table.drop(columns=["period_start", "period_end"])),
        "cac_by_channel": jsonable(kpis.cac_by_channel),
        "segments": jsonable(kpis.segments),
        "definitions": dict(KPI_DEFINITIONS),
    }
    top, source = _at_risk(scores, quick, rc.top_n)
    sections = [
        summary_section(kpis, cur, rc, absent),
        customers_section(kpis, rc, absent),
        revenue_section(kpis, cur, rc, absent),
        acquisition_section(kpis, cur, rc, absent),
        quality_section(quick, model_summary, numbers, rc.clv_holdout_days, churn_meaning(cfg), absent),
        at_risk_section(top, cur, source, numbers, cfg.clv.horizon_months, absent),
        segments_section(kpis, cur, absent),
        definitions_section(cfg),
    ]
    logger.info(
        "report content built for %s: %d figures",
        as_of.date(),
        sum(isinstance(b, FigureBlock) for s in sections for b in s.blocks),
    )
    return ReportContent(title=rc.title, as_of=as_of, sections=sections, numbers=numbers)
