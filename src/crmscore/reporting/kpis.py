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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from crmscore.config import ReportConfig
from crmscore.core.schema import EVENT_TIME, CRMData
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.features.btyd import btyd_summary, purchase_mask
from crmscore.features.rfm import RFM_SEGMENTS, rfm_scores

if TYPE_CHECKING:
    from crmscore.estimators.clv.model import ClvModel

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

Freq = Literal["month", "quarter"]
_PANDAS_FREQ: dict[str, str] = {"month": "M", "quarter": "Q"}
_KNOWN_AT = "_kpis_known_at"
_DATES = "_kpis_customer_dates"
_DAY = pd.Timedelta(days=1)
_UTC = "datetime64[us, UTC]"

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
# periods and the cutoff
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A calendar month or quarter in UTC: ``start <= t < end``."""

    start: pd.Timestamp
    end: pd.Timestamp
    freq: Freq = "month"

    @classmethod
    def containing(cls, day: DateLike, freq: Freq = "month") -> Period:
        """The month or quarter containing the UTC day ``day``."""
        ts = as_of_day(day)
        p = pd.Period(ts.tz_localize(None), freq=_PANDAS_FREQ[freq])
        return cls._from_pandas(p, freq)

    @classmethod
    def _from_pandas(cls, p: pd.Period, freq: Freq) -> Period:
        start = p.start_time.tz_localize("UTC")
        end = (p + 1).start_time.tz_localize("UTC")
        return cls(start, end, freq)

    @property
    def label(self) -> str:
        """``2025-03`` for a month, ``2025Q1`` for a quarter."""
        return str(pd.Period(self.start.tz_localize(None), freq=_PANDAS_FREQ[self.freq]))

    def previous(self) -> Period:
        """The period just before (same frequency)."""
        p = pd.Period(self.start.tz_localize(None), freq=_PANDAS_FREQ[self.freq])
        return self._from_pandas(p - 1, self.freq)


def periods_until(as_of: DateLike, freq: Freq = "month", n: int = 12) -> list[Period]:
    """The last ``n`` complete periods ending by the cutoff (``end <= cutoff_end(as_of)``), oldest first."""
    if n < 1:
        raise ValueError("n must be positive")
    end = cutoff_end(as_of)
    p = Period.containing(as_of, freq)
    if p.end > end:
        p = p.previous()
    out = [p]
    for _ in range(n - 1):
        out.append(out[-1].previous())
    return out[::-1]


def known_data(data: CRMData, as_of: DateLike) -> CRMData:
    """The tables as known at the end of the cutoff day ``as_of`` (inputs are not modified).

    Rows whose event time (``crmscore.core.schema.EVENT_TIME``) is missing or ``>= cutoff_end(as_of)``
    are dropped; ``churned_at``, ``converted_at`` and ``closed_at`` values ``>= cutoff_end`` become
    missing (not known yet), and so does a lead's ``customer_id`` whose conversion is not known yet.
    """
    end = cutoff_end(as_of)
    if data.extras.get(_KNOWN_AT) == end:
        return data
    out: dict[str, Any] = {}
    for name, df in data.tables().items():
        col = EVENT_TIME[name]
        if col in df.columns:
            df = df[(df[col] < end).to_numpy(dtype=bool, na_value=False, copy=True)]
        later = [c for c in ("churned_at", "converted_at", "closed_at") if c in df.columns]
        if later:
            df = df.copy()
            for c in later:
                masked = (df[c] >= end).to_numpy(dtype=bool, na_value=False, copy=True)
                if masked.any():
                    df.loc[masked, c] = pd.NaT
                    if c == "converted_at" and "customer_id" in df.columns:
                        df.loc[masked, "customer_id"] = pd.NA
        out[name] = df
    extras = {k: v for k, v in data.extras.items() if k != _DATES}
    return CRMData(**out, extras={**extras, _KNOWN_AT: end})


def _check_period(period: Period, as_of: DateLike) -> None:
    if period.end > cutoff_end(as_of):
        raise ValueError(
            f"period {period.label} ends after the cutoff {as_of_day(as_of).date()}: KPIs cover complete "
            "periods only"
        )


def _prepare(data: CRMData, period: Period, as_of: DateLike) -> CRMData:
    _check_period(period, as_of)
    return known_data(data, as_of)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _cfg(cfg: ReportConfig | None) -> ReportConfig:
    return cfg if cfg is not None else ReportConfig()


# ----------------------------------------------------------------------------------------------
# customers
# ----------------------------------------------------------------------------------------------


def _customer_dates(data: CRMData) -> pd.DataFrame:
    """Per customer: ``created`` (``created_at``, else first transaction) and ``churned_at``.

    Cached in the ``extras`` of tables returned by :func:`known_data` (they are not the caller's).
    """
    cached = data.extras.get(_DATES)
    if cached is not None:
        return cached
    out = _customer_dates_uncached(data)
    if _KNOWN_AT in data.extras:
        data.extras[_DATES] = out
    return out


def _customer_dates_uncached(data: CRMData) -> pd.DataFrame:
    tx = data.transactions
    first = (
        tx.groupby("customer_id", sort=False)["ts"].min()
        if tx is not None and len(tx)
        else pd.Series(dtype=_UTC)
    )
    if data.customers is None:
        out = pd.DataFrame({"created": first})
        out["churned_at"] = pd.Series(pd.NaT, index=out.index, dtype=_UTC)
        return out
    cust = data.customers.drop_duplicates("customer_id").set_index("customer_id")
    created = cust["created_at"] if "created_at" in cust else pd.Series(pd.NaT, index=cust.index, dtype=_UTC)
    created = created.fillna(first.reindex(cust.index))
    churned = cust["churned_at"] if "churned_at" in cust else pd.Series(pd.NaT, index=cust.index, dtype=_UTC)
    out = pd.DataFrame({"created": created, "churned_at": churned})
    return out[out["created"].notna()]


def active_customers(
    data: CRMData, t: pd.Timestamp, as_of: DateLike, cfg: ReportConfig | None = None
) -> pd.Index:
    """Customers active at the instant ``t`` (``t <= cutoff_end(as_of)``); rules in the module docstring.

    Returns
    -------
    pandas.Index
        Sorted ``customer_id`` values.
    """
    cfg = _cfg(cfg)
    if t > cutoff_end(as_of):
        raise ValueError("t is after the cutoff")
    data = known_data(data, as_of)
    dates = _customer_dates(data)
    ok = (dates["created"] < t) & ~(dates["churned_at"] < t).fillna(False)
    ids = dates.index[ok.to_numpy(dtype=bool)]
    if cfg.customer_definition == "activity":
        tx = data.transactions
        if tx is None or not len(tx):
            return pd.Index([], dtype="str", name="customer_id")
        sel = purchase_mask(tx, "exclude")
        sel &= (tx["ts"] >= t - pd.Timedelta(days=cfg.activity_window_days)).to_numpy(dtype=bool, copy=True)
        sel &= (tx["ts"] < t).to_numpy(dtype=bool, copy=True)
        ids = ids.intersection(pd.Index(tx["customer_id"][sel].unique()))
    return pd.Index(np.sort(ids.astype("str").to_numpy()), dtype="str", name="customer_id")


def _new_customers(data: CRMData, period: Period) -> pd.Index:
    dates = _customer_dates(data)
    ok = (dates["created"] >= period.start) & (dates["created"] < period.end)
    return dates.index[ok.to_numpy(dtype=bool)]


def customer_counts(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> dict[str, int]:
    """``customers_start`` (S), ``customers_end`` (E), ``new_customers`` (N) and ``lost_customers`` (L).

    S and E are the customers active at ``period.start`` and ``period.end``; N the customers with
    ``period.start <= created_at < period.end``; L = |S minus E| (active at the start, not at the end).
    """
    data = _prepare(data, period, as_of)
    s = active_customers(data, period.start, as_of, cfg)
    e = active_customers(data, period.end, as_of, cfg)
    return {
        "customers_start": len(s),
        "customers_end": len(e),
        "new_customers": len(_new_customers(data, period)),
        "lost_customers": len(s.difference(e)),
    }


def retention_rate(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Customer retention rate ``(E - N) / S`` (NaN when ``S == 0``).

    With the activity definition, customers who come back after a pause count in E without being
    in S or N, so the rate can exceed the share of S still active.
    """
    c = customer_counts(data, period, as_of, cfg)
    return _ratio(c["customers_end"] - c["new_customers"], c["customers_start"])


def churn_rate(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Customer churn rate ``L / S``: customers active at the start and not at the end, over S."""
    c = customer_counts(data, period, as_of, cfg)
    return _ratio(c["lost_customers"], c["customers_start"])


def customer_growth_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Customer growth rate ``(E - S) / S``."""
    c = customer_counts(data, period, as_of, cfg)
    return _ratio(c["customers_end"] - c["customers_start"], c["customers_start"])


# ----------------------------------------------------------------------------------------------
# revenue
# ----------------------------------------------------------------------------------------------


def _period_tx(data: CRMData, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.DataFrame:
    tx = data.transactions
    if tx is None:
        return pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "amount": pd.Series([], dtype=float)})
    sel = (tx["ts"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    if start is not None:
        sel &= (tx["ts"] >= start).to_numpy(dtype=bool, na_value=False, copy=True)
    sel &= tx["amount"].notna().to_numpy(dtype=bool, copy=True)
    return tx[sel]


def _revenue_by_customer(data: CRMData, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.Series:
    tx = _period_tx(data, start, end)
    return tx.groupby("customer_id", sort=True)["amount"].sum().astype(np.float64)


def revenue(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Net revenue ``R = sum(amount)`` of the transactions with ``start <= ts < end`` (refunds negative)."""
    data = _prepare(data, period, as_of)
    return float(_period_tx(data, period.start, period.end)["amount"].sum())


def revenue_growth(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Revenue growth ``(R - R_prev) / R_prev`` against the previous period (NaN when ``R_prev == 0``)."""
    prev = revenue(data, period.previous(), as_of)
    return _ratio(revenue(data, period, as_of) - prev, prev)


def arpu(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> float:
    """Average revenue per user ``R / ((S + E) / 2)`` (average of the active customers at both ends)."""
    c = customer_counts(data, period, as_of, cfg)
    return _ratio(revenue(data, period, as_of), (c["customers_start"] + c["customers_end"]) / 2)


def historical_ltv(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Historical LTV: net revenue of all transactions before ``period.end`` / customers created before it."""
    data = _prepare(data, period, as_of)
    dates = _customer_dates(data)
    n = int((dates["created"] < period.end).sum())
    return _ratio(float(_period_tx(data, None, period.end)["amount"].sum()), n)


def predicted_ltv(data: CRMData, period: Period, as_of: DateLike, model: ClvModel) -> float:
    """Predicted LTV: mean over customers created before ``period.end`` of revenue to date + predicted CLV.

    The CLV of a customer is ``model.predict`` (discounted value of the next ``horizon_months``
    months, BG/NBD + Gamma-Gamma) on the BTYD summary (daily periods, the model's time unit,
    refunds excluded) at the last day of the period; customers without a purchase add 0.
    The model's parameters are taken as given (fitted by the caller, typically at ``as_of``).
    """
    data = _prepare(data, period, as_of)
    dates = _customer_dates(data)
    ids = dates.index[(dates["created"] < period.end).to_numpy(dtype=bool)]
    if not len(ids):
        return math.nan
    to_date = float(_period_tx(data, None, period.end)["amount"].sum())
    clv = 0.0
    if data.transactions is not None and len(data.transactions):
        summ = btyd_summary(data.transactions, period.end - _DAY, period="D", time_unit=model.time_unit)
        summ = summ[summ.index.isin(ids)]
        if len(summ):
            clv = float(model.predict(summ)["predicted_clv"].sum())
    return (to_date + clv) / len(ids)


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
    (refunds only), reported too so that the bridge adds up exactly.
    """
    data = _prepare(data, period, as_of)
    prev = period.previous()
    r = _revenue_by_customer(data, period.start, period.end)
    rp = _revenue_by_customer(data, prev.start, prev.end)
    idx = r.index.union(rp.index)
    r, rp = r.reindex(idx, fill_value=0.0), rp.reindex(idx, fill_value=0.0)
    new = idx.isin(_new_customers(data, period))
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
    (0.2: the "80/20" concentration). NaN when the period's revenue is not positive.
    """
    cfg = _cfg(cfg)
    data = _prepare(data, period, as_of)
    r = _revenue_by_customer(data, period.start, period.end)
    total = float(r.sum())
    if not len(r) or total <= 0:
        return math.nan
    k = math.ceil(cfg.top_customer_fraction * len(r))
    return float(np.sort(r.to_numpy())[::-1][:k].sum()) / total


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
    data = _prepare(data, period, as_of)
    if data.marketing_spend is None:
        return math.nan
    return float(_spend(data, period)["amount"].sum())


def cac(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Customer acquisition cost: marketing spend of the period / customers created in it (N)."""
    data = _prepare(data, period, as_of)
    return _ratio(marketing_spend(data, period, as_of), len(_new_customers(data, period)))


def cac_by_channel(data: CRMData, period: Period, as_of: DateLike) -> pd.DataFrame:
    """CAC per channel: channel spend / customers created in the period with that ``acquisition_channel``.

    Returns
    -------
    DataFrame
        Index ``channel`` (sorted; the union of spend channels and acquisition channels),
        columns ``marketing_spend``, ``new_customers``, ``cac`` (NaN without new customers).
        Empty when the spend has no ``channel`` column.
    """
    data = _prepare(data, period, as_of)
    cols = ["marketing_spend", "new_customers", "cac"]
    sp = _spend(data, period)
    if "channel" not in sp.columns:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="channel"), dtype=float)
    spend = sp.groupby("channel")["amount"].sum()
    new_ids = _new_customers(data, period)
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


def ltv_to_cac(data: CRMData, period: Period, as_of: DateLike, model: ClvModel | None = None) -> float:
    """LTV:CAC = predicted LTV (:func:`predicted_ltv`; :func:`historical_ltv` without a model) / CAC."""
    ltv = (
        predicted_ltv(data, period, as_of, model)
        if model is not None
        else historical_ltv(data, period, as_of)
    )
    return _ratio(ltv, cac(data, period, as_of))


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


def qualified_leads(data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None) -> int:
    """Q: leads created in the period meeting ``report.qualified_lead``.

    A lead is *qualified* when, for every attribute listed in ``report.qualified_lead``, its value
    is one of the listed values (e.g. ``need: [medium, high]`` and ``authority: [influencer,
    decision_maker]``: a BANT-style rule). An empty rule qualifies every lead.
    """
    cfg = _cfg(cfg)
    data = _prepare(data, period, as_of)
    if data.leads is None:
        return 0
    leads = data.leads[_created_in(data.leads, period)]
    return int(_qualified_mask(leads, cfg.qualified_lead).sum())


def lead_velocity_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Lead velocity rate ``(Q - Q_prev) / Q_prev``: growth of qualified leads period over period."""
    prev = qualified_leads(data, period.previous(), as_of, cfg)
    return _ratio(qualified_leads(data, period, as_of, cfg) - prev, prev)


def lead_conversion_rate(
    data: CRMData, period: Period, as_of: DateLike, cfg: ReportConfig | None = None
) -> float:
    """Share of the leads created in the period that converted within ``W`` days of creation.

    ``W = report.lead_conversion_window_days``. NaN (not known yet) while the window of the
    period's last leads is still open at the cutoff (``period.end + W days > cutoff_end(as_of)``)
    or when no lead was created in the period.
    """
    cfg = _cfg(cfg)
    data = _prepare(data, period, as_of)
    w = pd.Timedelta(days=cfg.lead_conversion_window_days)
    if data.leads is None or period.end + w > cutoff_end(as_of):
        return math.nan
    leads = data.leads[_created_in(data.leads, period)]
    conv = (leads["converted_at"] - leads["created_at"]) <= w
    return _ratio(int(conv.to_numpy(dtype=bool, na_value=False, copy=True).sum()), len(leads))


def average_sales_cycle_days(data: CRMData, period: Period, as_of: DateLike) -> float:
    """Mean of ``converted_at - created_at`` in days over the leads converted in the period."""
    data = _prepare(data, period, as_of)
    leads = data.leads
    if leads is None or "converted_at" not in leads.columns:
        return math.nan
    c = leads["converted_at"]
    sel = ((c >= period.start) & (c < period.end)).to_numpy(dtype=bool, na_value=False, copy=True)
    if not sel.any():
        return math.nan
    return float(((c[sel] - leads["created_at"][sel]) / _DAY).mean())


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
    """
    data = known_data(data, as_of)
    end = cutoff_end(as_of)
    if revenue_period is not None:
        _check_period(revenue_period, as_of)
    dates = _customer_dates(data)
    ids = dates.index[(dates["created"] < end).to_numpy(dtype=bool)]
    tx = data.transactions
    if tx is None:
        tx = _period_tx(data, None, end)
    buy = tx[purchase_mask(tx, "exclude")] if len(tx) else tx
    g = buy.groupby("customer_id")
    last_day = g["ts"].max().dt.floor("D") if len(buy) else pd.Series(dtype="datetime64[us, UTC]")
    recency = ((as_of_day(as_of) - last_day) / _DAY).reindex(ids)
    freq = g.size().reindex(ids, fill_value=0).astype(float) if len(buy) else pd.Series(0.0, index=ids)
    spend = g["amount"].sum().reindex(ids, fill_value=0.0) if len(buy) else pd.Series(0.0, index=ids)
    seg = rfm_scores(recency, freq, spend, bins=bins)["rfm_segment"]
    start = revenue_period.start if revenue_period is not None else end - pd.Timedelta(days=365)
    stop = revenue_period.end if revenue_period is not None else end
    rev = _revenue_by_customer(data, start, stop).reindex(ids, fill_value=0.0)
    out = pd.DataFrame({"customers": seg.value_counts().reindex(RFM_SEGMENTS, fill_value=0)})
    out["revenue"] = rev.groupby(seg.astype(str).to_numpy()).sum().reindex(RFM_SEGMENTS, fill_value=0.0)
    out = out[out["customers"] > 0]
    out["customers"] = out["customers"].astype(int)
    out["customer_share"] = out["customers"] / max(int(out["customers"].sum()), 1)
    total = float(out["revenue"].sum())
    out["revenue_share"] = out["revenue"] / total if total else math.nan
    out.index.name = "segment"
    return out[["customers", "customer_share", "revenue", "revenue_share"]]


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
    cfg = _cfg(cfg)
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
                "retention_rate": _ratio(e - n, s),
                "churn_rate": _ratio(c["lost_customers"], s),
                "customer_growth_rate": _ratio(e - s, s),
                "revenue": rev,
                "revenue_growth": _ratio(rev - prev_rev, prev_rev),
                "arpu": _ratio(rev, (s + e) / 2),
                "historical_ltv": hist,
                "predicted_ltv": pred,
                "marketing_spend": marketing_spend(known, p, as_of),
                "cac": acq,
                "ltv_to_cac": _ratio(pred if model is not None else hist, acq),
                "qualified_leads": q,
                "lead_velocity_rate": _ratio(q - q_prev, q_prev),
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
