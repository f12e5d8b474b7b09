"""KPI and model report: one self-contained HTML file plus a JSON file of every number.

:func:`build_report` computes the content (KPI trends from :mod:`crmscore.reporting.kpis`, model quality,
the accounts most at risk and the RFM segments) as plain data and PNG figures;
:func:`write_report` renders it (:mod:`crmscore.reporting.html`) to one HTML file with inline CSS
and images embedded as base64 ``data:`` URIs (no external asset, works offline and as an
e-mail attachment) and writes the numbers to JSON.

Model quality comes from ``model_summary`` (the dict written by ``crmscore train
--report-json``) when given. Without it the report is still useful on its own: it fits a quick
CLV model on a calibration/holdout split (``report.clv_holdout_days``) and evaluates a quick churn
model out of time (:func:`crmscore.estimators.churn.evaluate_churn`, ``report.quick_*``). The
at-risk accounts come from ``scores`` (the scoring output) when given, else from those quick models.
Only data known at ``as_of`` is used (:func:`crmscore.reporting.kpis.known_data`).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.core.serial import jsonable
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.reporting.kpis import (
    KPI_DEFINITIONS,
    KPI_LABELS,
    KpiResult,
    active_customers,
    compute_kpis,
    known_data,
)

__all__ = [
    "SECTIONS",
    "FigureBlock",
    "ReportContent",
    "Section",
    "TableBlock",
    "build_report",
    "write_report",
]

logger = logging.getLogger(__name__)


#: Section keys and headings, in order (every one is always present).
SECTIONS: dict[str, str] = {
    "summary": "At a glance",
    "customers": "Customers: growth, retention and churn",
    "revenue": "Revenue and value per customer",
    "acquisition": "Acquisition cost and lead pipeline",
    "quality": "How reliable are the predictions?",
    "at_risk": "Accounts most at risk",
    "segments": "Customer segments",
    "definitions": "How each number is defined",
}

_COLORS = {"main": "#2563eb", "second": "#f97316", "good": "#16a34a", "bad": "#dc2626", "grey": "#6b7280"}


# ----------------------------------------------------------------------------------------------
# content model
# ----------------------------------------------------------------------------------------------


@dataclass
class FigureBlock:
    """A chart: PNG bytes, a title and a one-line plain-language explanation."""

    title: str
    caption: str
    png: bytes


@dataclass
class TableBlock:
    """A table of already formatted cells, with a title and a one-line explanation."""

    title: str
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Card:
    """A headline number: label, formatted value and a short note (e.g. change)."""

    label: str
    value: str
    note: str = ""


@dataclass
class Section:
    """One report section: heading, a short introduction and its blocks (in order)."""

    key: str
    heading: str
    intro: str
    blocks: list[FigureBlock | TableBlock | Card | str] = field(default_factory=list)


@dataclass
class ReportContent:
    """Everything the report shows, before rendering.

    Attributes
    ----------
    title : str
    as_of : pandas.Timestamp
    sections : list of Section
        In :data:`SECTIONS` order.
    numbers : dict
        JSON-safe: every number shown (KPIs per period, channels, segments, model quality,
        at-risk accounts), written by :func:`write_report`.
    """

    title: str
    as_of: pd.Timestamp
    sections: list[Section]
    numbers: dict[str, Any]

    def figures(self) -> list[FigureBlock]:
        """All figures of the report, in order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, FigureBlock)]


# ----------------------------------------------------------------------------------------------
# formatting helpers
# ----------------------------------------------------------------------------------------------


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _num(x: Any, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * x:.{digits}f} %"


def _money(x: Any, currency: str, digits: int = 0) -> str:
    s = _num(x, digits)
    return s if s == "–" else f"{s} {currency}"


def _signed_pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "no previous value"
    return f"{'+' if x >= 0 else '−'}{abs(100 * x):.1f} % vs previous period"


def _axes(title: str, figsize: tuple[float, float] = (6.4, 3.3)) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _xticks(ax: Any, labels: list[str]) -> None:
    step = max(1, math.ceil(len(labels) / 12))
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right", fontsize=8)


def _line(
    table: pd.DataFrame, cols: Mapping[str, str], title: str, *, percent: bool = False, ylabel: str = ""
) -> bytes:
    fig, ax = _axes(title)
    x = np.arange(len(table))
    for (col, label), color in zip(
        cols.items(), (_COLORS["main"], _COLORS["second"], _COLORS["grey"]), strict=False
    ):
        y = table[col].to_numpy(dtype=float) * (100 if percent else 1)
        ax.plot(x, y, marker="o", ms=3, color=color, label=label)
    if percent:
        ax.set_ylabel("%")
    elif ylabel:
        ax.set_ylabel(ylabel)
    if len(cols) > 1:
        ax.legend(fontsize=8, frameon=False)
    _xticks(ax, list(table.index))
    return _png(fig)


