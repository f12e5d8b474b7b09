"""BTYD sufficient statistics per customer at a cutoff (frequency, recency, T, monetary_value).

Exactly the numbers of lifetimes' ``summary_data_from_transaction_data`` and
``calibration_and_holdout_data`` (lifetimes 0.11.3), computed with one factorisation, one
sort and numpy reductions instead of per-row Python, so they scale to millions of rows.

Semantics (Fader, Hardie & Lee 2005, "Counting your customers the easy way", §2):

* purchases are bucketed per *period* (``"D"`` day or ``"W"`` pandas week, Monday to Sunday);
  several purchases of a customer in one period count once and their amounts are summed;
* ``frequency`` = number of distinct purchase periods − 1 (repeat purchases);
* ``recency`` = last purchase period − first purchase period;
* ``T`` = cutoff period − first purchase period;
* ``monetary_value`` = mean of the repeat-period totals (the first purchase period excluded),
  0 when ``frequency`` is 0;
* times are expressed in ``time_unit``: a difference of ``k`` periods is
  ``k * days_per_period / days_per_unit``. ``period="D", time_unit="week"`` is the fractional
  week of the BG/NBD literature (daily buckets, time in weeks = days / 7), lifetimes'
  ``freq="D", freq_multiplier=7``. Weekly buckets bias BG/NBD (see shared/design.md §4):
  prefer daily buckets.

Cutoff (``crmscore.features.time``): a transaction is known at ``as_of`` iff
``ts < cutoff_end(as_of)``. Unlike lifetimes' weekly mode, which keeps every purchase of the
cutoff's week even when it happened after the cutoff day, rows after the cutoff day are never
used here (for known rows the numbers are identical).

Refunds: rows with ``amount < 0`` are refunds, not purchases. With ``refunds="exclude"`` (the
default) they are left out of the BTYD statistics (they feed the behaviour features
``n_refunds`` and ``refund_amount`` instead); ``refunds="include"`` treats every row as
lifetimes does (a refund then counts as a purchase period and is summed into its period
total). Rows with a missing ``customer_id``, ``ts`` or ``amount`` are ignored.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Literal

import numpy as np
import pandas as pd

from crmscore.features.time import (
    as_of_day_number,
    cutoff_end,
    day_index,
    period_index,
    period_scale,
)

__all__ = [
    "BTYD_COLUMNS",
    "CAL_HOLDOUT_COLUMNS",
    "RefundRule",
    "btyd_summary",
    "calibration_and_holdout",
    "purchase_mask",
]

logger = logging.getLogger(__name__)

RefundRule = Literal["exclude", "include"]
DateLike = date | datetime | str | pd.Timestamp

#: Columns of :func:`btyd_summary`, in lifetimes' order.
BTYD_COLUMNS: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")
#: Columns of :func:`calibration_and_holdout`, in lifetimes' order.
CAL_HOLDOUT_COLUMNS: tuple[str, ...] = (
    "frequency_cal",
    "recency_cal",
    "T_cal",
    "monetary_value_cal",
    "frequency_holdout",
    "monetary_value_holdout",
    "duration_holdout",
)


def purchase_mask(transactions: pd.DataFrame, refunds: RefundRule = "exclude") -> np.ndarray:
    """Rows of ``transactions`` that are purchases.

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions (``customer_id``, ``ts``, ``amount``).
    refunds : {"exclude", "include"}
        ``"exclude"``: rows with ``amount < 0`` are refunds, not purchases (zero amounts are
        purchases). ``"include"``: every row with an amount is a purchase (lifetimes' view).

    Returns
    -------
    numpy.ndarray
        Boolean mask; rows with a missing customer, timestamp or amount are never purchases.
    """
    if refunds not in ("exclude", "include"):
        raise ValueError(f"refunds must be 'exclude' or 'include', got {refunds!r}")
    amt = transactions["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(amt)
    ok &= transactions["customer_id"].notna().to_numpy(dtype=bool, copy=True)
    ok &= transactions["ts"].notna().to_numpy(dtype=bool, copy=True)
    if refunds == "exclude":
        ok &= amt >= 0
    return ok


def _encode(customer_ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of customer ids, codes ordered like the sorted ids."""
    codes, uniques = pd.factorize(customer_ids, sort=True)
    return codes.astype(np.int64, copy=False), pd.Index(uniques, name="customer_id")


def _sorted_rows(
    transactions: pd.DataFrame, mask: np.ndarray, period: str, split_day: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """Select ``mask`` rows and sort them once by (customer, [holdout flag], period).

    Returns sorted ``codes``, ``periods``, ``amounts``, ``is_holdout`` and the id index.
    """
    sub_ids = transactions["customer_id"][mask]
    codes, ids = _encode(sub_ids)
    days = day_index(transactions["ts"][mask])
    amt = transactions["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[mask]
    per = period_index(days, period)
    hold = days >= split_day if split_day is not None else np.zeros(len(days), dtype=bool)
    if len(codes) == 0:
        return codes, per, amt, hold, ids
    pmin = int(per.min())
    span = int(per.max()) - pmin + 1
    key = codes * (2 * span) + hold.astype(np.int64) * span + (per - pmin)
    order = np.argsort(key)
    return codes[order], per[order], amt[order], hold[order], ids


def _period_totals(
    codes: np.ndarray, per: np.ndarray, amt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collapse rows sorted by (customer, period) to one row per purchase period (amounts summed)."""
    new = np.empty(len(codes), dtype=bool)
    new[:1] = True
    new[1:] = (codes[1:] != codes[:-1]) | (per[1:] != per[:-1])
    starts = np.flatnonzero(new)
    return codes[starts], per[starts], np.add.reduceat(amt, starts)


def _per_customer(
    pcodes: np.ndarray, pper: np.ndarray, ptot: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From period rows sorted by (customer, period): code, frequency, first, last, monetary_value."""
    new = np.empty(len(pcodes), dtype=bool)
    new[:1] = True
    new[1:] = pcodes[1:] != pcodes[:-1]
    cs = np.flatnonzero(new)
    ce = np.append(cs[1:], len(pcodes)) - 1
    frequency = (ce - cs).astype(np.float64)
    repeat = ptot.copy()
    repeat[cs] = 0.0
    repeat_sum = np.add.reduceat(repeat, cs)
    monetary = np.divide(repeat_sum, frequency, out=np.zeros_like(repeat_sum), where=frequency > 0)
    return pcodes[cs], frequency, pper[cs], pper[ce], monetary


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    idx = pd.Index([], dtype="str", name="customer_id")
    return pd.DataFrame({c: pd.Series([], dtype=np.float64, index=idx) for c in columns}, index=idx)


def btyd_summary(
    transactions: pd.DataFrame,
    as_of: DateLike,
    *,
    period: Literal["D", "W"] = "D",
    time_unit: Literal["day", "week"] = "day",
    refunds: RefundRule = "exclude",
) -> pd.DataFrame:
    """Frequency, recency, T and monetary value per customer at the cutoff ``as_of``.

    Same numbers as ``lifetimes.utils.summary_data_from_transaction_data(transactions,
    "customer_id", "ts", "amount", observation_period_end=as_of, freq=period,
    freq_multiplier=days_per_unit / days_per_period)`` on the transactions known at ``as_of``
    (see the module docstring for the rules).

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions (``customer_id``, ``ts`` UTC, ``amount``). Not modified.
    as_of : date-like
        Cutoff day (UTC); rows with ``ts >= cutoff_end(as_of)`` are ignored.
    period : {"D", "W"}
        Bucketing period.
    time_unit : {"day", "week"}
        Unit of ``recency`` and ``T``.
    refunds : {"exclude", "include"}
        Whether refund rows (``amount < 0``) are purchases; see :func:`purchase_mask`.

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted; only customers with a known purchase), float64 columns
        ``frequency``, ``recency``, ``T``, ``monetary_value``.
    """
    a, b = period_scale(period, time_unit)
    end = cutoff_end(as_of)
    mask = purchase_mask(transactions, refunds)
    mask &= (transactions["ts"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    if not mask.any():
        return _empty(BTYD_COLUMNS)
    codes, per, amt, _, ids = _sorted_rows(transactions, mask, period)
    p_end = int(period_index(as_of_day_number(as_of), period))
    c, freq, first, last, mv = _per_customer(*_period_totals(codes, per, amt))
    return pd.DataFrame(
        {
            "frequency": freq,
            "recency": (last - first) * a / b,
            "T": (p_end - first) * a / b,
            "monetary_value": mv,
        },
        index=ids[c],
    )


def calibration_and_holdout(
    transactions: pd.DataFrame,
    calibration_end: DateLike,
    observation_end: DateLike,
    *,
    period: Literal["D", "W"] = "D",
    time_unit: Literal["day", "week"] = "day",
    refunds: RefundRule = "exclude",
) -> pd.DataFrame:
    """Calibration summary and holdout counts per customer (lifetimes' ``calibration_and_holdout_data``).

    The calibration period holds the transactions known at ``calibration_end``; the holdout
    those known at ``observation_end`` but not at ``calibration_end``. As in lifetimes:

    * rows are the customers with a calibration purchase (holdout-only customers are dropped);
    * ``*_cal`` columns are :func:`btyd_summary` at ``calibration_end``;
    * ``frequency_holdout`` = number of distinct holdout purchase periods (not minus one; a
      weekly period straddling ``calibration_end`` counts in both parts);
    * ``monetary_value_holdout`` = mean amount of the holdout *transactions* (lifetimes averages
      rows here, not period totals), 0 without holdout purchases;
    * ``duration_holdout`` = observation period − calibration period, in ``time_unit``.

    lifetimes raises when the holdout has no transaction at all; here that case returns zeros and
    logs a warning.

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions. Not modified.
    calibration_end, observation_end : date-like
        Cutoff days (UTC), ``calibration_end < observation_end``.
    period, time_unit, refunds
        As in :func:`btyd_summary`.

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted), float64 columns :data:`CAL_HOLDOUT_COLUMNS`.
    """
    a, b = period_scale(period, time_unit)
    cal_day = as_of_day_number(calibration_end)
    obs_day = as_of_day_number(observation_end)
    if obs_day <= cal_day:
        raise ValueError("observation_end must be after calibration_end")
    mask = purchase_mask(transactions, refunds)
    mask &= (transactions["ts"] < cutoff_end(observation_end)).to_numpy(dtype=bool, na_value=False, copy=True)
    if not mask.any():
        return _empty(CAL_HOLDOUT_COLUMNS)
    codes, per, amt, hold, ids = _sorted_rows(transactions, mask, period, split_day=cal_day + 1)
    cal = ~hold
    if not cal.any():
        return _empty(CAL_HOLDOUT_COLUMNS)
    if cal.all():
        logger.warning("calibration_and_holdout: no transaction in the holdout period")
    p_cal = int(period_index(cal_day, period))
    p_obs = int(period_index(obs_day, period))
    c, freq, first, last, mv = _per_customer(*_period_totals(codes[cal], per[cal], amt[cal]))
    n_ids = len(ids)
    hc, _, _ = _period_totals(codes[hold], per[hold], amt[hold])
    freq_h = np.bincount(hc, minlength=n_ids).astype(np.float64)
    n_rows_h = np.bincount(codes[hold], minlength=n_ids).astype(np.float64)
    sum_h = np.bincount(codes[hold], weights=amt[hold], minlength=n_ids).astype(np.float64)
    mv_h = np.divide(sum_h, n_rows_h, out=np.zeros_like(sum_h), where=n_rows_h > 0)
    return pd.DataFrame(
        {
            "frequency_cal": freq,
            "recency_cal": (last - first) * a / b,
            "T_cal": (p_cal - first) * a / b,
            "monetary_value_cal": mv,
            "frequency_holdout": freq_h[c],
            "monetary_value_holdout": mv_h[c],
            "duration_holdout": np.full(len(c), (p_obs - p_cal) * a / b),
        },
        index=ids[c],
    )
