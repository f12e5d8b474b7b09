"""Model gates: refuse to train (or to trust) a classifier on data that cannot support it.

* :class:`TooFewPositivesError`: fewer than ``min_rows`` training rows, or fewer than
  ``min_positives`` positives (or negatives), or a calibration window with fewer than
  ``min_calibration_positives`` of either class; the message says how many are needed.
* :class:`LeakageError`: one feature alone separates the classes with AUC above
  ``max_single_feature_auc`` (named in the message), or the evaluation AUC exceeds
  ``max_eval_auc`` (the most important features are named).
* :class:`WindowOverlapError`: the same customer (lead) is in both the training and the
  evaluation (or calibration) rows for overlapping label periods.

Every gate error is a :class:`ModelGateError` (a ``ValueError``): the training pipeline records
the model kind as ``failed`` with the message and goes on with the other kinds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

__all__ = [
    "LeakageError",
    "ModelGateError",
    "NotFittedModelError",
    "TooFewPositivesError",
    "WindowOverlapError",
    "check_class_counts",
    "check_no_overlap",
    "check_single_feature_leakage",
]


class NotFittedModelError(NotFittedError, RuntimeError):
    """A model used before ``fit``: scikit-learn's ``NotFittedError`` (still a ``RuntimeError``)."""


class ModelGateError(ValueError):
    """A model refused to train or to be trusted; the message says why and what is needed."""


class TooFewPositivesError(ModelGateError):
    """Too few rows or too few examples of a class for a stable model."""


class LeakageError(ModelGateError):
    """A feature or the evaluation looks too good to be true (label leakage canary)."""


class WindowOverlapError(ModelGateError):
    """The same record is in training and evaluation for overlapping label periods."""


def check_class_counts(y: Any, *, min_rows: int, min_positives: int, what: str = "training") -> None:
    """Raise :class:`TooFewPositivesError` unless ``y`` has enough rows and of each class.

    Both classes need ``min_positives`` examples (the minority class is what limits a
    classifier, whichever it is).
    """
    y01 = np.asarray(y).astype(bool)
    n, pos = len(y01), int(y01.sum())
    neg = n - pos
    if n < min_rows:
        raise TooFewPositivesError(
            f"{what} data has {n} rows; a stable model needs at least {min_rows} (min_rows)"
        )
    if pos < min_positives or neg < min_positives:
        raise TooFewPositivesError(
            f"{what} data has {pos} positives and {neg} negatives; a stable model needs at least "
            f"{min_positives} of each (min_positives): {max(min_positives - min(pos, neg), 0)} more "
            f"{'positives' if pos < neg else 'negatives'} are needed"
        )


def check_single_feature_leakage(aucs: pd.Series, ceiling: float) -> None:
    """Raise :class:`LeakageError` naming every feature whose single-feature AUC exceeds ``ceiling``."""
    bad = aucs[aucs > ceiling]
    if len(bad):
        listing = ", ".join(f"{name!r} (AUC {auc:.3f})" for name, auc in bad.items())
        raise LeakageError(
            f"feature {listing} alone separates the classes almost perfectly (ceiling "
            f"max_single_feature_auc={ceiling}); it is probably known only after the outcome "
            "(label leakage). Remove it (exclude_features) or raise the ceiling knowingly."
        )


def _utc_ns(values: Any) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch, UTC (Series/Index without object copies)."""
    if not isinstance(values, pd.Series | pd.Index):
        values = np.asarray(values)
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8


def check_no_overlap(
    train_ids: Any,
    eval_ids: Any,
    *,
    train_cutoffs: Any = None,
    eval_cutoffs: Any = None,
    horizon_days: int | None = None,
    what: str = "evaluation",
) -> None:
    """Refuse the same record in training and evaluation for overlapping label periods.

    With cutoffs and ``horizon_days`` (label windows ``[cutoff, cutoff + horizon)``), a record
    may appear in both only with label windows that do not overlap (cutoffs at least
    ``horizon_days`` apart). Without cutoffs or horizon (snapshot labels, lead conversion
    windows fixed per lead) any shared record is refused.

    Raises
    ------
    WindowOverlapError
        With the number of overlapping records and an example.
    """
    # ids as integer codes of one factorisation: the merge below then never hashes strings
    tr_ids, ev_ids = pd.Index(train_ids), pd.Index(eval_ids)
    codes, uniques = pd.factorize(tr_ids.append(ev_ids))
    tr = pd.DataFrame({"code": codes[: len(tr_ids)]})
    ev = pd.DataFrame({"code": codes[len(tr_ids) :]})
    dated = train_cutoffs is not None and eval_cutoffs is not None and horizon_days is not None
    if dated:  # as int64 nanoseconds: no per-row Timestamp objects
        tr["c_train"] = _utc_ns(train_cutoffs)
        ev["c_eval"] = _utc_ns(eval_cutoffs)
    both = tr.drop_duplicates().merge(ev.drop_duplicates(), on="code")
    both["id"] = np.asarray(uniques, dtype=object)[both["code"].to_numpy()] if len(both) else []
    if dated and len(both):
        gap = (both["c_eval"] - both["c_train"]).abs()
        both = both[gap < pd.Timedelta(days=int(horizon_days)).value]
    if len(both):
        ex = both.iloc[0]
        day = lambda ns: pd.Timestamp(int(ns), tz="UTC").date()  # noqa: E731
        detail = (
            f" (e.g. {ex['id']!r}: cutoffs {day(ex['c_train'])} and {day(ex['c_eval'])}, "
            f"less than the {horizon_days}-day label horizon apart)"
            if dated
            else f" (e.g. {ex['id']!r})"
        )
        raise WindowOverlapError(
            f"{both['id'].nunique()} record(s) appear in both the training and the {what} rows for "
            f"the same label period{detail}; space the cutoffs at least the label horizon apart or "
            "split by record"
        )