def _bars(table: pd.DataFrame, col: str, title: str, ylabel: str = "") -> bytes:
    fig, ax = _axes(title)
    ax.bar(np.arange(len(table)), table[col].to_numpy(dtype=float), color=_COLORS["main"])
    if ylabel:
        ax.set_ylabel(ylabel)
    _xticks(ax, list(table.index))
    return _png(fig)


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------


def _summary(k: KpiResult, cur: str, top_fraction: float) -> Section:
    t = k.table
    top_pct = _pct(top_fraction, 0)
    last = t.iloc[-1]
    label = t.index[-1]
    cards = [
        Card("Active customers", _num(last["customers_end"]), _signed_pct(last["customer_growth_rate"])),
        Card("Revenue", _money(last["revenue"], cur), _signed_pct(last["revenue_growth"])),
        Card("Retention rate", _pct(last["retention_rate"]), "customers kept (returning ones included)"),
        Card("Churn rate", _pct(last["churn_rate"]), f"{_num(last['lost_customers'])} customers lost"),
        Card("Revenue per customer (ARPU)", _money(last["arpu"], cur, 2), "per active customer"),
        Card(
            "Acquisition cost (CAC)",
            _money(last["cac"], cur, 2),
            f"{_num(last['new_customers'])} new customers",
        ),
        Card(
            "Lifetime value : CAC", _num(last["ltv_to_cac"], 1) + " ×", "value of a customer per unit of cost"
        ),
        Card(
            f"Top {top_pct} of customers bring",
            _pct(last["top_customer_revenue_share"], 0),
            "of the period's revenue",
        ),
    ]
    intro = (
        f"Headline numbers for {label}, the last complete period before the report date, compared with "
        "the period before."
    )
    return Section("summary", SECTIONS["summary"], intro, list(cards))


def _customers_section(k: KpiResult) -> Section:
    t = k.table
    fig, ax = _axes("New and lost customers per period")
    x = np.arange(len(t))
    ax.bar(x - 0.2, t["new_customers"], width=0.4, color=_COLORS["good"], label="new")
    ax.bar(x + 0.2, t["lost_customers"], width=0.4, color=_COLORS["bad"], label="lost")
    top = float(max(t["new_customers"].max(), t["lost_customers"].max(), 1))
    ax.set_ylim(0, top * 1.25)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    _xticks(ax, list(t.index))
    blocks: list[Any] = [
        FigureBlock(
            "Customer base",
            "Number of active customers at the end of each period.",
            _line(t, {"customers_end": "active customers"}, "Active customers"),
        ),
        FigureBlock(
            "Customers won and lost",
            "Green: customers acquired in the period; red: customers who stopped being active.",
            _png(fig),
        ),
        FigureBlock(
            "Retention and churn",
            "Retention: share of the customers at the start still with us at the end. Churn: share we lost.",
            _line(
                t,
                {"retention_rate": "retention", "churn_rate": "churn"},
                "Retention and churn rate",
                percent=True,
            ),
        ),
        FigureBlock(
            "Customer growth",
            "How much the active customer base grew (above 0) or shrank (below 0) in each period.",
            _line(t, {"customer_growth_rate": "growth"}, "Customer growth rate", percent=True),
        ),
    ]
    intro = (
        "A customer counts as active when created and not lost (see the definitions at the end). "
        "Rising churn is the earliest warning sign in these charts."
    )
    return Section("customers", SECTIONS["customers"], intro, blocks)


