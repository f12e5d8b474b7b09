"""Acquisition, lead and segment KPIs: marketing spend, CAC, qualified leads, sales cycle, RFM segments.

Same conventions as :mod:`crmscore.reporting.kpis` (which re-exports every function here): each
KPI is a pure function of the CRM tables, one :class:`crmscore.reporting.kpi_base.Period` and
the cutoff day ``as_of``, using only what was known at the cutoff. Without the table a KPI needs
(``marketing_spend``, ``leads``, ``transactions``) it returns NaN or an empty frame ("no data"),
never zero and never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from crmscore.config import ReportConfig
from crmscore.core.schema import CRMData
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.features.btyd import purchase_mask
from crmscore.features.rfm import RFM_SEGMENTS, rfm_scores
from crmscore.reporting.kpi_base import (
    DAY,
    Period,
    check_period,
    customer_dates,
    known_data,
    new_customer_ids,
    prepare,
    ratio,
    report_config,
    revenue_by_customer,
)

__all__ = [
    "average_sales_cycle_days",
    "cac",
    "cac_by_channel",
    "lead_conversion_rate",
    "lead_velocity_rate",
    "marketing_spend",
    "qualified_leads",
    "rfm_segments",
]


# ----------------------------------------------------------------------------------------------
# acquisition
# ----------------------------------------------------------------------------------------------


def _spend(data: CRMData, period: Period) -> pd.DataFrame:
    ms = data.marketing_spend
    if ms is None:
        return pd.DataFrame({"amount": pd.Series([], dtype=float)})
    sel = (ms["period"] >= period.start) & (ms["period"] < period.end)
    return ms[sel.to_numpy(dtype=bool, na_value=False, copy=True)]


def marketing_spend(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Marketing spend booked with ``start <= period < end`` (NaN without a marketing_spend table)."""
    data = prepare(data, period, as_of)
    if data.marketing_spend is None:
        return math.nan
    return float(_spend(data, period)["amount"].sum())


