"""Business KPIs per calendar period: pure functions of the canonical tables and ``as_of``.

Every KPI takes the CRM tables (:class:`crmscore.core.schema.CRMData`), one :class:`Period` (explicit
bounds ``[start, end)``, UTC midnights) and the cutoff day ``as_of``, and uses only what was
known at the cutoff (:func:`known_data`): rows whose event time is on or after
``E = cutoff_end(as_of)`` are ignored, and dates recorded later (``churned_at``,
``converted_at``, ``closed_at`` on or after ``E``) are treated as not (yet) happened. A period
must end by the cutoff (``period.end <= E``): KPIs describe complete periods only.

Definitions (also in :data:`KPI_DEFINITIONS`, shown in the report)
------------------------------------------------------------------
*Customer at a time.* A customer *exists* at an instant ``t`` once ``created_at < t`` (without a
``created_at``: once their first transaction happened before ``t``). A customer is *active* at
``t`` when they exist and

* ``customer_definition="contractual"``: ``churned_at`` is missing or ``>= t``;
* ``customer_definition="activity"`` (non-contractual business, the default): they made a
  purchase (``amount >= 0``) in the ``activity_window_days`` days before ``t``
  (``t - W days <= ts < t``) and are not contractually churned (``churned_at < t``).

``S`` and ``E`` are the active customers at the start and end instants of the period, ``N`` the
customers *created* during it (``start <= created_at < end``), ``L`` the customers active at the
start and not at the end (lost). Revenue ``R`` is the net sum of ``amount`` (refunds included
as negative rows) of the transactions with ``start <= ts < end``.

Layout
------
This module holds the customer and revenue KPIs, LTV:CAC and :func:`compute_kpis` (every KPI of
consecutive periods); the acquisition, lead and segment KPIs are in
:mod:`crmscore.reporting.kpis_acquisition`, and periods, the cutoff rule and the shared
building blocks in :mod:`crmscore.reporting.kpi_base`. Every public name of both is re-exported
here (``from crmscore.reporting.kpis import Period, cac, rfm_segments`` works).

No data
-------
Without the table a KPI needs it is NaN (or an empty frame), not zero and not an error: revenue
KPIs without ``transactions``, CAC without ``marketing_spend``, lead KPIs without ``leads``, and
``S``, ``E``, ``L`` (hence retention and churn) with the activity definition and no
``transactions``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmscore.config import ReportConfig
from crmscore.core.schema import CRMData
from crmscore.core.time import DateLike, as_of_day
from crmscore.features.btyd import btyd_summary
from crmscore.reporting.kpi_base import (
    DAY,
    Period,
    active_customers,
    customer_dates,
    known_data,
    new_customer_ids,
    period_transactions,
    periods_until,
    prepare,
    ratio,
    report_config,
    revenue_by_customer,
)
from crmscore.reporting.kpis_acquisition import (
    average_sales_cycle_days,
    cac,
    cac_by_channel,
    lead_conversion_rate,
    lead_velocity_rate,
    marketing_spend,
    qualified_leads,
    rfm_segments,
)

if TYPE_CHECKING:
    from crmscore.estimators.clv import ClvModel

__all__ = [
    "KPI_DEFINITIONS",
    "KPI_LABELS",
    "KpiResult",
    "Period",
    "active_customers",
    "arpu",
    "average_sales_cycle_days",
    "cac",
    "cac_by_channel",
    "churn_rate",
    "compute_kpis",
    "customer_counts",
    "customer_growth_rate",
    "historical_ltv",
    "known_data",
    "lead_conversion_rate",
    "lead_velocity_rate",
    "ltv_to_cac",
    "marketing_spend",
    "periods_until",
    "predicted_ltv",
    "qualified_leads",
    "retention_rate",
    "revenue",
    "revenue_bridge",
    "revenue_growth",
    "rfm_segments",
    "top_customer_revenue_share",
]

logger = logging.getLogger(__name__)


#: Plain-language formula of every KPI (keys are the columns of :attr:`KpiResult.table`).
KPI_DEFINITIONS: dict[str, str] = {
    "customers_start": "S: active customers at the start of the period (see 'active customer').",
    "customers_end": "E: active customers at the end of the period.",
    "new_customers": "N: customers created (acquired) during the period.",
    "lost_customers": "L: customers active at the start and no longer active at the end.",
    "retention_rate": "(E - N) / S: share of the starting customers still with us, net of new ones.",
    "churn_rate": "L / S: share of the starting customers lost during the period.",
    "customer_growth_rate": "(E - S) / S: growth of the active customer base.",
    "revenue": "R: net revenue of the period (purchases minus refunds).",
    "revenue_growth": "(R - R_prev) / R_prev: change against the previous period.",
    "arpu": "R / ((S + E) / 2): revenue per average active customer in the period.",
    "historical_ltv": "All net revenue up to the period end / customers acquired up to then.",
    "predicted_ltv": (
        "Mean over customers acquired up to the period end of (revenue so far + model-predicted "
        "discounted value of the next clv.horizon_months months, BG/NBD + Gamma-Gamma)."
    ),
    "marketing_spend": "Marketing spend booked in the period.",
    "cac": "Marketing spend / N: acquisition cost per new customer (by channel when spend has channels).",
    "ltv_to_cac": "Predicted LTV (historical when no CLV model is given) / CAC.",
    "qualified_leads": (
        "Q: leads created in the period that meet the 'qualified' rule of report.qualified_lead."
    ),
    "lead_velocity_rate": "(Q - Q_prev) / Q_prev: growth of qualified leads against the previous period.",
    "lead_conversion_rate": (
        "Leads created in the period that converted within report.lead_conversion_window_days / leads "
        "created in the period (empty until that window has passed for the whole period)."
    ),
    "avg_sales_cycle_days": "Mean days from lead creation to conversion, over leads converted in the period.",
    "expansion_revenue": "Sum of revenue increases of existing customers buying in both periods.",
    "contraction_revenue": "Sum of revenue decreases of existing customers buying in both periods.",
    "lost_revenue": "Previous-period revenue of existing customers who bought nothing this period.",
    "reactivation_revenue": "Revenue of existing customers who bought nothing in the previous period.",
    "new_customer_revenue": "Revenue of the customers created during the period.",
    "top_customer_revenue_share": (
        "Share of the period's revenue from the top report.top_customer_fraction (20 %) of customers "
        "with a transaction in the period, ranked by their revenue."
    ),
}

#: Plain-language names of the KPIs (same keys as :data:`KPI_DEFINITIONS`).
KPI_LABELS: dict[str, str] = {
    "customers_start": "Active customers at the start",
    "customers_end": "Active customers at the end",
    "new_customers": "New customers",
    "lost_customers": "Lost customers",
    "retention_rate": "Retention rate",
    "churn_rate": "Churn rate",
    "customer_growth_rate": "Customer growth",
    "revenue": "Revenue",
    "revenue_growth": "Revenue growth",
    "arpu": "Revenue per customer (ARPU)",
    "historical_ltv": "Lifetime value (historical)",
    "predicted_ltv": "Lifetime value (predicted)",
    "marketing_spend": "Marketing spend",
    "cac": "Acquisition cost (CAC)",
    "ltv_to_cac": "Lifetime value : CAC",
    "qualified_leads": "Qualified leads",
    "lead_velocity_rate": "Lead velocity",
    "lead_conversion_rate": "Lead conversion rate",
    "avg_sales_cycle_days": "Sales cycle (days)",
    "expansion_revenue": "Expansion revenue",
    "contraction_revenue": "Contraction revenue",
    "lost_revenue": "Lost revenue",
    "reactivation_revenue": "Returning-customer revenue",
    "new_customer_revenue": "New-customer revenue",
    "top_customer_revenue_share": "Revenue from the top customers",
}


# ----------------------------------------------------------------------------------------------
# customers
# ----------------------------------------------------------------------------------------------


def customer_counts(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> dict[str, float]:
    """``customers_start`` (S), ``customers_end`` (E), ``new_customers`` (N) and ``lost_customers`` (L).

    S and E are the customers active at ``period.start`` and ``period.end``; N the customers with
    ``period.start <= created_at < period.end``; L = |S minus E| (active at the start, not at the end).
    Counts are ``int``; S, E and L are NaN with the activity definition and no transactions table
    (activity is not known).
    """
    cfg = report_config(cfg)
    data = prepare(data, period, as_of)
    n = len(new_customer_ids(data, period))
    if cfg.customer_definition == "activity" and data.transactions is None:
        return {
            "customers_start": math.nan,
            "customers_end": math.nan,
            "new_customers": n,
            "lost_customers": math.nan,
        }
    s = active_customers(data, period.start, as_of, cfg)
    e = active_customers(data, period.end, as_of, cfg)
    return {
        "customers_start": len(s),
        "customers_end": len(e),
        "new_customers": n,
        "lost_customers": len(s.difference(e)),
    }


def retention_rate(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Customer retention rate ``(E - N) / S`` (NaN when ``S == 0``).

    With the activity definition, customers who come back after a pause count in E without being
    in S or N, so the rate can exceed the share of S still active.
    """
    c = customer_counts(data, period, as_of, cfg)
    return ratio(c["customers_end"] - c["new_customers"], c["customers_start"])


