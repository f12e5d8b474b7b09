"""Cutoffs and time units: the one place that says what ``as_of`` means.

Convention
----------
``as_of`` is a calendar day in UTC. Everything that happened *on or before* that day is
known at the cutoff; everything from the next midnight UTC on is not. In code:
an event at ``ts`` is known iff ``ts < cutoff_end(as_of)``. This matches lifetimes'
``observation_period_end`` (transactions on that date are included, ``T`` counts whole
days from the first purchase day to ``as_of``).

Label windows start at ``cutoff_end(as_of)`` and last ``horizon_days`` whole days.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

__all__ = [
    "DAYS_PER_UNIT",
    "PERIOD_DAYS",
    "DateLike",
    "as_of_day",
    "as_of_day_number",
    "cutoff_end",
    "day_index",
    "known_mask",
    "latest_cutoff_mask",
    "period_index",
    "period_scale",
    "rolling_cutoffs",
    "to_utc",
]

#: Anything that names a calendar day or an instant (see :func:`as_of_day`).
DateLike = date | datetime | str | pd.Timestamp

#: Length of each supported time unit in days (the BG/NBD literature's week is days / 7).
DAYS_PER_UNIT: dict[str, float] = {"day": 1.0, "week": 7.0}


def as_of_day(as_of: date | datetime | str | pd.Timestamp) -> pd.Timestamp:
    """Normalise ``as_of`` to midnight UTC of that calendar day.

    Parameters
    ----------
    as_of : date, datetime, str or Timestamp
        The cutoff day. A value with a time of day other than midnight is refused, so no
        caller can believe the cutoff is finer than a day. A timezone-aware value is
        converted to UTC first.

    Returns
    -------
    pandas.Timestamp
        ``YYYY-MM-DD 00:00:00+00:00``.

    Raises
    ------
    ValueError
        ``as_of`` is missing, unparsable or not a whole day.
    """
    if as_of is None:
        raise ValueError("as_of is required: crmscore never assumes 'now'")
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of {as_of!r} is not a date (expected YYYY-MM-DD)") from exc
    if ts is pd.NaT:
        raise ValueError("as_of is NaT")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.normalize():
        raise ValueError(f"as_of must be a calendar day (UTC), got {as_of!r} with a time of day")
    return ts


def cutoff_end(as_of: date | datetime | str | pd.Timestamp) -> pd.Timestamp:
    """Exclusive end instant of the cutoff day: events with ``ts < cutoff_end`` are known."""
    return as_of_day(as_of) + pd.Timedelta(days=1)


def to_utc(values: pd.Series) -> pd.Series:
    """Return a timezone-aware UTC datetime Series (naive values are taken as UTC)."""
    s = pd.to_datetime(values, utc=True)
    return s


def known_mask(ts: pd.Series, as_of: date | datetime | str | pd.Timestamp) -> np.ndarray:
    """Boolean mask of events known at ``as_of`` (``ts < cutoff_end(as_of)``; NaT is not known)."""
    end = cutoff_end(as_of)
    return (ts < end).to_numpy(dtype=bool, na_value=False)


def rolling_cutoffs(last: date | datetime | str | pd.Timestamp, n: int, step_days: int) -> list[pd.Timestamp]:
    """``n`` cutoff days ending at ``last``, ``step_days`` apart, oldest first (rolling origin)."""
    if n < 1 or step_days < 1:
        raise ValueError("n and step_days must be positive")
    end = as_of_day(last)
    return [end - pd.Timedelta(days=step_days * k) for k in range(n - 1, -1, -1)]


# --- day and period arithmetic (vectorised helpers for the feature builders) ---------------------

#: Length of each supported bucketing period in days (pandas ``W`` = weeks ending Sunday).
PERIOD_DAYS: dict[str, int] = {"D": 1, "W": 7}

_TICKS_PER_DAY: dict[str, int] = {
    "s": 86_400,
    "ms": 86_400_000,
    "us": 86_400_000_000,
    "ns": 86_400_000_000_000,
}


def day_index(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC calendar day of each timestamp as an ``int64`` count of days since 1970-01-01.

    Parameters
    ----------
    ts : Series or DatetimeIndex
        Timestamps (timezone-aware, or naive taken as UTC). Must not contain ``NaT``:
        mask missing values out first.

    Returns
    -------
    numpy.ndarray
        ``int64`` day numbers (floor division, so instants before midnight belong to the day).
    """
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC")
    if idx.hasnans:
        raise ValueError("day_index: timestamps contain NaT; mask them out first")
    return np.floor_divide(idx.asi8, _TICKS_PER_DAY[idx.unit])


def period_index(days: np.ndarray | int, period: str) -> np.ndarray:
    """Bucket day numbers (see :func:`day_index`) into periods.

    ``"D"`` returns the day itself; ``"W"`` returns the pandas ``W-SUN`` week (Monday to
    Sunday) as consecutive integers, exactly the buckets of ``Series.dt.to_period("W")``
    that lifetimes uses. 1970-01-01 was a Thursday, so Monday 1969-12-29 is day -3.
    """
    d = np.asarray(days, dtype=np.int64)
    if period == "D":
        return d
    if period == "W":
        return np.floor_divide(d + 3, 7)
    raise ValueError(f"unsupported period {period!r} (expected 'D' or 'W')")


def as_of_day_number(as_of: date | datetime | str | pd.Timestamp) -> int:
    """Day number (days since 1970-01-01 UTC) of the cutoff day ``as_of``."""
    return int((as_of_day(as_of) - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(days=1))


def period_scale(period: str, time_unit: str) -> tuple[float, float]:
    """``(days per period, days per time unit)``: a period difference ``k`` is ``k * a / b`` units.

    ``("D", "week")`` is the fractional-week convention of the BG/NBD literature
    (daily buckets, time in weeks = days / 7).
    """
    if period not in PERIOD_DAYS:
        raise ValueError(f"unsupported period {period!r} (expected 'D' or 'W')")
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"unsupported time unit {time_unit!r} (expected 'day' or 'week')")
    return float(PERIOD_DAYS[period]), DAYS_PER_UNIT[time_unit]


def latest_cutoff_mask(cutoffs: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Rows of the latest cutoff: the out-of-time rule, in one place.

    Stacked training sets hold one row per record and cutoff. Whatever is fitted on such a set
    is checked on its *latest* cutoff only (the evaluation window of training; the
    calibration window of a classifier): a model never sees rows of the period it is judged
    on. Callers use this only with at least two distinct cutoffs (with one there is no later
    window, and they state the stratified split they fall back to).

    Parameters
    ----------
    cutoffs : Series, Index or array
        Each row's cutoff (timestamps, dates or ISO text).

    Returns
    -------
    numpy.ndarray
        Boolean mask, True on the rows whose cutoff is the latest.
    """
    series = cutoffs if isinstance(cutoffs, pd.Series) else pd.Series(np.asarray(cutoffs))
    cut = pd.to_datetime(series, utc=True)
    return (cut == cut.max()).to_numpy()