def _revenue_section(k: KpiResult, cur: str) -> Section:
    t = k.table
    fig, ax = _axes("Where the change in revenue came from", figsize=(6.4, 3.5))
    x = np.arange(len(t))
    pos = [
        ("new_customer_revenue", "new customers", "#16a34a"),
        ("reactivation_revenue", "returning", "#86efac"),
        ("expansion_revenue", "existing spend more", "#2563eb"),
    ]
    neg = [
        ("contraction_revenue", "existing spend less", "#f97316"),
        ("lost_revenue", "stopped buying", "#dc2626"),
    ]
    bottom = np.zeros(len(t))
    for col, label, color in pos:
        v = t[col].to_numpy(dtype=float)
        ax.bar(x, v, bottom=bottom, color=color, label=label)
        bottom += v
    bottom = np.zeros(len(t))
    for col, label, color in neg:
        v = -t[col].to_numpy(dtype=float)
        ax.bar(x, v, bottom=bottom, color=color, label=label)
        bottom += v
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(cur)
    ax.legend(fontsize=7, frameon=False, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.28))
    _xticks(ax, list(t.index))
    blocks: list[Any] = [
        FigureBlock(
            "Revenue",
            "Net revenue (sales minus refunds) booked in each period.",
            _bars(t, "revenue", "Revenue per period", cur),
        ),
        FigureBlock(
            "Revenue bridge",
            "Above zero: revenue gained against the previous period; below zero: revenue lost, by reason.",
            _png(fig),
        ),
        FigureBlock(
            "Revenue per customer",
            "Average revenue per active customer (ARPU) in each period.",
            _line(t, {"arpu": "ARPU"}, "Revenue per active customer", ylabel=cur),
        ),
        FigureBlock(
            "Customer lifetime value",
            "Average value of a customer so far (historical) and including the model's forecast (predicted).",
            _line(
                t,
                {"historical_ltv": "historical", "predicted_ltv": "predicted"},
                "Lifetime value per customer",
                ylabel=cur,
            ),
        ),
        FigureBlock(
            "Revenue concentration",
            "Share of each period's revenue that comes from its top 20 % of buying customers.",
            _line(
                t,
                {"top_customer_revenue_share": "top 20 % share"},
                "Revenue from the top customers",
                percent=True,
            ),
        ),
    ]
    intro = "Revenue is net of refunds. Lifetime value and revenue per customer are in " + cur + "."
    return Section("revenue", SECTIONS["revenue"], intro, blocks)


def _acquisition_section(k: KpiResult, cur: str) -> Section:
    t = k.table
    ch = k.cac_by_channel
    blocks: list[Any] = [
        FigureBlock(
            "Acquisition cost",
            "Marketing spend divided by the number of new customers in each period (lower is better).",
            _line(t, {"cac": "CAC"}, "Cost to acquire a customer", ylabel=cur),
        ),
        FigureBlock(
            "Value for money",
            "Lifetime value divided by acquisition cost; above 3 is usually considered healthy.",
            _line(t, {"ltv_to_cac": "LTV : CAC"}, "Lifetime value per unit of acquisition cost"),
        ),
    ]
    if len(ch):
        blocks.append(
            TableBlock(
                "Acquisition cost by channel",
                f"Spend and new customers per channel over the {len(t)} periods shown.",
                ["Channel", "Marketing spend", "New customers", "Cost per new customer"],
                [
                    [str(i), _money(r.marketing_spend, cur), _num(r.new_customers), _money(r.cac, cur, 2)]
                    for i, r in ch.iterrows()
                ],
            )
        )
    blocks += [
        FigureBlock(
            "Qualified leads",
            "New leads per period that meet the qualification rule (see definitions).",
            _bars(t, "qualified_leads", "Qualified leads per period"),
        ),
        FigureBlock(
            "Lead conversion",
            "Share of each period's leads that became customers within the conversion window "
            "(recent periods are still open).",
            _line(t, {"lead_conversion_rate": "conversion rate"}, "Lead conversion rate", percent=True),
        ),
        FigureBlock(
            "Sales cycle",
            "Average number of days from a lead's creation to its conversion.",
            _line(t, {"avg_sales_cycle_days": "days"}, "Average sales cycle", ylabel="days"),
        ),
    ]
    intro = "What it costs to win customers, and how the lead pipeline that feeds them is moving."
    return Section("acquisition", SECTIONS["acquisition"], intro, blocks)


_METRIC_NAMES: dict[str, str] = {
    "roc_auc": "Ranking quality (AUC: 0.5 = guessing, 1 = perfect)",
    "capture_top_decile": "Churners found in the riskiest 10 %",
    "lift_top_decile": "Times better than random in the riskiest 10 %",
    "ece": "Calibration error (0 = probabilities match reality)",
    "brier": "Brier score (lower is better)",
}


_LEAD_METRIC_NAMES: dict[str, str] = {
    **_METRIC_NAMES,
    "capture_top_decile": "Conversions found in the best-scored 10 %",
    "lift_top_decile": "Times better than random in the best-scored 10 %",
}


def _churn_meaning(cfg: Config) -> str:
    c = cfg.churn
    if c.definition == "inactivity":
        return f"Churn here means: no purchase in the {c.horizon_days} days after a date."
    if c.definition == "contractual":
        return f"Churn here means: the contract ends within the {c.horizon_days} days after a date."
    return f"Churn here means: the customer is flagged in the '{c.label_column}' column."


