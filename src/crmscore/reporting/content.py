"""The report's data model: blocks, sections, the whole content, and the helpers that fill them.

A report (:class:`ReportContent`) is a list of :class:`Section` (keys and headings in
:data:`SECTIONS`), each a list of blocks: :class:`Card` (a headline number),
:class:`FigureBlock` (a PNG chart), :class:`TableBlock` (formatted cells) or a plain text note
(``str``), plus the JSON-safe numbers behind them. A chart, table or card whose input table is
absent from the CRM is replaced by a :func:`no_data` note, never drawn empty.

:class:`QuickModels` carries the model outputs the report shows when no training summary or
scores are given; the caller fits them (``fit_quick_models`` of the ``crmscore report``
orchestration), the report only shows them. This module also holds the number formatters (``_num``, ``_pct``,
``_money``, ``_signed_pct``) and chart helpers (``_axes``, ``_line``, ``_bars``, ``_xticks``,
``_png``) the section builders use (:mod:`crmscore.reporting.sections`,
:mod:`crmscore.reporting.quality`); :func:`crmscore.reporting.build.build_report` assembles the
content and :func:`crmscore.reporting.html.write_report` writes it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "QUICK_CHURN",
    "QUICK_CLV",
    "QUICK_CLV_HOLDOUT",
    "SECTIONS",
    "Block",
    "Card",
    "FigureBlock",
    "QuickModels",
    "ReportContent",
    "Section",
    "TableBlock",
    "figure_data_uri",
    "no_data",
]


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

#: Keys of :attr:`QuickModels.errors` (also the wording of the report's notes).
QUICK_CLV = "lifetime-value model"
QUICK_CLV_HOLDOUT = "lifetime-value holdout check"
QUICK_CHURN = "churn model check"


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


#: What a section holds: a card, a chart, a table or a text note.
Block = FigureBlock | TableBlock | Card | str


@dataclass
class QuickModels:
    """Model outputs for the report, fitted by the caller on the data known at the report date.

    Used when no training summary (quality section) or scores (at-risk accounts) are given; the
    report fits nothing itself. Every field is optional: what is missing is shown as a note.

    Attributes
    ----------
    clv : object, optional
        Fitted CLV model at the report date (``predict(summary)`` giving ``predicted_clv``,
        ``time_unit``), for the predicted lifetime value KPI.
    churn_metrics : DataFrame, optional
        Out-of-time metrics of a quick churn model (first row) and its baselines (rows), columns
        such as ``roc_auc``, ``capture_top_decile``, ``lift_top_decile``, ``ece``, ``brier``.
    churn_split : str
        How that evaluation was split (shown and written to the JSON).
    churn_figures : dict of str to Figure
        ``gains`` and ``calibration`` charts of that evaluation.
    clv_holdout_metrics : DataFrame, optional
        :func:`crmscore.evaluation.clv.holdout_metrics` of a CLV model fitted on a calibration
        period and tested on the ``report.clv_holdout_days`` after it.
    clv_holdout_figure : Figure, optional
        Holdout purchases, forecast against actual, by calibration frequency.
    bgnbd_params, gg_params : dict
        Fitted parameters of that calibration model.
    scores : DataFrame, optional
        At-risk accounts from the quick models, ranked by ``value_at_risk`` (the columns of the
        ``scores`` argument of :func:`crmscore.reporting.build.build_report`).
    errors : dict
        What could not be computed (:data:`QUICK_CLV`, :data:`QUICK_CLV_HOLDOUT`,
        :data:`QUICK_CHURN`) and why; each becomes a note of the quality section.
    """

    clv: Any = None
    churn_metrics: pd.DataFrame | None = None
    churn_split: str = ""
    churn_figures: dict[str, Figure] = field(default_factory=dict)
    clv_holdout_metrics: pd.DataFrame | None = None
    clv_holdout_figure: Figure | None = None
    bgnbd_params: dict[str, float] = field(default_factory=dict)
    gg_params: dict[str, float] = field(default_factory=dict)
    scores: pd.DataFrame | None = None
    errors: dict[str, str] = field(default_factory=dict)


def no_data(table: str, shown: str = "") -> str:
    """The note that replaces a chart, table or card whose input ``table`` is absent.

    ``"no data: leads not in this CRM"``, followed by ``shown`` in brackets when given (what the
    note replaces, or why the table is needed).
    """
    note = f"no data: {table} not in this CRM"
    return f"{note} ({shown})" if shown else note


def figure_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ----------------------------------------------------------------------------------------------
# formatting and charts
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
