"""Customer-success worklist and score files.

:func:`build_worklist` ranks the accounts to call first: customers in the configured risk
bands (``scoring.worklist_bands``) ordered by value at risk (churn probability × predicted
CLV), with churn probability, risk band, CLV, health, trend, the churn drivers written as
readable text and the account owner where the CRM knows it (``customers.owner``).
:func:`write_worklist` writes it as CSV and as one self-contained HTML page (inline style, no
scripts or external assets; every value escaped with :func:`html.escape`).
:func:`write_scores_file` writes a score frame to CSV or Parquet (``--output``).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import ScoringConfig

__all__ = [
    "WORKLIST_COLUMNS",
    "build_worklist",
    "render_reasons",
    "top_by_value_at_risk",
    "worklist_html",
    "write_scores_file",
    "write_worklist",
]

logger = logging.getLogger(__name__)

WORKLIST_COLUMNS: tuple[str, ...] = (
    "rank",
    "customer_id",
    "owner",
    "churn_risk",
    "churn_probability",
    "predicted_clv",
    "value_at_risk",
    "health_score",
    "trend",
    "rfm_segment",
    "cold_start",
    "reasons",
)


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "missing"
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def render_reasons(top_reasons: str | None, n: int = 3) -> str:
    """Readable text of a ``top_reasons`` JSON value: the ``n`` strongest churn drivers.

    Reasons that increase the churn probability come first (``"Days since last purchase =
    120 ↑"``); decreasing ones are added (``↓``) only when fewer than ``n`` increase it.
    Missing or unreadable JSON gives ``""``.
    """
    if top_reasons is None or (isinstance(top_reasons, float) and math.isnan(top_reasons)):
        return ""
    try:
        items = json.loads(top_reasons)
    except (TypeError, ValueError):
        return ""
    if not isinstance(items, list):
        return ""
    up = [r for r in items if isinstance(r, dict) and r.get("direction") == "increases"]
    down = [r for r in items if isinstance(r, dict) and r.get("direction") == "decreases"]
    parts = []
    for r, arrow in [*((r, "↑") for r in up), *((r, "↓") for r in down)][:n]:
        label = r.get("label") or r.get("feature") or "?"
        parts.append(f"{label} = {_fmt_value(r.get('value'))} {arrow}")
    return "; ".join(parts)


def top_by_value_at_risk(scores: pd.DataFrame, n: int, *, bands: Iterable[str] | None = None) -> pd.DataFrame:
    """The ``n`` rows of ``scores`` with the most value at risk, most first.

    Ties are broken by churn probability (higher first), then ``customer_id``, so the result
    never depends on the input order. The worklist (:func:`build_worklist`) and the choice of
    the customers whose churn reasons are computed (``crmscore.pipelines.score``) both rank
    with this function, so every worklist account is among the explained ones.

    Parameters
    ----------
    scores : DataFrame
        ``customer_id``, ``value_at_risk``, ``churn_probability`` and, with ``bands``,
        ``churn_risk`` (other columns are kept).
    n : int
        Rows to keep.
    bands : iterable of str, optional
        Only rows whose ``churn_risk`` is one of these.

    Returns
    -------
    DataFrame
        At most ``n`` rows of ``scores`` (index kept), in rank order.
    """
    rows = scores if bands is None else scores[scores["churn_risk"].isin(list(bands))]
    if len(rows) > n:
        # only rows with at least the n-th largest value at risk can rank: sort those alone
        var = rows["value_at_risk"].to_numpy(dtype=np.float64)
        key = np.where(np.isnan(var), -np.inf, var)
        kth = np.partition(key, len(key) - n)[len(key) - n]
        rows = rows[key >= kth]
    return rows.sort_values(
        ["value_at_risk", "churn_probability", "customer_id"],
        ascending=[False, False, True],
        kind="stable",
    ).head(n)


def build_worklist(
    scores: pd.DataFrame,
    customers: pd.DataFrame | None,
    cfg: ScoringConfig,
    *,
    top_n: int | None = None,
) -> pd.DataFrame:
    """Accounts ranked by value at risk, for the customer-success team.

    Parameters
    ----------
    scores : DataFrame
        Customer score rows (:func:`crmscore.scoring.rows.assemble_customer_scores` or the
        ``customer_scores`` table).
    customers : DataFrame or None
        Canonical ``customers`` table; its ``owner`` column (when present) names the owner.
    cfg : ScoringConfig
        ``worklist_bands`` and ``worklist_top_n``.
    top_n : int, optional
        Overrides ``scoring.worklist_top_n``.

    Returns
    -------
    DataFrame
        Columns :data:`WORKLIST_COLUMNS`; ``rank`` 1 = most value at risk (ties broken by
        churn probability, then id, so the order never depends on the input order).
    """
    n = cfg.worklist_top_n if top_n is None else top_n
    rows = top_by_value_at_risk(scores, n, bands=cfg.worklist_bands)
    owner = pd.Series(None, index=rows.index, dtype=object)
    if customers is not None and "owner" in customers.columns:
        known = customers.drop_duplicates("customer_id")
        own = pd.Series(
            known["owner"].to_numpy(dtype=object), index=known["customer_id"].astype(str).to_numpy()
        )
        owner = rows["customer_id"].astype(str).map(own)
    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "customer_id": rows["customer_id"].to_numpy(dtype=object),
            "owner": owner.to_numpy(dtype=object),
            "churn_risk": rows["churn_risk"].to_numpy(dtype=object),
            "churn_probability": rows["churn_probability"].to_numpy(dtype=np.float64),
            "predicted_clv": rows["predicted_clv"].to_numpy(dtype=np.float64),
            "value_at_risk": rows["value_at_risk"].to_numpy(dtype=np.float64),
            "health_score": rows["health_score"].to_numpy(dtype=np.float64),
            "trend": rows["trend"].to_numpy(dtype=object),
            "rfm_segment": rows["rfm_segment"].to_numpy(dtype=object),
            "cold_start": rows["cold_start"].to_numpy(dtype=bool),
            "reasons": [render_reasons(v) for v in rows["top_reasons"].to_numpy(dtype=object)],
        },
        columns=list(WORKLIST_COLUMNS),
    )
    owners = out["owner"].astype(object)
    out["owner"] = owners.where(owners.notna(), None)  # unknown owner: None (empty in CSV/HTML)
    logger.info("worklist: %d accounts (bands %s)", len(out), ", ".join(cfg.worklist_bands))
    return out


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:14px}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.num{text-align:right}"
    "tr.high td.band{color:#b00020;font-weight:bold}tr.medium td.band{color:#a65b00}"
)
_NUMERIC = {"rank", "churn_probability", "predicted_clv", "value_at_risk", "health_score"}


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        text = ""
    elif col == "churn_probability":
        text = f"{float(v):.1%}"
    elif col in ("predicted_clv", "value_at_risk"):
        text = f"{float(v):,.2f}"
    elif col == "health_score":
        text = f"{float(v):.1f}"
    else:
        text = str(v)
    cls = "num" if col in _NUMERIC else ("band" if col == "churn_risk" else "")
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def worklist_html(
    worklist: pd.DataFrame, *, title: str = "Customer-success worklist", subtitle: str = ""
) -> str:
    """One self-contained HTML page of the worklist (every value escaped, no external assets)."""
    head = "".join(f"<th>{html.escape(str(c).replace('_', ' '))}</th>" for c in worklist.columns)
    body = []
    for rec in worklist.itertuples(index=False):
        d = rec._asdict()
        band = html.escape(str(d.get("churn_risk", "")), quote=True)
        cells = "".join(_cell(c, v) for c, v in d.items())
        body.append(f'<tr class="{band}">{cells}</tr>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></body></html>\n"
    )


def write_worklist(
    worklist: pd.DataFrame,
    csv_path: str | Path | None,
    html_path: str | Path | None,
    *,
    as_of: date | datetime | str | None = None,
    run_id: str | None = None,
) -> list[Path]:
    """Write the worklist as CSV and/or HTML; returns the files written."""
    written = []
    if csv_path is not None:
        p = Path(csv_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        worklist.to_csv(p, index=False)
        written.append(p)
    if html_path is not None:
        p = Path(html_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        sub = ", ".join(
            s
            for s in (
                f"as of {pd.Timestamp(as_of).date()}" if as_of is not None else "",
                f"run {run_id}" if run_id else "",
                f"{len(worklist)} accounts ranked by value at risk (churn probability × predicted CLV)",
            )
            if s
        )
        p.write_text(worklist_html(worklist, subtitle=sub), encoding="utf-8")
        written.append(p)
    logger.info("worklist written: %s", ", ".join(map(str, written)))
    return written


def write_scores_file(df: pd.DataFrame, path: str | Path) -> Path:
    """Write score rows to ``.csv`` or ``.parquet`` / ``.pq`` (by extension), without the index."""
    from crmscore.io.files import write_table

    return write_table(df, path, index=False)