def _churn_quality(metrics: pd.DataFrame, meaning: str = "") -> TableBlock:
    cols = [c for c in _METRIC_NAMES if c in metrics.columns]
    rows = []
    for name, r in metrics.iterrows():
        cells = [str(name)]
        for c in cols:
            v = r[c]
            cells.append(
                _pct(v, 0) if c == "capture_top_decile" else _num(v, 3 if c != "lift_top_decile" else 2)
            )
        rows.append(cells)
    return TableBlock(
        "Churn model against simple rules",
        "The first row is the model; the others are simpler rules it should beat, tested on a later period "
        f"it never saw. {meaning}".strip(),
        ["Method", *[_METRIC_NAMES[c] for c in cols]],
        rows,
    )


def _clv_quality(metrics: pd.DataFrame) -> TableBlock:
    names = {"model": "BG/NBD model", **_BASELINE_NAMES}
    rows = [
        [
            names.get(str(i), str(i)),
            _num(r["mae"], 3),
            _num(r["total_predicted"]),
            _num(r["total_actual"]),
            _num(r["aggregate_error_pct"], 1) + " %",
        ]
        for i, r in metrics.iterrows()
    ]
    return TableBlock(
        "Purchase forecast against simple rules",
        "Repeat purchases forecast for a held-out recent period versus what customers really did.",
        ["Method", "Average error per customer", "Forecast total", "Actual total", "Total error"],
        rows,
    )


_BASELINE_NAMES: dict[str, str] = {"zero": "'Nobody buys again'", "historical_rate": "'Past rate continues'"}
_MODEL_TITLES: dict[str, str] = {
    "churn": "Churn model",
    "leads": "Lead scoring model",
    "clv": "Lifetime-value model",
}
_CLV_METRICS: dict[str, str] = {
    "mae": "Average error per customer (purchases)",
    "rmse": "Root mean squared error",
    "aggregate_error_pct": "Total error (%)",
}


def _train_summary_blocks(summary: Mapping[str, Any]) -> list[TableBlock | str]:
    """Blocks of a ``crmscore train --report-json`` summary (``TrainResult.to_dict()``).

    Per model in ``summary["models"]``: its metrics beside its baselines (``metrics`` and
    ``baselines``), the evaluation split, registry version and promotion decision, and the
    fitted ``parameters`` (CLV: estimate and standard error); then the run details.
    """
    blocks: list[TableBlock | str] = []
    for key, m in summary.get("models", {}).items():
        title = _MODEL_TITLES.get(key, str(key))
        if m.get("status") != "trained":
            blocks.append(f"{title}: {m.get('status', 'unknown')}. {m.get('reason', '')}".strip())
            continue
        names = _CLV_METRICS if key == "clv" else _LEAD_METRIC_NAMES if key == "leads" else _METRIC_NAMES
        scored = {
            str(m.get("registered_name") or title): m.get("metrics", {}),
            **{_BASELINE_NAMES.get(k, k): v for k, v in m.get("baselines", {}).items()},
        }
        cols = [c for c in names if any(c in v for v in scored.values())]
        rows = [
            [
                str(n),
                *[
                    _pct(v.get(c), 0)
                    if c == "capture_top_decile" and v.get(c) is not None
                    else _fmt_any(v.get(c))
                    if v.get(c) is not None
                    else "–"
                    for c in cols
                ],
            ]
            for n, v in scored.items()
        ]
        split = str(m.get("split") or "")
        version = (
            f"registered as version {m['version']}" if m.get("version") is not None else "not registered"
        )
        promoted = "promoted to champion" if m.get("promoted") else "not promoted"
        reason = f" ({m['promotion_reason']})" if m.get("promotion_reason") else ""
        blocks.append(
            TableBlock(
                f"{title} against simple rules",
                f"The first row is the trained model; the others are simpler rules it should beat. "
                f"{split[:1].upper() + split[1:]}. {version.capitalize()}, {promoted}{reason}.",
                ["Method", *[names[c] for c in cols]],
                rows,
            )
        )
        params = m.get("parameters") or {}
        prow = []
        for block, vals in params.items():
            if not isinstance(vals, Mapping):
                prow.append([str(block), _fmt_any(vals), ""])
                continue
            for name, v in vals.items():
                if isinstance(v, Mapping):
                    prow.append([f"{block}: {name}", _fmt_any(v.get("estimate")), _fmt_any(v.get("se"))])
                else:
                    prow.append([f"{block}: {name}", _fmt_any(v), ""])
        if prow:
            blocks.append(
                TableBlock(
                    f"{title}: fitted parameters",
                    "For analysts: the model's parameters and their standard errors.",
                    ["parameter", "estimate", "standard error"],
                    prow,
                )
            )
    run = [
        [k, _fmt_any(summary.get(k))]
        for k in ("as_of", "parent_run_id", "experiment_id", "git_commit", "tracking_uri")
        if summary.get(k) is not None
    ]
    run += [
        [f"{k} run", f"{m.get('run_id')} (version {m.get('version')})"]
        for k, m in summary.get("models", {}).items()
        if m.get("run_id")
    ]
    if run:
        blocks.append(
            TableBlock("Training run", "Where these numbers come from (MLflow).", ["name", "value"], run)
        )
    return blocks