def churn_rate(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Customer churn rate ``L / S``: customers active at the start and not at the end, over S."""
    c = customer_counts(data, period, as_of, cfg)
    return ratio(c["lost_customers"], c["customers_start"])


def customer_growth_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Customer growth rate ``(E - S) / S``."""
    c = customer_counts(data, period, as_of, cfg)
    return ratio(c["customers_end"] - c["customers_start"], c["customers_start"])


# ----------------------------------------------------------------------------------------------
# revenue
# ----------------------------------------------------------------------------------------------


def revenue(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Net revenue ``R = sum(amount)`` of the transactions with ``start <= ts < end`` (refunds negative).

    NaN without a transactions table.
    """
    data = prepare(data, period, as_of)
    if data.transactions is None:
        return math.nan
    return float(period_transactions(data, period.start, period.end)["amount"].sum())


def revenue_growth(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Revenue growth ``(R - R_prev) / R_prev`` against the previous period (NaN when ``R_prev == 0``)."""
    prev = revenue(data, period.previous(), as_of)
    return ratio(revenue(data, period, as_of) - prev, prev)


def arpu(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Average revenue per user ``R / ((S + E) / 2)`` (average of the active customers at both ends)."""
    c = customer_counts(data, period, as_of, cfg)
    return ratio(revenue(data, period, as_of), (c["customers_start"] + c["customers_end"]) / 2)


def historical_ltv(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Historical LTV: net revenue of all transactions before ``period.end`` / customers created before it.

    NaN without a transactions table.
    """
    data = prepare(data, period, as_of)
    if data.transactions is None:
        return math.nan
    dates = customer_dates(data)
    n = int((dates["created"] < period.end).sum())
    return ratio(float(period_transactions(data, None, period.end)["amount"].sum()), n)


def predicted_ltv(data: CRMData, period: Period, as_of: DateLike, model: ClvModel) -> float:
    """Predicted LTV: mean over customers created before ``period.end`` of revenue to date + predicted CLV.

    The CLV of a customer is ``model.predict`` (discounted value of the next ``horizon_months``
    months, BG/NBD + Gamma-Gamma) on the BTYD summary (daily periods, the model's time unit,
    refunds excluded) at the last day of the period; customers without a purchase add 0.
    The model's parameters are taken as given (fitted by the caller, typically at ``as_of``).
    NaN without a transactions table.
    """
    data = prepare(data, period, as_of)
    if data.transactions is None:
        return math.nan
    dates = customer_dates(data)
    ids = dates.index[(dates["created"] < period.end).to_numpy(dtype=bool)]
    if not len(ids):
        return math.nan
    to_date = float(period_transactions(data, None, period.end)["amount"].sum())
    clv = 0.0
    if data.transactions is not None and len(data.transactions):
        summ = btyd_summary(data.transactions, period.end - DAY, period="D", time_unit=model.time_unit)
        summ = summ[summ.index.isin(ids)]
        if len(summ):
            clv = float(model.predict(summ)["predicted_clv"].sum())
    return (to_date + clv) / len(ids)


_BRIDGE_KEYS: tuple[str, ...] = (
    "previous_revenue",
    "revenue",
    "new_customer_revenue",
    "expansion_revenue",
    "contraction_revenue",
    "lost_revenue",
    "reactivation_revenue",
    "other_change",
)


def revenue_bridge(data: CRMData, period: Period, as_of: DateLike) -> dict[str, float]:
    """Period-over-period revenue change split by customer (expansion, contraction, lost, new ...).

    For each customer, ``r`` and ``r_prev`` are their net revenue in the period and the previous
    one. *New* customers were created during the period; the others are *existing*. Over existing
    customers:

    * ``expansion_revenue`` = sum of ``r - r_prev`` where ``r_prev > 0``, ``r > 0`` and ``r > r_prev``;
    * ``contraction_revenue`` = sum of ``r_prev - r`` where ``r_prev > 0``, ``r > 0`` and ``r < r_prev``;
    * ``lost_revenue`` = sum of ``r_prev - r`` where ``r_prev > 0`` and ``r <= 0``;
    * ``reactivation_revenue`` = sum of ``r - r_prev`` where ``r_prev <= 0`` and ``r > 0``;

    ``new_customer_revenue`` = sum of ``r - r_prev`` over new customers. Then
    ``revenue - previous_revenue = new + reactivation + expansion - contraction - lost + other``,
    ``other_change`` being the change of existing customers with ``r <= 0`` and ``r_prev <= 0``
    (refunds only), reported too so that the bridge adds up exactly. Every value is NaN without a
    transactions table.
    """
    data = prepare(data, period, as_of)
    if data.transactions is None:
        return dict.fromkeys(_BRIDGE_KEYS, math.nan)
    prev = period.previous()
    r = revenue_by_customer(data, period.start, period.end)
    rp = revenue_by_customer(data, prev.start, prev.end)
    idx = r.index.union(rp.index)
    r, rp = r.reindex(idx, fill_value=0.0), rp.reindex(idx, fill_value=0.0)
    new = idx.isin(new_customer_ids(data, period))
    d = (r - rp).to_numpy()
    rv, rpv = r.to_numpy(), rp.to_numpy()
    ex = ~new
    both = ex & (rpv > 0) & (rv > 0)
    return {
        "previous_revenue": float(rp.sum()),
        "revenue": float(r.sum()),
        "new_customer_revenue": float(d[new].sum()),
        "expansion_revenue": float(d[both & (d > 0)].sum()),
        "contraction_revenue": float(-d[both & (d < 0)].sum()),
        "lost_revenue": float(-d[ex & (rpv > 0) & (rv <= 0)].sum()),
        "reactivation_revenue": float(d[ex & (rpv <= 0) & (rv > 0)].sum()),
        "other_change": float(d[ex & (rpv <= 0) & (rv <= 0)].sum()),
    }


def top_customer_revenue_share(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Share of the period's net revenue from the top ``ceil(f * n)`` customers by revenue.

    ``n`` = customers with a transaction in the period, ``f = report.top_customer_fraction``
    (0.2: the "80/20" concentration). NaN when the period's revenue is not positive (or unknown).
    """
    cfg = report_config(cfg)
    data = prepare(data, period, as_of)
    r = revenue_by_customer(data, period.start, period.end)
    total = float(r.sum())
    if not len(r) or total <= 0:
        return math.nan
    k = math.ceil(cfg.top_customer_fraction * len(r))
    return float(np.sort(r.to_numpy())[::-1][:k].sum()) / total


def ltv_to_cac(data: CRMData, period: Period, as_of: DateLike, model: ClvModel | None = None) -> float:
    """LTV:CAC = predicted LTV (:func:`predicted_ltv`; :func:`historical_ltv` without a model) / CAC."""
    ltv = (
        predicted_ltv(data, period, as_of, model)
        if model is not None
        else historical_ltv(data, period, as_of)
    )
    return ratio(ltv, cac(data, period, as_of))


# ----------------------------------------------------------------------------------------------
# all KPIs
# ----------------------------------------------------------------------------------------------


@dataclass
class KpiResult:
    """KPIs of consecutive periods.

    Attributes
    ----------
    table : DataFrame
        One row per period (index: period label, oldest first), columns :data:`KPI_DEFINITIONS`
        plus ``period_start`` and ``period_end`` (exclusive).
    cac_by_channel : DataFrame
        :func:`cac_by_channel` over all the periods of the table together.
    segments : DataFrame
        :func:`rfm_segments` at ``as_of``, revenue of the 365 days up to it.
    as_of : pandas.Timestamp
        The cutoff day.
    periods : list of Period
    """

    table: pd.DataFrame
    cac_by_channel: pd.DataFrame
    segments: pd.DataFrame
    as_of: pd.Timestamp
    periods: list[Period] = field(default_factory=list)


def compute_kpis(
    data: CRMData,
    as_of: DateLike,
    cfg: ReportConfig | None = None,
    *,
    model: ClvModel | None = None,
    rfm_bins: int = 5,
) -> KpiResult:
    """Every KPI for the last ``cfg.n_periods`` complete ``cfg.period`` periods up to ``as_of``.

    Parameters
    ----------
    data : CRMData
        Canonical tables (not modified); only what is known at ``as_of`` is used.
    as_of : date-like
        Cutoff day.
    cfg : ReportConfig, optional
        The ``report`` block (defaults when None).
    model : ClvModel, optional
        Fitted CLV model for ``predicted_ltv`` (NaN column without one); LTV:CAC uses it when given.
    rfm_bins : int
        RFM score levels (``features.rfm_bins``).
    """
    cfg = report_config(cfg)
    as_of = as_of_day(as_of)
    known = known_data(data, as_of)
    periods = periods_until(as_of, cfg.period, cfg.n_periods)
    rows = []
    for p in periods:
        c = customer_counts(known, p, as_of, cfg)
        bridge = revenue_bridge(known, p, as_of)
        rev, prev_rev = bridge["revenue"], bridge["previous_revenue"]
        q, q_prev = qualified_leads(known, p, as_of, cfg), qualified_leads(known, p.previous(), as_of, cfg)
        hist = historical_ltv(known, p, as_of)
        pred = predicted_ltv(known, p, as_of, model) if model is not None else math.nan
        acq = cac(known, p, as_of)
        s, e, n = c["customers_start"], c["customers_end"], c["new_customers"]
        rows.append(
            {
                "period_start": p.start,
                "period_end": p.end,
                **c,
                "retention_rate": ratio(e - n, s),
                "churn_rate": ratio(c["lost_customers"], s),
                "customer_growth_rate": ratio(e - s, s),
                "revenue": rev,
                "revenue_growth": ratio(rev - prev_rev, prev_rev),
                "arpu": ratio(rev, (s + e) / 2),
                "historical_ltv": hist,
                "predicted_ltv": pred,
                "marketing_spend": marketing_spend(known, p, as_of),
                "cac": acq,
                "ltv_to_cac": ratio(pred if model is not None else hist, acq),
                "qualified_leads": q,
                "lead_velocity_rate": ratio(q - q_prev, q_prev),
                "lead_conversion_rate": lead_conversion_rate(known, p, as_of, cfg),
                "avg_sales_cycle_days": average_sales_cycle_days(known, p, as_of),
                **{k: v for k, v in bridge.items() if k not in ("revenue", "previous_revenue")},
                "top_customer_revenue_share": top_customer_revenue_share(known, p, as_of, cfg),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index([p.label for p in periods], name="period"))
    whole = replace(periods[-1], start=periods[0].start)
    channels = cac_by_channel(known, whole, as_of)
    segments = rfm_segments(known, as_of, bins=rfm_bins)
    logger.info("KPIs for %d %s periods up to %s", len(periods), cfg.period, as_of.date())
    return KpiResult(table=table, cac_by_channel=channels, segments=segments, as_of=as_of, periods=periods)
