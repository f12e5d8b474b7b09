"""Periods, the cutoff rule and the per-customer building blocks shared by the KPI modules.

:class:`Period` is a calendar month or quarter in UTC (``[start, end)``), :func:`periods_until`
the complete periods up to a cutoff day and :func:`known_data` the tables as known at that
cutoff. The helpers below (customer creation dates, active customers, the transactions and net
revenue of a window) are what :mod:`crmscore.reporting.kpis` and
:mod:`crmscore.reporting.kpis_acquisition` compute their KPIs from; the definitions of a
customer at a time are in the docstring of :mod:`crmscore.reporting.kpis`.

An absent table (``None`` in :class:`crmscore.core.schema.CRMData`) is treated as "no data":
the helpers return empty results for it and never raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.config import ReportConfig
from crmscore.core.schema import EVENT_TIME, CRMData
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.features.btyd import purchase_mask

__all__ = [
    "DAY",
    "Freq",
    "Period",
    "active_customers",
    "check_period",
    "customer_dates",
    "known_data",
    "new_customer_ids",
    "period_transactions",
    "periods_until",
    "prepare",
    "ratio",
    "report_config",
    "revenue_by_customer",
]

Freq = Literal["month", "quarter"]
_PANDAS_FREQ: dict[str, str] = {"month": "M", "quarter": "Q"}
_KNOWN_AT = "_kpis_known_at"
_DATES = "_kpis_customer_dates"
#: One day (converts time differences to days).
DAY = pd.Timedelta(days=1)
_UTC = "datetime64[us, UTC]"


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
    Absent tables stay absent.
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
    return CRMData(**out, extras={**extras, _KNOWN_AT: end}, roles=data.roles)


def check_period(period: Period, as_of: DateLike) -> None:
    """Raise ``ValueError`` unless ``period`` ends by the cutoff (KPIs cover complete periods only)."""
    if period.end > cutoff_end(as_of):
        raise ValueError(
            f"period {period.label} ends after the cutoff {as_of_day(as_of).date()}: KPIs cover complete "
            "periods only"
        )


def prepare(data: CRMData, period: Period, as_of: DateLike) -> CRMData:
    """Check ``period`` against the cutoff and return :func:`known_data` at ``as_of``."""
    check_period(period, as_of)
    return known_data(data, as_of)


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0."""
    return float(num) / float(den) if den else math.nan


def report_config(cfg: ReportConfig | None) -> ReportConfig:
    """``cfg``, or the default ``report`` block when None."""
    return cfg if cfg is not None else ReportConfig()


# ----------------------------------------------------------------------------------------------
# customers
# ----------------------------------------------------------------------------------------------


def customer_dates(data: CRMData) -> pd.DataFrame:
    """Per customer: ``created`` (``created_at``, else first transaction) and ``churned_at``.

    Cached in the ``extras`` of tables returned by :func:`known_data` (they are not the caller's).
    Empty when the CRM has neither customers nor transactions.
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
    """Customers active at the instant ``t`` (``t <= cutoff_end(as_of)``).

    Rules in the docstring of :mod:`crmscore.reporting.kpis`; with the activity definition and
    no transactions nobody is active (empty index).

    Returns
    -------
    pandas.Index
        Sorted ``customer_id`` values.
    """
    cfg = report_config(cfg)
    if t > cutoff_end(as_of):
        raise ValueError("t is after the cutoff")
    data = known_data(data, as_of)
    dates = customer_dates(data)
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


def new_customer_ids(data: CRMData, period: Period) -> pd.Index:
    """Customers created during ``period`` (``start <= created < end``)."""
    dates = customer_dates(data)
    ok = (dates["created"] >= period.start) & (dates["created"] < period.end)
    return dates.index[ok.to_numpy(dtype=bool)]


# ----------------------------------------------------------------------------------------------
# transactions
# ----------------------------------------------------------------------------------------------


def period_transactions(data: CRMData, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.DataFrame:
    """Transactions with ``start <= ts < end`` (no lower bound when ``start`` is None) and an amount.

    Empty (``customer_id`` and ``amount`` columns) without a transactions table.
    """
    tx = data.transactions
    if tx is None:
        return pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "amount": pd.Series([], dtype=float)})
    sel = (tx["ts"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    if start is not None:
        sel &= (tx["ts"] >= start).to_numpy(dtype=bool, na_value=False, copy=True)
    sel &= tx["amount"].notna().to_numpy(dtype=bool, copy=True)
    return tx[sel]


def revenue_by_customer(data: CRMData, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.Series:
    """Net revenue per customer of :func:`period_transactions` (sorted by ``customer_id``)."""
    tx = period_transactions(data, start, end)
    return tx.groupby("customer_id", sort=True)["amount"].sum().astype(np.float64)
