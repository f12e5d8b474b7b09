"""Lead features at a scoring time ``as_of``.

Rows: the leads known at ``as_of`` (``created_at < cutoff_end(as_of)``), by default only those
still open then (``converted_at`` missing or not before ``cutoff_end``), the ones a scorer
scores. Features:

* lead attributes: every column of ``leads`` whose role is ``feature``
  (:mod:`crmscore.ingest.roles`: identifiers, owners or reps, personal data and free text never
  are) except ``lead_id``, ``created_at``, ``converted_at``, ``customer_id`` (both only known at
  conversion), label columns and timestamps; numeric as float64, text as ``category`` (sorted
  categories of the rows shown);
* ``lead_age_days``: whole days from creation to ``as_of``;
* from the activities known at ``as_of`` (``ts < cutoff_end``): ``n_activities``,
  ``activities_{d}d`` for the recent windows, ``days_since_last_activity`` (NaN without one)
  and one ``activity_<type>`` count per activity type seen by then (type names lower-cased,
  non-alphanumerics replaced by ``_``); types with fewer than :data:`MIN_ACTIVITY_TYPE_ROWS`
  activities at the cutoff are pooled as ``activity_other``, so a free-text value typed into
  the type column never becomes a feature name stored in the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from crmscore.core.ids import id_index
from crmscore.core.serial import slug
from crmscore.core.time import DateLike, as_of_day_number, cutoff_end, day_index
from crmscore.features.behaviour import _as_feature
from crmscore.ingest.roles import decide_roles, non_features

__all__ = [
    "LEAD_NON_FEATURES",
    "MIN_ACTIVITY_TYPE_ROWS",
    "lead_features",
    "open_lead_mask",
    "window_closed_mask",
]

logger = logging.getLogger(__name__)


#: An activity type becomes its own ``activity_<type>`` feature (its name stored in the model)
#: only with at least this many activities at the cutoff; rarer types count as ``activity_other``
#: (free text typed into the type column never becomes a feature name).
MIN_ACTIVITY_TYPE_ROWS = 20

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
    roles: Mapping[str, str] | None = None,
    min_type_rows: int = MIN_ACTIVITY_TYPE_ROWS,
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
    roles : mapping, optional
        Column → role (:mod:`crmscore.ingest.roles`, ``CRMData.roles["leads"]``); only
        ``feature`` columns are used. ``None``: decided here on the whole ``leads`` with the
        default rules (no declared roles, PII guard on).
    min_type_rows : int
        Activities an activity type needs at the cutoff to be its own ``activity_<type>``
        feature; rarer types are counted in ``activity_other``.

    Returns
    -------
    DataFrame
        Index ``lead_id`` (sorted).
    """
    if roles is None:
        roles = decide_roles("leads", leads).roles
    rows = leads[open_lead_mask(leads, as_of, open_only=open_only)]
    rows = rows.drop_duplicates("lead_id", keep="first").set_index("lead_id").sort_index()
    ids = id_index(rows.index, "lead_id")
    rows.index = ids
    today = as_of_day_number(as_of)
    n = len(ids)
    out: dict[str, object] = {}
    out["lead_age_days"] = (today - day_index(rows["created_at"])).astype(np.float64)
    drop = LEAD_NON_FEATURES | set(exclude) | non_features(roles, rows.columns)
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
    # slug the distinct types only (not every row); types that slug alike are merged; a type
    # name becomes a feature name (stored in the model): rare types are pooled as "other"
    rows_per_kind = np.bincount(raw_codes, minlength=len(raw_kinds)) if len(raw_codes) else np.zeros(0)
    slugs = [
        slug(k, empty="unknown") if m >= min_type_rows else "other"
        for k, m in zip(raw_kinds, rows_per_kind, strict=True)
    ]
    codes, names = pd.factorize(pd.Index(slugs, dtype=object), sort=True)
    codes = codes[raw_codes] if len(raw_codes) else raw_codes
    k = len(names)
    if k:
        counts = np.bincount(pos * k + codes, minlength=n * k).reshape(n, k).astype(np.float64)
        for j, name in enumerate(names):
            out[f"activity_{name}"] = counts[:, j]
    return pd.DataFrame(out, index=ids)