def _summary_tables(summary: Mapping[str, Any]) -> list[TableBlock | str]:
    """Rendering of ``crmscore train --report-json`` output (generic tables for other shapes)."""
    if isinstance(summary.get("models"), Mapping):
        return _train_summary_blocks(summary)
    blocks: list[TableBlock | str] = []
    scalars: list[list[str]] = []
    for key, val in summary.items():
        if isinstance(val, Mapping):
            sub_tables = {k: v for k, v in val.items() if isinstance(v, Mapping)}
            flat = [[str(k), _fmt_any(v)] for k, v in val.items() if not isinstance(v, Mapping)]
            for sk, sv in sub_tables.items():
                inner = {k: v for k, v in sv.items() if isinstance(v, Mapping)}
                if inner:  # e.g. metrics: {model: {auc: ..}, baseline: {..}}
                    cols = sorted({c for v in inner.values() for c in v})
                    rows = [[str(n), *[_fmt_any(v.get(c)) for c in cols]] for n, v in inner.items()]
                    blocks.append(
                        TableBlock(
                            f"{key}: {sk}",
                            "From the training run: the model beside its baselines.",
                            ["", *cols],
                            rows,
                        )
                    )
                else:
                    rows = [[str(k), _fmt_any(v)] for k, v in sv.items()]
                    blocks.append(
                        TableBlock(f"{key}: {sk}", "From the training run.", ["name", "value"], rows)
                    )
            if flat:
                blocks.append(TableBlock(str(key), "From the training run.", ["name", "value"], flat))
        else:
            scalars.append([str(key), _fmt_any(val)])
    if scalars:
        blocks.insert(
            0, TableBlock("Training run", "Where these numbers come from.", ["name", "value"], scalars)
        )
    return blocks


