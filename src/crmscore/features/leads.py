"""Lead features at a scoring time ``as_of``.

Rows: the leads known at ``as_of`` (``created_at < cutoff_end(as_of)``), by default only those
still open then (``converted_at`` missing or not before ``cutoff_end``), the ones a scorer
scores. Features:

* lead attributes: every column of ``leads`` except ``lead_id``, ``created_at``,
  ``converted_at``, ``customer_id`` (both only known at conversion), label columns and
  timestamps; numeric as float64, text as ``category`` (sorted categories of the rows shown);
* ``lead_age_days``: whole days from creation to ``as_of``;
* from the activities known at ``as_of`` (``ts < cutoff_end``): ``n_activities``,
  ``activities_{d}d`` for the recent windows, ``days_since_last_activity`` (NaN without one)
  and one ``activity_<type>`` count per activity type seen by then (type names lower-cased,
  non-alphanumerics replaced by ``_``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from crmscore.core.ids import id_index
from crmscore.core.serial import slug
from crmscore.core.time import DateLike, as_of_day_number, cutoff_end, day_index
from crmscore.features.behaviour import _as_feature

__all__ = ["LEAD_NON_FEATURES", "lead_features", "open_lead_mask", "window_closed_mask"]

logger = logging.getLogger(__name__)


#: Columns of ``leads`` that are never features.
LEAD_NON_FEATURES: frozenset[str] = frozenset({"lead_id", "created_at", "converted_at", "customer_id"})


def open_lead_mask(leads: pd.DataFrame, as_of: DateLike, *, open_only: bool = True) -> np.ndarray:
    """Leads created before ``cutoff_end(as_of)`` (and, if ``open_only``, not converted before it)."""
    end = cutoff_end(as_of)
    mask = (leads["created_at"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    if open_only and "converted_at" in leads:
        mask &= ~(leads["converted_at"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    return mask


def window_closed_mask(leads: pd.DataFrame, as_of: DateLike, window_days: int) -> np.ndarray:
    """Leads whose conversion window (``created_at + window_days``) ended before ``cutoff_end(as_of)``.

    For such an open lead the outcome is known at the cutoff (not converted in time): it is
    neither a training row (unless ``leads.include_stale``) nor scored.
    """
    window_end = leads["created_at"] + pd.Timedelta(days=window_days)
    return (window_end < cutoff_end(as_of)).to_numpy(dtype=bool, na_value=False, copy=True)


def lead_features(
    leads: pd.DataFrame,
    activities: pd.DataFrame | None,
    as_of: DateLike,
    *,
    recent_days: Sequence[int] = (7, 30),
    exclude: Iterable[str] = (),
    open_only: bool = True,
) -> pd.DataFrame:
    """Features of the leads known (and open) at ``as_of``.

    Parameters
    ----------
    leads : DataFrame
        Canonical leads (unique ``lead_id``). Not modified.
    activities : DataFrame or None
        Canonical lead activities; ``None`` means the activity features are absent (logged).
    as_of : date-like
        Scoring cutoff day.
    recent_days : sequence of int
        Windows of ``activities_{d}d``.
    exclude : iterable of str
        Further columns that are not features (e.g. a label column).
    open_only : bool
        Keep only leads not yet converted at the cutoff.

    Returns
    -------
    DataFrame
        Index ``lead_id`` (sorted).
    """
    rows = leads[open_lead_mask(leads, as_of, open_only=open_only)]
    rows = rows.drop_duplicates("lead_id", keep="first").set_index("lead_id").sort_index()
    ids = id_index(rows.index, "lead_id")
    rows.index = ids
    today = as_of_day_number(as_of)
    n = len(ids)
    out: dict[str, object] = {}
    out["lead_age_days"] = (today - day_index(rows["created_at"])).astype(np.float64)
    drop = LEAD_NON_FEATURES | set(exclude)
    for col in rows.columns:
        if col in drop:
            continue
        feat = _as_feature(rows[col], col)
        if feat is not None:
            out[col] = feat.to_numpy() if not isinstance(feat.dtype, pd.CategoricalDtype) else feat.array
    if activities is None:
        logger.info("no lead_activities table: activity features absent")
        return pd.DataFrame(out, index=ids)

    end = cutoff_end(as_of)
    ok = (activities["ts"] < end).to_numpy(dtype=bool, na_value=False, copy=True)
    pos_all = ids.get_indexer(activities["lead_id"])
    ok &= pos_all >= 0
    pos = pos_all[ok]
    age = today - day_index(activities["ts"][ok])
    out["n_activities"] = np.bincount(pos, minlength=n).astype(np.float64)
    for d in recent_days:
        out[f"activities_{d}d"] = np.bincount(pos[age < d], minlength=n).astype(np.float64)
    last = np.full(n, np.inf)
    np.minimum.at(last, pos, age.astype(np.float64))
    out["days_since_last_activity"] = np.where(np.isinf(last), np.nan, last)
    raw_codes, raw_kinds = pd.factorize(activities["activity"][ok].fillna("unknown"))
    # slug the distinct types only (not every row); types that slug alike are merged
    codes, names = pd.factorize(
        pd.Index([slug(k, empty="unknown") for k in raw_kinds], dtype=object), sort=True
    )
    codes = codes[raw_codes] if len(raw_codes) else raw_codes
    k = len(names)
    if k:
        counts = np.bincount(pos * k + codes, minlength=n * k).reshape(n, k).astype(np.float64)
        for j, name in enumerate(names):
            out[f"activity_{name}"] = counts[:, j]
    return pd.DataFrame(out, index=ids)
