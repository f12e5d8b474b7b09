"""BTYD sufficient statistics per customer at a cutoff (frequency, recency, T, monetary_value).

Exactly the numbers of lifetimes' ``summary_data_from_transaction_data`` and
``calibration_and_holdout_data`` (lifetimes 0.11.3), computed without per-row Python or a
groupby, so they scale to millions of rows: customer ids become integer codes (short arrow
string ids packed into integers and ranked by one numpy sort; other ids hashed, with the
unique ids sorted once at the end), timestamps become integer day numbers, and the
per-customer statistics are ``np.minimum.at`` / ``np.maximum.at`` / ``np.bincount``
reductions plus one value sort (no argsort) of packed ``(customer, period)`` keys for the
number of distinct purchase periods.

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

Cutoff (``crmscore.core.time``): a transaction is known at ``as_of`` iff
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
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.core.time import (
    _TICKS_PER_DAY,
    DateLike,
    as_of_day_number,
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


def _rank_order(uniques: Any) -> np.ndarray | None:
    """Permutation sorting the unique ids (``None`` when they already are sorted).

    Same order as ``pandas.factorize(..., sort=True)``. Strings are sorted as fixed-width numpy
    unicode (C comparisons instead of Python ones) and the result
    is verified on the original objects, falling back to pandas when the check fails.
    """
    n = len(uniques)
    if n < 2:
        return None
    if isinstance(uniques, pd.Index):
        uniques = uniques.to_numpy() if isinstance(uniques.dtype, np.dtype) else uniques.array
    if not isinstance(uniques, np.ndarray):  # extension arrays (arrow strings, categoricals, ...)
        order = np.asarray(uniques.argsort(), dtype=np.int64)
    elif uniques.dtype != object:
        order = np.argsort(uniques, kind="stable")
    else:
        order = None
        if _strictly_increasing(uniques):
            return None
        if pd.api.types.infer_dtype(uniques, skipna=False) == "string":
            cand = np.argsort(uniques.astype(str), kind="stable")
            if _strictly_increasing(uniques[cand]):
                order = cand
        if order is None:  # mixed types or a string numpy cannot represent (trailing NUL)
            ranks, _ = pd.factorize(uniques, sort=True)
            order = np.argsort(ranks, kind="stable")
    return order


def _strictly_increasing(values: np.ndarray) -> bool:
    """Whether an object array is strictly increasing (``False`` on incomparable values)."""
    try:
        with np.errstate(all="ignore"):
            head = values[: min(len(values), 1024)]
            if not bool(np.all(head[1:] > head[:-1])):
                return False
            return bool(np.all(values[1:] > values[:-1]))
    except (TypeError, ValueError):
        return False


def _encode_short_strings(customer_ids: pd.Series) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """Sorted-rank codes of arrow-backed string ids of at most 8 bytes, without hashing.

    Each id's UTF-8 bytes are packed big-endian into one ``uint64`` (zero padded; when the
    lengths differ, at most 7 bytes plus the length in the last byte), so that integer order is
    the ids' code point order (a prefix sorts first). ``np.unique`` on the packed keys (a SIMD
    sort) then gives codes that already follow the sorted ids, several times faster than hashing
    a million distinct strings. Returns ``None`` when the column does not qualify (other dtype,
    missing values, longer ids).
    """
    dtype = customer_ids.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or len(customer_ids) == 0:
        return None
    import pyarrow as pa

    arr = pa.array(customer_ids.array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    off = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
    off = off.astype(np.int64)
    lens = np.diff(off)
    lmin, lmax = int(lens.min()), int(lens.max())
    if lmax > 8 or (lmin != lmax and lmax > 7):
        return None
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    mat = np.zeros((len(arr), 8), dtype=np.uint8)
    if lmin == lmax:
        if lmax:
            mat[:, :lmax] = data[off[0] : off[-1]].reshape(-1, lmax)
    else:
        j = np.arange(lmax)
        idx = np.minimum(off[:-1, None] + j, max(len(data) - 1, 0))
        mat[:, :lmax] = np.where(j < lens[:, None], data[idx], 0)
        mat[:, 7] = lens
    keys = mat.view(">u8").ravel().astype(np.uint64)
    ukeys, codes = np.unique(keys, return_inverse=True)
    return codes.astype(np.int64, copy=False), ukeys, (lmin == lmax, lmax, dtype)


def _decode_short_strings(ukeys: np.ndarray, spec: Any) -> pd.Index:
    """Inverse of :func:`_encode_short_strings` for the selected packed keys."""
    import pyarrow as pa

    same, lmax, dtype = spec
    mat = ukeys.astype(">u8").view(np.uint8).reshape(-1, 8)
    if same:
        lens = np.full(len(ukeys), lmax, dtype=np.int64)
        data = np.ascontiguousarray(mat[:, :lmax]).ravel()
    else:
        lens = mat[:, 7].astype(np.int64)
        data = mat[:, :lmax][np.arange(lmax) < lens[:, None]]
    offsets = np.zeros(len(ukeys) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    arr = pa.Array.from_buffers(
        pa.large_string(), len(ukeys), [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())]
    )
    return pd.Index(pd.array(arr, dtype=dtype), name="customer_id")


def _looks_grouped(obj: np.ndarray) -> bool:
    """Whether most neighbouring rows of the first few thousand share their id."""
    probe = obj[: min(len(obj), 4096)]
    if len(probe) < 2:
        return False
    try:
        return bool(np.mean(probe[1:] != probe[:-1]) < 0.5)
    except (TypeError, ValueError):
        return False


def _not_equal_next(obj: np.ndarray, out: np.ndarray) -> bool:
    """``out = [True, obj[1:] != obj[:-1]]``; ``False`` when some values cannot be compared."""
    out[0] = True
    try:
        np.not_equal(obj[1:], obj[:-1], out=out[1:])
    except (TypeError, ValueError):
        return False
    return True


def _encode(
    customer_ids: pd.Series,
) -> tuple[np.ndarray, int, np.ndarray | None, Callable[[np.ndarray], pd.Index]]:
    """Integer codes of customer ids (``-1`` when missing), the unique ids and their sort order.

    Returns the codes, the number of distinct ids, their sort order (``None``: codes already
    follow the sorted ids) and a function building the ``customer_id`` index of some codes (the
    index is built once, on the selected ids only). Short arrow-backed string ids are packed
    into integers (:func:`_encode_short_strings`).

    Codes follow the order of first appearance (hashing only, no sort of the rows); the sort
    order of the unique ids comes from :func:`_rank_order`. An object column grouped by
    customer (each customer's rows contiguous, e.g. exported sorted by id) is run-length
    encoded first, so only one id per run is hashed, and none at all when the runs are already
    in increasing order.
    """
    short = _encode_short_strings(customer_ids)
    if short is not None:
        codes, ukeys, spec = short
        return codes, len(ukeys), None, lambda c: _decode_short_strings(ukeys[c], spec)
    if customer_ids.dtype == object:
        obj = customer_ids.to_numpy()
        n = len(obj)
        new = np.empty(n, dtype=bool)
        if _looks_grouped(obj) and _not_equal_next(obj, new):
            starts = np.flatnonzero(new)
            heads = obj[starts]
            if _strictly_increasing(heads):
                codes = np.cumsum(new, dtype=np.int64) - 1
                return codes, len(heads), None, _taker(heads)
            hcodes, uniques = pd.factorize(heads, sort=False)
            codes = np.repeat(hcodes.astype(np.int64), np.diff(np.append(starts, n)))
            return codes, len(uniques), _rank_order(uniques), _taker(uniques)
        codes, uniques = pd.factorize(obj, sort=False)
    else:
        codes, uniques = pd.factorize(customer_ids, sort=False)
    if isinstance(uniques, pd.Index):
        uniques = uniques.to_numpy() if isinstance(uniques.dtype, np.dtype) else uniques.array
    return codes.astype(np.int64, copy=False), len(uniques), _rank_order(uniques), _taker(uniques)


def _known_rows(
    transactions: pd.DataFrame, refunds: RefundRule, last_day: int, period: str
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray | None, Callable[[np.ndarray], pd.Index]
]:
    """Purchase rows known at the end of day ``last_day``, as flat numpy arrays (row order kept).

    Returns ``codes``, ``days``, ``periods``, ``amounts`` of the selected rows, then the number
    of ids, their sort order and the index builder of :func:`_encode`. Same selection as
    :func:`purchase_mask` plus ``day <= last_day``, computed on integer day numbers.
    """
    if refunds not in ("exclude", "include"):
        raise ValueError(f"refunds must be 'exclude' or 'include', got {refunds!r}")
    codes, n_ids, order, to_index = _encode(transactions["customer_id"])
    amt = transactions["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    idx = pd.DatetimeIndex(transactions["ts"])
    i8 = idx.asi8
    ok = codes >= 0
    ok &= i8 != np.iinfo(np.int64).min  # NaT
    ok &= amt >= 0 if refunds == "exclude" else ~np.isnan(amt)
    days = np.floor_divide(i8, _TICKS_PER_DAY[idx.unit])
    ok &= days <= last_day
    days = days[ok]
    return codes[ok], days, period_index(days, period), amt[ok], n_ids, order, to_index


def _n_distinct(codes: np.ndarray, per: np.ndarray, n_ids: int) -> np.ndarray:
    """Number of distinct periods per customer code (one value sort of a packed key, no argsort)."""
    if len(codes) == 0:
        return np.zeros(n_ids, dtype=np.int64)
    pmin = int(per.min())
    span = int(per.max()) - pmin + 1
    key = codes * span + (per - pmin)
    if n_ids * span < 2**32:
        key = key.astype(np.uint32)
    key.sort()
    new = np.empty(len(key), dtype=bool)
    new[0] = True
    np.not_equal(key[1:], key[:-1], out=new[1:])
    return np.bincount(key[new] // span, minlength=n_ids)


def _customer_stats(
    codes: np.ndarray, per: np.ndarray, amt: np.ndarray, n_ids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per code: number of distinct purchase periods, first and last period, repeat-period spend.

    The repeat spend is the sum of the amounts outside the first purchase period (lifetimes'
    sum of the repeat period totals).
    """
    first = np.full(n_ids, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, per)
    last = np.full(n_ids, np.iinfo(np.int64).min)
    np.maximum.at(last, codes, per)
    rep = per != first[codes]
    rep_sum = np.bincount(codes[rep], weights=amt[rep], minlength=n_ids)
    return _n_distinct(codes, per, n_ids), first, last, rep_sum


def _present(n_periods: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Codes with at least one purchase period, in sorted-id order."""
    if order is None:
        return np.flatnonzero(n_periods > 0)
    return order[n_periods[order] > 0]


def _taker(uniques: Any) -> Callable[[np.ndarray], pd.Index]:
    """Function building the ``customer_id`` index of some codes from the unique ids."""
    return lambda c: pd.Index(uniques[c], name="customer_id")


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
    last_day = as_of_day_number(as_of)
    codes, _, per, amt, n_ids, order, to_index = _known_rows(transactions, refunds, last_day, period)
    if len(codes) == 0:
        return _empty(BTYD_COLUMNS)
    n_per, first, last, rep_sum = _customer_stats(codes, per, amt, n_ids)
    c = _present(n_per, order)
    freq = (n_per[c] - 1).astype(np.float64)
    first, last = first[c], last[c]
    p_end = int(period_index(last_day, period))
    return pd.DataFrame(
        {
            "frequency": freq,
            "recency": (last - first) * a / b,
            "T": (p_end - first) * a / b,
            "monetary_value": np.divide(rep_sum[c], freq, out=np.zeros(len(c)), where=freq > 0),
        },
        index=to_index(c),
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
    codes, days, per, amt, n_ids, order, to_index = _known_rows(transactions, refunds, obs_day, period)
    if len(codes) == 0:
        return _empty(CAL_HOLDOUT_COLUMNS)
    hold = days > cal_day
    cal = ~hold
    if not cal.any():
        return _empty(CAL_HOLDOUT_COLUMNS)
    if cal.all():
        logger.warning("calibration_and_holdout: no transaction in the holdout period")
    p_cal = int(period_index(cal_day, period))
    p_obs = int(period_index(obs_day, period))
    n_per, first, last, rep_sum = _customer_stats(codes[cal], per[cal], amt[cal], n_ids)
    c = _present(n_per, order)
    freq = (n_per[c] - 1).astype(np.float64)
    first, last = first[c], last[c]
    hc, ha = codes[hold], amt[hold]
    freq_h = _n_distinct(hc, per[hold], n_ids)[c].astype(np.float64)
    n_rows_h = np.bincount(hc, minlength=n_ids)[c].astype(np.float64)
    sum_h = np.bincount(hc, weights=ha, minlength=n_ids)[c]
    return pd.DataFrame(
        {
            "frequency_cal": freq,
            "recency_cal": (last - first) * a / b,
            "T_cal": (p_cal - first) * a / b,
            "monetary_value_cal": np.divide(rep_sum[c], freq, out=np.zeros(len(c)), where=freq > 0),
            "frequency_holdout": freq_h,
            "monetary_value_holdout": np.divide(sum_h, n_rows_h, out=np.zeros(len(c)), where=n_rows_h > 0),
            "duration_holdout": np.full(len(c), (p_obs - p_cal) * a / b),
        },
        index=to_index(c),
    )