def cac(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Customer acquisition cost: marketing spend of the period / customers created in it (N)."""
    data = prepare(data, period, as_of)
    return ratio(marketing_spend(data, period, as_of), len(new_customer_ids(data, period)))


def cac_by_channel(data: CRMData, period: Period, as_of: DateLike) -> pd.DataFrame:
    """CAC per channel: channel spend / customers created in the period with that ``acquisition_channel``.

    Returns
    -------
    DataFrame
        Index ``channel`` (sorted; the union of spend channels and acquisition channels),
        columns ``marketing_spend``, ``new_customers``, ``cac`` (NaN without new customers).
        Empty when the spend has no ``channel`` column.
    """
    data = prepare(data, period, as_of)
    cols = ["marketing_spend", "new_customers", "cac"]
    sp = _spend(data, period)
    if "channel" not in sp.columns:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="channel"), dtype=float)
    spend = sp.groupby("channel")["amount"].sum()
    new_ids = new_customer_ids(data, period)
    cust = data.customers
    if cust is not None and "acquisition_channel" in cust.columns:
        ch = cust.drop_duplicates("customer_id").set_index("customer_id")["acquisition_channel"]
        counts = ch.reindex(new_ids).value_counts()
    else:
        counts = pd.Series(dtype=float)
    idx = spend.index.union(counts.index).sort_values()
    out = pd.DataFrame(
        {
            "marketing_spend": spend.reindex(idx, fill_value=0.0).astype(float),
            "new_customers": counts.reindex(idx, fill_value=0).astype(float),
        }
    )
    out["cac"] = out["marketing_spend"] / out["new_customers"].where(out["new_customers"] > 0)
    out.index.name = "channel"
    return out


# ----------------------------------------------------------------------------------------------
# leads
# ----------------------------------------------------------------------------------------------


def _qualified_mask(leads: pd.DataFrame, rule: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    ok = np.ones(len(leads), dtype=bool)
    for col, values in rule.items():
        if col not in leads.columns:
            raise ValueError(f"report.qualified_lead: leads have no column {col!r}")
        ok &= leads[col].astype("str").isin([str(v) for v in values]).to_numpy(dtype=bool, copy=True)
    return ok


def _created_in(leads: pd.DataFrame, period: Period) -> np.ndarray:
    c = leads["created_at"]
    return ((c >= period.start) & (c < period.end)).to_numpy(dtype=bool, na_value=False, copy=True)


def qualified_leads(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Q: leads created in the period meeting ``report.qualified_lead`` (NaN without a leads table).

    A lead is *qualified* when, for every attribute listed in ``report.qualified_lead``, its value
    is one of the listed values (e.g. ``need: [medium, high]`` and ``authority: [influencer,
    decision_maker]``: a BANT-style rule). An empty rule qualifies every lead. The count is an
    ``int`` whenever there is a leads table.
    """
    cfg = report_config(cfg)
    data = prepare(data, period, as_of)
    if data.leads is None:
        return math.nan
    leads = data.leads[_created_in(data.leads, period)]
    return int(_qualified_mask(leads, cfg.qualified_lead).sum())


def lead_velocity_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Lead velocity rate ``(Q - Q_prev) / Q_prev``: growth of qualified leads period over period."""
    prev = qualified_leads(data, period.previous(), as_of, cfg)
    return ratio(qualified_leads(data, period, as_of, cfg) - prev, prev)


def lead_conversion_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Share of the leads created in the period that converted within ``W`` days of creation.

    ``W = report.lead_conversion_window_days``. NaN (not known yet) while the window of the
    period's last leads is still open at the cutoff (``period.end + W days > cutoff_end(as_of)``)
    or when no lead was created in the period.
    """
    cfg = report_config(cfg)
    data = prepare(data, period, as_of)
    w = pd.Timedelta(days=cfg.lead_conversion_window_days)
    if data.leads is None or period.end + w > cutoff_end(as_of):
        return math.nan
    leads = data.leads[_created_in(data.leads, period)]
    conv = (leads["converted_at"] - leads["created_at"]) <= w
    return ratio(int(conv.to_numpy(dtype=bool, na_value=False, copy=True).sum()), len(leads))


def average_sales_cycle_days(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Mean of ``converted_at - created_at`` in days over the leads converted in the period."""
    data = prepare(data, period, as_of)
    leads = data.leads
    if leads is None or "converted_at" not in leads.columns:
        return math.nan
    c = leads["converted_at"]
    sel = ((c >= period.start) & (c < period.end)).to_numpy(dtype=bool, na_value=False, copy=True)
    if not sel.any():
        return math.nan
    return float(((c[sel] - leads["created_at"][sel]) / DAY).mean())


# ----------------------------------------------------------------------------------------------
# segments
# ----------------------------------------------------------------------------------------------


def rfm_segments(
    data: CRMData,
    as_of: DateLike,
    *,
    revenue_period: Period | None = None,
    bins: int = 5,
) -> pd.DataFrame:
    """Customers and revenue per RFM segment at the cutoff ``as_of``.

    Segments are :func:`crmscore.features.rfm.rfm_scores` of every customer known at the cutoff:
    recency = days from the last purchase day to ``as_of``, frequency = purchases, monetary =
    total purchase amount (refunds excluded, as in the feature table). Revenue is the net revenue
    of ``revenue_period`` (default: the 365 days up to the cutoff).

    Returns
    -------
    DataFrame
        Index ``segment`` (:data:`crmscore.features.rfm.RFM_SEGMENTS` order, empty segments
        dropped); columns ``customers``, ``customer_share``, ``revenue``, ``revenue_share``.
        Empty without a transactions table (segments are defined by purchases).
    """
    data = known_data(data, as_of)
    end = cutoff_end(as_of)
    if revenue_period is not None:
        check_period(revenue_period, as_of)
    columns = ["customers", "customer_share", "revenue", "revenue_share"]
    tx = data.transactions
    if tx is None:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="segment", dtype="str"), dtype=float)
    dates = customer_dates(data)
    ids = dates.index[(dates["created"] < end).to_numpy(dtype=bool)]
    buy = tx[purchase_mask(tx, "exclude")] if len(tx) else tx
    g = buy.groupby("customer_id")
    last_day = g["ts"].max().dt.floor("D") if len(buy) else pd.Series(dtype="datetime64[us, UTC]")
    recency = ((as_of_day(as_of) - last_day) / DAY).reindex(ids)
    freq = g.size().reindex(ids, fill_value=0).astype(float) if len(buy) else pd.Series(0.0, index=ids)
    spend = g["amount"].sum().reindex(ids, fill_value=0.0) if len(buy) else pd.Series(0.0, index=ids)
    seg = rfm_scores(recency, freq, spend, bins=bins)["rfm_segment"]
    start = revenue_period.start if revenue_period is not None else end - pd.Timedelta(days=365)
    stop = revenue_period.end if revenue_period is not None else end
    rev = revenue_by_customer(data, start, stop).reindex(ids, fill_value=0.0)
    out = pd.DataFrame({"customers": seg.value_counts().reindex(RFM_SEGMENTS, fill_value=0)})
    out["revenue"] = rev.groupby(seg.astype(str).to_numpy()).sum().reindex(RFM_SEGMENTS, fill_value=0.0)
    out = out[out["customers"] > 0]
    out["customers"] = out["customers"].astype(int)
    out["customer_share"] = out["customers"] / max(int(out["customers"].sum()), 1)
    total = float(out["revenue"].sum())
    out["revenue_share"] = out["revenue"] / total if total else math.nan
    out.index.name = "segment"
    return out[columns]