def _fmt_any(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | np.integer):
        return _num(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        return _num(v, 4) if abs(v) < 100 else _num(v, 1)
    if isinstance(v, list | tuple):
        return ", ".join(_fmt_any(x) for x in v)
    return str(v)


@dataclass
class _Quick:
    """Quick standalone models (when no training summary or scores are given)."""

    clv: Any = None
    clv_holdout: pd.DataFrame | None = None
    clv_holdout_model: Any = None
    churn: Any = None
    errors: dict[str, str] = field(default_factory=dict)


def _fit_clv_at(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> Any:
    from crmscore.estimators.clv.model import ClvModel
    from crmscore.features.btyd import btyd_summary

    summ = btyd_summary(
        data.transactions, as_of, period="D", time_unit=cfg.features.time_unit, refunds=cfg.features.refunds
    )
    return ClvModel.from_config(cfg.clv, time_unit=cfg.features.time_unit).fit(summ)


def _quick_clv_holdout(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> tuple[Any, pd.DataFrame]:
    from crmscore.estimators.clv.model import ClvModel
    from crmscore.features.btyd import calibration_and_holdout

    cal_end = as_of - pd.Timedelta(days=cfg.report.clv_holdout_days)
    ch = calibration_and_holdout(
        data.transactions,
        cal_end,
        as_of,
        period="D",
        time_unit=cfg.features.time_unit,
        refunds=cfg.features.refunds,
    )
    summ = ch.rename(
        columns={
            "frequency_cal": "frequency",
            "recency_cal": "recency",
            "T_cal": "T",
            "monetary_value_cal": "monetary_value",
        }
    )
    model = ClvModel.from_config(cfg.clv, time_unit=cfg.features.time_unit)
    model.fit(summ[["frequency", "recency", "T", "monetary_value"]])
    return model, ch


def _quick_churn(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> Any:
    from crmscore.estimators.churn import evaluate_churn
    from crmscore.pipelines.features import build_churn_training_set

    last = as_of - pd.Timedelta(days=cfg.churn.horizon_days)
    frame = build_churn_training_set(
        data,
        last,
        cfg,
        n_cutoffs=cfg.report.quick_cutoffs,
        step_days=cfg.features.cutoff_step_days,
        observed_until=as_of,
    )
    ccfg = cfg.churn.model_copy(update={"n_estimators": cfg.report.quick_n_estimators, "n_jobs": 1})
    return evaluate_churn(frame, ccfg, time_unit=cfg.features.time_unit)


def _quality_section(
    quick: _Quick,
    model_summary: Mapping[str, Any] | None,
    numbers: dict[str, Any],
    holdout_days: int,
    meaning: str,
) -> Section:
    blocks: list[Any] = []
    if model_summary is not None:
        intro = (
            "Numbers from the latest training run. Each model is compared with simple rules of thumb: "
            "a model is only worth using when it clearly beats them."
        )
        blocks += _summary_tables(model_summary)
        numbers["model_quality"] = {"source": "model_summary", **jsonable(model_summary)}
    else:
        intro = (
            "No training run was given, so quick models were fitted here on the data before the report date "
            "and tested on the most recent months they did not see. A model is only worth using when it "
            "clearly beats the simple rules of thumb beside it."
        )
        mq: dict[str, Any] = {"source": "standalone quick models"}
        if quick.churn is not None:
            rep = quick.churn
            blocks.append(_churn_quality(rep.metrics, meaning))
            figs = rep.figures()
            blocks.append(
                FigureBlock(
                    "Finding the churners",
                    "If you contact customers from the riskiest down, the curve shows the share of all "
                    "churners "
                    "reached; higher and further left is better.",
                    _png(figs["gains"]),
                )
            )
            blocks.append(
                FigureBlock(
                    "Are the probabilities honest?",
                    "Predicted churn probability against the share that really churned; points on the "
                    "diagonal "
                    "mean the numbers can be taken at face value.",
                    _png(figs["calibration"]),
                )
            )
            mq["churn"] = {"split": rep.split, "metrics": jsonable(rep.metrics)}
        if quick.clv_holdout_model is not None and quick.clv_holdout is not None:
            from crmscore.estimators.clv.plots import plot_calibration_vs_holdout_purchases
            from crmscore.evaluation.clv import holdout_metrics

            hm = holdout_metrics(quick.clv_holdout_model, quick.clv_holdout)
            blocks.append(_clv_quality(hm))
            blocks.append(
                FigureBlock(
                    "Forecast against reality",
                    "Average purchases in the held-out months, forecast and actual, for customers grouped by "
                    "how often they bought before; the closer the lines, the better.",
                    _png(plot_calibration_vs_holdout_purchases(quick.clv_holdout_model, quick.clv_holdout)),
                )
            )
            m = quick.clv_holdout_model
            blocks.append(
                TableBlock(
                    "Lifetime-value model parameters",
                    "Fitted BG/NBD (purchasing and drop-out) and Gamma-Gamma (spend) parameters, "
                    "for analysts.",
                    ["parameter", "value"],
                    [[k, _num(v, 4)] for k, v in {**m.bgnbd_params_, **m.gg_params_}.items()],
                )
            )
            mq["clv"] = {
                "holdout_metrics": jsonable(hm),
                "bgnbd_params": jsonable(m.bgnbd_params_),
                "gg_params": jsonable(m.gg_params_),
                "holdout_days": holdout_days,
            }
        numbers["model_quality"] = mq
    for what, err in quick.errors.items():
        blocks.append(f"The {what} could not be computed on this data: {err}")
    return Section("quality", SECTIONS["quality"], intro, blocks)


def _reason_value(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return "n/a"
    return _num(v, 0 if v.is_integer() or abs(v) >= 100 else 1)


def _reason_text(js: Any, n: int = 3) -> str:
    if js is None or (isinstance(js, float) and math.isnan(js)):
        return ""
    items = json.loads(js) if isinstance(js, str) else js
    ups = [r for r in items if r.get("direction") == "increases"][:n]
    parts = []
    for r in ups:
        parts.append(f"{r.get('label') or r.get('feature')} ({_reason_value(r.get('value'))})")
    return "; ".join(parts)


def _standalone_scores(data: CRMData, as_of: pd.Timestamp, cfg: Config, quick: _Quick) -> pd.DataFrame:
    from crmscore.estimators.reasons import reasons_json
    from crmscore.pipelines.features import build_feature_table

    X = build_feature_table(data, as_of, cfg)
    active = active_customers(data, cutoff_end(as_of), as_of, cfg.report)
    X = X[X.index.isin(active)]
    model = quick.churn.model
    p = model.predict_proba(X)[:, 1]
    clv = np.zeros(len(X))
    if quick.clv is not None:
        ok = X[["frequency", "recency", "T"]].notna().all(axis=1).to_numpy()
        summ = X.loc[ok, ["frequency", "recency", "T", "monetary_value"]].fillna({"monetary_value": 0.0})
        clv[ok] = quick.clv.predict(summ)["predicted_clv"].to_numpy()
    owner = (
        data.customers.drop_duplicates("customer_id").set_index("customer_id")["owner"].reindex(X.index)
        if data.customers is not None and "owner" in data.customers.columns
        else pd.Series(np.nan, index=X.index)
    )
    out = pd.DataFrame(
        {"churn_probability": p, "predicted_clv": clv, "value_at_risk": p * clv, "owner": owner.to_numpy()},
        index=X.index,
    )
    out = out.sort_values("value_at_risk", ascending=False).head(cfg.report.top_n)
    long = model.reasons(X.loc[out.index], n=3)
    out["top_reasons"] = reasons_json(long, len(out))
    return out.reset_index()


def _at_risk_section(
    top: pd.DataFrame | None, cur: str, source: str, numbers: dict[str, Any], horizon_months: int
) -> Section:
    intro = (
        "Customers most worth a call: ranked by value at risk = chance of leaving × the value they are "
        "expected "
        f"to bring over the next months. Source: {source}."
    )
    if top is None or not len(top):
        return Section("at_risk", SECTIONS["at_risk"], intro, ["No at-risk list could be computed."])
    rows = [
        [
            str(r.customer_id),
            "" if pd.isna(r.owner) else str(r.owner),
            _pct(r.churn_probability, 0),
            _money(r.predicted_clv, cur),
            _money(r.value_at_risk, cur),
            _reason_text(r.top_reasons),
        ]
        for r in top.itertuples(index=False)
    ]
    table = TableBlock(
        f"Top {len(top)} accounts by value at risk",
        "Reasons are the customer facts that raise the churn risk most (value in brackets).",
        [
            "Customer",
            "Owner",
            "Chance of leaving",
            f"Expected value (next {horizon_months} months)",
            "Value at risk",
            "Main reasons",
        ],
        rows,
    )
    numbers["at_risk"] = jsonable(top.drop(columns=["top_reasons"]).to_dict(orient="records"))
    return Section("at_risk", SECTIONS["at_risk"], intro, [table])


def _segments_section(k: KpiResult, cur: str) -> Section:
    seg = k.segments
    fig, ax = _axes("Share of customers and of revenue per segment", figsize=(6.4, 4.2))
    y = np.arange(len(seg))
    ax.barh(y - 0.2, seg["customer_share"] * 100, height=0.4, color=_COLORS["grey"], label="customers")
    ax.barh(y + 0.2, seg["revenue_share"].fillna(0) * 100, height=0.4, color=_COLORS["main"], label="revenue")
    ax.set_yticks(y, list(seg.index), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("% of total")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    table = TableBlock(
        "Segments",
        "Customers grouped by how recently, how often and how much they bought (RFM), at the report date.",
        ["Segment", "Customers", "Share of customers", "Revenue (last 12 months)", "Share of revenue"],
        [
            [str(i), _num(r.customers), _pct(r.customer_share), _money(r.revenue, cur), _pct(r.revenue_share)]
            for i, r in seg.iterrows()
        ],
    )
    blocks: list[Any] = [
        FigureBlock(
            "Segment mix",
            "Grey: share of customers in each segment; blue: share of the last 12 months' revenue "
            "they brought.",
            _png(fig),
        ),
        table,
    ]
    intro = (
        "Champions and Loyal customers bring most of the revenue; 'At risk' and 'Can't lose them' used "
        "to buy "
        "a lot but have not bought recently."
    )
    return Section("segments", SECTIONS["segments"], intro, blocks)


def _definitions_section(cfg: Config) -> Section:
    rc = cfg.report
    if rc.customer_definition == "activity":
        active = (
            "Active customer: created before the instant, with a purchase in the "
            f"{rc.activity_window_days} days "
            "before it, and not on a cancelled contract."
        )
    else:
        active = "Active customer: created before the instant and not on a cancelled contract (churned_at)."
    rule = (
        " and ".join(f"{k} is one of {', '.join(v)}" for k, v in rc.qualified_lead.items())
        or "every lead counts"
    )
    rows = [[KPI_LABELS.get(k, k), v] for k, v in KPI_DEFINITIONS.items()]
    return Section(
        "definitions",
        SECTIONS["definitions"],
        f"Periods are calendar {rc.period}s (UTC); only complete periods are shown and nothing after the "
        "report "
        f"date is used. {active} Qualified lead: {rule}.",
        [
            TableBlock(
                "Definitions", "Formulas behind every number in this report.", ["Number", "Definition"], rows
            )
        ],
    )


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def build_report(
    data: CRMData,
    as_of: DateLike,
    cfg: Config,
    *,
    model_summary: dict[str, Any] | None = None,
    scores: pd.DataFrame | None = None,
) -> ReportContent:
    """Compute the content of the KPI and model report at the cutoff ``as_of``.

    Parameters
    ----------
    data : CRMData
        Canonical CRM tables (not modified); only data known at ``as_of`` is used.
    as_of : date-like
        Report date (cutoff day, UTC). The KPI trends cover the ``report.n_periods`` complete
        ``report.period`` periods ending by it.
    cfg : Config
        Reads ``report`` (periods, definitions, top N), and for the quick models ``features``,
        ``churn`` and ``clv``.
    model_summary : dict, optional
        Output of ``crmscore train --report-json``: per-model metrics beside baselines, CLV
        parameters and run details; nested mappings are shown as tables. Without it the quality
        section is computed here with quick models.
    scores : DataFrame, optional
        Scoring output with ``customer_id``, ``churn_probability``, ``predicted_clv``,
        ``value_at_risk``, ``owner`` and ``top_reasons`` (JSON); without it the at-risk accounts
        come from the quick models.

    Returns
    -------
    ReportContent
        Sections in :data:`SECTIONS` order and the JSON numbers.
    """
    as_of = as_of_day(as_of)
    cur = cfg.report.currency
    known = known_data(data, as_of)
    quick = _Quick()
    has_tx = known.transactions is not None and len(known.transactions) > 0
    if has_tx:
        try:
            quick.clv = _fit_clv_at(known, as_of, cfg)
        except Exception as exc:  # the report must render even when a model cannot be fitted
            logger.warning("CLV model at %s failed: %s", as_of.date(), exc)
            quick.errors["lifetime-value model"] = f"{type(exc).__name__}: {exc}"
    if model_summary is None and has_tx:
        try:
            quick.clv_holdout_model, quick.clv_holdout = _quick_clv_holdout(known, as_of, cfg)
        except Exception as exc:
            logger.warning("CLV holdout check failed: %s", exc)
            quick.errors["lifetime-value holdout check"] = f"{type(exc).__name__}: {exc}"
    if (model_summary is None or scores is None) and has_tx:
        try:
            quick.churn = _quick_churn(known, as_of, cfg)
        except Exception as exc:
            logger.warning("quick churn model failed: %s", exc)
            quick.errors["churn model check"] = f"{type(exc).__name__}: {exc}"

    kpis = compute_kpis(known, as_of, cfg.report, model=quick.clv, rfm_bins=cfg.features.rfm_bins)
    numbers: dict[str, Any] = {
        "title": cfg.report.title,
        "as_of": as_of.date().isoformat(),
        "period": cfg.report.period,
        "currency": cur,
        "customer_definition": cfg.report.customer_definition,
        "kpis": jsonable(kpis.table.drop(columns=["period_start", "period_end"])),
        "cac_by_channel": jsonable(kpis.cac_by_channel),
        "segments": jsonable(kpis.segments),
        "definitions": dict(KPI_DEFINITIONS),
    }
    if scores is not None:
        need = {"customer_id", "churn_probability", "predicted_clv", "value_at_risk"}
        missing = need - set(scores.columns)
        if missing:
            raise ValueError(f"scores lack columns {sorted(missing)}")
        top = scores.sort_values("value_at_risk", ascending=False).head(cfg.report.top_n).copy()
        for c in ("owner", "top_reasons"):
            if c not in top:
                top[c] = None
        source = "the latest scoring run"
    elif quick.churn is not None:
        top = _standalone_scores(known, as_of, cfg, quick)
        source = "quick models fitted for this report"
    else:
        top, source = None, "not available"
    sections = [
        _summary(kpis, cur, cfg.report.top_customer_fraction),
        _customers_section(kpis),
        _revenue_section(kpis, cur),
        _acquisition_section(kpis, cur),
        _quality_section(quick, model_summary, numbers, cfg.report.clv_holdout_days, _churn_meaning(cfg)),
        _at_risk_section(top, cur, source, numbers, cfg.clv.horizon_months),
        _segments_section(kpis, cur),
        _definitions_section(cfg),
    ]
    logger.info(
        "report content built for %s: %d figures",
        as_of.date(),
        sum(isinstance(b, FigureBlock) for s in sections for b in s.blocks),
    )
    return ReportContent(title=cfg.report.title, as_of=as_of, sections=sections, numbers=numbers)


def write_report(content: ReportContent, html_path: str | Path, json_path: str | Path) -> tuple[Path, Path]:
    """Write the self-contained HTML report and the JSON of its numbers.

    Returns
    -------
    tuple of Path
        The HTML and JSON paths (parent folders are created).
    """
    from crmscore.reporting.html import render_html

    h, j = Path(html_path), Path(json_path)
    for p in (h, j):
        p.parent.mkdir(parents=True, exist_ok=True)
    h.write_text(render_html(content), encoding="utf-8")
    j.write_text(json.dumps(jsonable(content.numbers), indent=2, allow_nan=False), encoding="utf-8")
    logger.info("wrote report %s and %s", h, j)
    return h, j


def figure_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
