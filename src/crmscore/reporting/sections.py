"""Section builders of the report: summary, customers, revenue, acquisition, at-risk, segments, definitions.

Each builder turns the KPIs (:class:`crmscore.reporting.kpis.KpiResult`) or the at-risk frame
into one :class:`crmscore.reporting.content.Section` of cards, charts, tables and notes. A block
whose input table is absent from the CRM (``absent``: the table names missing or empty at the
report date) is not drawn: one :func:`crmscore.reporting.content.no_data` note per absent table
names the blocks it replaces. A line chart with no value at all in the periods shown is replaced
by a note too. The model-quality section is in :mod:`crmscore.reporting.quality`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config, ReportConfig
from crmscore.core.serial import jsonable
from crmscore.reporting.content import (
    _COLORS,
    SECTIONS,
    Block,
    Card,
    FigureBlock,
    Section,
    TableBlock,
    _axes,
    _bars,
    _line,
    _money,
    _num,
    _pct,
    _png,
    _signed_pct,
    _xticks,
    no_data,
)
from crmscore.reporting.kpis import KPI_DEFINITIONS, KPI_LABELS, KpiResult

__all__ = [
    "acquisition_section",
    "at_risk_section",
    "customer_gap",
    "customers_section",
    "definitions_section",
    "revenue_section",
    "segments_section",
    "summary_section",
]

#: One block of a section: the absent table it needs (None: all present), its title, the block
#: or a function building it (called only when the table is present).
_Item = tuple[str | None, str, Block | Callable[[], Block]]


# ----------------------------------------------------------------------------------------------
# "no data" helpers
# ----------------------------------------------------------------------------------------------


def _gap(absent: Collection[str], *tables: str) -> str | None:
    """The first of ``tables`` absent from the CRM, or None."""
    return next((t for t in tables if t in absent), None)


def customer_gap(absent: Collection[str], definition: str) -> str | None:
    """The absent table that leaves the active customers unknown, or None.

    Without customers and transactions there are no customers at all; with the activity
    definition a customer is active through their purchases, so transactions are needed.
    """
    if "customers" in absent and "transactions" in absent:
        return "customers"
    if definition == "activity" and "transactions" in absent:
        return "transactions"
    return None


def _blocks(items: Iterable[_Item]) -> list[Block]:
    """The blocks whose input table is present, then one "no data" note per absent table."""
    out: list[Block] = []
    missing: dict[str, list[str]] = {}
    for gap, title, block in items:
        if gap is not None:
            missing.setdefault(gap, []).append(title)
        else:
            out.append(block() if callable(block) else block)
    out += [no_data(table, "not shown: " + ", ".join(titles)) for table, titles in missing.items()]
    return out


def _line_block(
    title: str,
    caption: str,
    table: pd.DataFrame,
    cols: Mapping[str, str],
    chart_title: str,
    *,
    why_empty: str = "",
    percent: bool = False,
    ylabel: str = "",
) -> Block:
    """A line chart of ``cols``, or a note when none of them has a value in the periods shown."""
    if table[list(cols)].isna().all().all():
        why = f": {why_empty}" if why_empty else ""
        return f"no data for '{title}' in the periods shown{why}."
    return FigureBlock(title, caption, _line(table, cols, chart_title, percent=percent, ylabel=ylabel))


# ----------------------------------------------------------------------------------------------
# KPI sections
# ----------------------------------------------------------------------------------------------


def summary_section(k: KpiResult, cur: str, rc: ReportConfig, absent: Collection[str]) -> Section:
    """Headline cards of the last complete period against the one before."""
    t = k.table
    top_pct = _pct(rc.top_customer_fraction, 0)
    last = t.iloc[-1]
    label = t.index[-1]
    cust = customer_gap(absent, rc.customer_definition)
    tx = _gap(absent, "transactions")
    spend = _gap(absent, "marketing_spend")
    cards: list[tuple[str | None, Card]] = [
        (
            cust,
            Card("Active customers", _num(last["customers_end"]), _signed_pct(last["customer_growth_rate"])),
        ),
        (tx, Card("Revenue", _money(last["revenue"], cur), _signed_pct(last["revenue_growth"]))),
        (
            cust,
            Card("Retention rate", _pct(last["retention_rate"]), "customers kept (returning ones included)"),
        ),
        (
            cust,
            Card("Churn rate", _pct(last["churn_rate"]), f"{_num(last['lost_customers'])} customers lost"),
        ),
        (
            tx or cust,
            Card("Revenue per customer (ARPU)", _money(last["arpu"], cur, 2), "per active customer"),
        ),
        (
            spend,
            Card(
                "Acquisition cost (CAC)",
                _money(last["cac"], cur, 2),
                f"{_num(last['new_customers'])} new customers",
            ),
        ),
        (
            spend or tx,
            Card(
                "Lifetime value : CAC",
                _num(last["ltv_to_cac"], 1) + " ×",
                "value of a customer per unit of cost",
            ),
        ),
        (
            tx,
            Card(
                f"Top {top_pct} of customers bring",
                _pct(last["top_customer_revenue_share"], 0),
                "of the period's revenue",
            ),
        ),
    ]
    intro = (
        f"Headline numbers for {label}, the last complete period before the report date, compared with "
        "the period before."
    )
    return Section("summary", SECTIONS["summary"], intro, _blocks((g, c.label, c) for g, c in cards))


def _won_lost_png(t: pd.DataFrame) -> bytes:
    fig, ax = _axes("New and lost customers per period")
    x = np.arange(len(t))
    ax.bar(x - 0.2, t["new_customers"], width=0.4, color=_COLORS["good"], label="new")
    ax.bar(x + 0.2, t["lost_customers"], width=0.4, color=_COLORS["bad"], label="lost")
    top = float(max(t["new_customers"].max(), t["lost_customers"].max(), 1))
    ax.set_ylim(0, top * 1.25)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    _xticks(ax, list(t.index))
    return _png(fig)


def customers_section(k: KpiResult, rc: ReportConfig, absent: Collection[str]) -> Section:
    """Active customers, customers won and lost, retention and churn, growth."""
    t = k.table
    cust = customer_gap(absent, rc.customer_definition)
    items: list[_Item] = [
        (
            cust,
            "Customer base",
            lambda: _line_block(
                "Customer base",
                "Number of active customers at the end of each period.",
                t,
                {"customers_end": "active customers"},
                "Active customers",
            ),
        ),
        (
            cust,
            "Customers won and lost",
            lambda: FigureBlock(
                "Customers won and lost",
                "Green: customers acquired in the period; red: customers who stopped being active.",
                _won_lost_png(t),
            ),
        ),
        (
            cust,
            "Retention and churn",
            lambda: _line_block(
                "Retention and churn",
                "Retention: share of the customers at the start still with us at the end. Churn: share we "
                "lost.",
                t,
                {"retention_rate": "retention", "churn_rate": "churn"},
                "Retention and churn rate",
                why_empty="no active customer at the start of any period",
                percent=True,
            ),
        ),
        (
            cust,
            "Customer growth",
            lambda: _line_block(
                "Customer growth",
                "How much the active customer base grew (above 0) or shrank (below 0) in each period.",
                t,
                {"customer_growth_rate": "growth"},
                "Customer growth rate",
                why_empty="no active customer at the start of any period",
                percent=True,
            ),
        ),
    ]
    intro = (
        "A customer counts as active when created and not lost (see the definitions at the end). "
        "Rising churn is the earliest warning sign in these charts."
    )
    return Section("customers", SECTIONS["customers"], intro, _blocks(items))


def _bridge_png(t: pd.DataFrame, cur: str) -> bytes:
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
    return _png(fig)


def revenue_section(k: KpiResult, cur: str, rc: ReportConfig, absent: Collection[str]) -> Section:
    """Revenue, its bridge, ARPU, lifetime value and concentration."""
    t = k.table
    tx = _gap(absent, "transactions")
    has_model = bool(t["predicted_ltv"].notna().any())
    ltv_cols = {"historical_ltv": "historical", "predicted_ltv": "predicted"} if has_model else {}
    items: list[_Item] = [
        (
            tx,
            "Revenue",
            lambda: FigureBlock(
                "Revenue",
                "Net revenue (sales minus refunds) booked in each period.",
                _bars(t, "revenue", "Revenue per period", cur),
            ),
        ),
        (
            tx,
            "Revenue bridge",
            lambda: FigureBlock(
                "Revenue bridge",
                "Above zero: revenue gained against the previous period; below zero: revenue lost, by "
                "reason.",
                _bridge_png(t, cur),
            ),
        ),
        (
            tx or customer_gap(absent, rc.customer_definition),
            "Revenue per customer",
            lambda: _line_block(
                "Revenue per customer",
                "Average revenue per active customer (ARPU) in each period.",
                t,
                {"arpu": "ARPU"},
                "Revenue per active customer",
                why_empty="no active customer in any period",
                ylabel=cur,
            ),
        ),
        (
            tx,
            "Customer lifetime value",
            lambda: _line_block(
                "Customer lifetime value",
                "Average value of a customer so far (historical) and including the model's forecast "
                "(predicted).",
                t,
                ltv_cols or {"historical_ltv": "historical"},
                "Lifetime value per customer",
                ylabel=cur,
            ),
        ),
        (
            tx,
            "Revenue concentration",
            lambda: _line_block(
                "Revenue concentration",
                "Share of each period's revenue that comes from its top 20 % of buying customers.",
                t,
                {"top_customer_revenue_share": "top 20 % share"},
                "Revenue from the top customers",
                why_empty="no positive revenue in any period",
                percent=True,
            ),
        ),
    ]
    blocks = _blocks(items)
    if tx is None and not has_model:
        blocks.append(
            "no data: no lifetime-value model for this report (predicted lifetime value not shown)."
        )
    intro = "Revenue is net of refunds. Lifetime value and revenue per customer are in " + cur + "."
    return Section("revenue", SECTIONS["revenue"], intro, blocks)


def _channel_table(k: KpiResult, cur: str) -> TableBlock:
    return TableBlock(
        "Acquisition cost by channel",
        f"Spend and new customers per channel over the {len(k.table)} periods shown.",
        ["Channel", "Marketing spend", "New customers", "Cost per new customer"],
        [
            [str(i), _money(r.marketing_spend, cur), _num(r.new_customers), _money(r.cac, cur, 2)]
            for i, r in k.cac_by_channel.iterrows()
        ],
    )


def acquisition_section(k: KpiResult, cur: str, rc: ReportConfig, absent: Collection[str]) -> Section:
    """CAC, LTV:CAC and CAC by channel; qualified leads, lead conversion and the sales cycle."""
    t = k.table
    spend = _gap(absent, "marketing_spend")
    leads = _gap(absent, "leads")
    items: list[_Item] = [
        (
            spend,
            "Acquisition cost",
            lambda: _line_block(
                "Acquisition cost",
                "Marketing spend divided by the number of new customers in each period (lower is better).",
                t,
                {"cac": "CAC"},
                "Cost to acquire a customer",
                why_empty="no new customer in any period",
                ylabel=cur,
            ),
        ),
        (
            spend or _gap(absent, "transactions"),
            "Value for money",
            lambda: _line_block(
                "Value for money",
                "Lifetime value divided by acquisition cost; above 3 is usually considered healthy.",
                t,
                {"ltv_to_cac": "LTV : CAC"},
                "Lifetime value per unit of acquisition cost",
            ),
        ),
    ]
    if spend is not None or len(k.cac_by_channel):
        items.append((spend, "Acquisition cost by channel", lambda: _channel_table(k, cur)))
    w = rc.lead_conversion_window_days
    items += [
        (
            leads,
            "Qualified leads",
            lambda: FigureBlock(
                "Qualified leads",
                "New leads per period that meet the qualification rule (see definitions).",
                _bars(t, "qualified_leads", "Qualified leads per period"),
            ),
        ),
        (
            leads,
            "Lead conversion",
            lambda: _line_block(
                "Lead conversion",
                "Share of each period's leads that became customers within the conversion window "
                "(recent periods are still open).",
                t,
                {"lead_conversion_rate": "conversion rate"},
                "Lead conversion rate",
                why_empty=f"the {w}-day conversion window has not passed for any of them yet",
                percent=True,
            ),
        ),
        (
            leads,
            "Sales cycle",
            lambda: _line_block(
                "Sales cycle",
                "Average number of days from a lead's creation to its conversion.",
                t,
                {"avg_sales_cycle_days": "days"},
                "Average sales cycle",
                why_empty="no lead converted",
                ylabel="days",
            ),
        ),
    ]
    intro = "What it costs to win customers, and how the lead pipeline that feeds them is moving."
    return Section("acquisition", SECTIONS["acquisition"], intro, _blocks(items))


# ----------------------------------------------------------------------------------------------
# at-risk accounts, segments, definitions
# ----------------------------------------------------------------------------------------------


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


def at_risk_section(
    top: pd.DataFrame | None,
    cur: str,
    source: str,
    numbers: dict[str, Any],
    horizon_months: int,
    absent: Collection[str],
) -> Section:
    """The accounts with the most value at risk (adds ``numbers["at_risk"]``)."""
    intro = (
        "Customers most worth a call: ranked by value at risk = chance of leaving × the value they are "
        "expected "
        f"to bring over the next months. Source: {source}."
    )
    if top is None or not len(top):
        note = (
            no_data("transactions", "no churn or lifetime-value model to rank the accounts by")
            if "transactions" in absent
            else "no data: no scores and no churn model were available for this report, so there is "
            "no at-risk list (see the model-quality section)."
        )
        return Section("at_risk", SECTIONS["at_risk"], intro, [note])
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


def _segment_mix_png(seg: pd.DataFrame) -> bytes:
    fig, ax = _axes("Share of customers and of revenue per segment", figsize=(6.4, 4.2))
    y = np.arange(len(seg))
    ax.barh(y - 0.2, seg["customer_share"] * 100, height=0.4, color=_COLORS["grey"], label="customers")
    ax.barh(y + 0.2, seg["revenue_share"].fillna(0) * 100, height=0.4, color=_COLORS["main"], label="revenue")
    ax.set_yticks(y, list(seg.index), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("% of total")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def segments_section(k: KpiResult, cur: str, absent: Collection[str]) -> Section:
    """Customers and revenue per RFM segment."""
    seg = k.segments
    intro = (
        "Champions and Loyal customers bring most of the revenue; 'At risk' and 'Can't lose them' used "
        "to buy "
        "a lot but have not bought recently."
    )
    if "transactions" in absent or not len(seg):
        gap = _gap(absent, "transactions", "customers") or "customers"
        note = no_data(gap, "segments are by purchase recency, frequency and value")
        return Section("segments", SECTIONS["segments"], intro, [note])
    table = TableBlock(
        "Segments",
        "Customers grouped by how recently, how often and how much they bought (RFM), at the report date.",
        ["Segment", "Customers", "Share of customers", "Revenue (last 12 months)", "Share of revenue"],
        [
            [str(i), _num(r.customers), _pct(r.customer_share), _money(r.revenue, cur), _pct(r.revenue_share)]
            for i, r in seg.iterrows()
        ],
    )
    blocks: list[Block] = [
        FigureBlock(
            "Segment mix",
            "Grey: share of customers in each segment; blue: share of the last 12 months' revenue "
            "they brought.",
            _segment_mix_png(seg),
        ),
        table,
    ]
    return Section("segments", SECTIONS["segments"], intro, blocks)


def definitions_section(cfg: Config) -> Section:
    """The formula of every number, the active-customer and qualified-lead rules."""
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
