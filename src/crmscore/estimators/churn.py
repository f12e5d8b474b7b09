"""Churn model: LightGBM in a scikit-learn Pipeline, calibrated on a later window, with gates.

Also the machinery shared with the lead-scoring model (:mod:`crmscore.estimators.leads`):
the frame preparer, the pipeline factory, :class:`CalibratedModel`, the gates and the
out-of-time evaluation.

Model
-----
``make_lgbm_pipeline(**params)`` builds ``Pipeline([("prepare", FramePreparer), ("model",
LGBMClassifier)])``. :class:`FramePreparer` learns at fit which columns are numeric and which
are categorical (pandas ``category``, text or object columns) and the categories of each;
at transform categorical columns become ``category`` dtype with exactly those categories, so
LightGBM uses them natively and a category never seen in training becomes missing.

Calibration on a later window
-----------------------------
:class:`CalibratedModel` fits the pipeline on the rows of the earlier cutoffs and a Platt
(``"sigmoid"``, logistic on the raw log-odds) or isotonic calibrator on the rows of the latest
cutoff of its training data: the calibrator never sees a training row and learns how the
scores of a *later* period map to outcomes (drift included). Data without dates (snapshot
exports with a label column, or a single cutoff) fall back to a stratified split of the
records (``calibration_fraction``), stated in ``calibration_split_`` and logged.

Gates (:class:`ModelGateError`)
-------------------------------
* :class:`TooFewPositivesError`: fewer than ``min_rows`` training rows, or fewer than
  ``min_positives`` positives (or negatives), or a calibration window with fewer than
  ``min_calibration_positives`` of either class; the message says how many are needed.
* :class:`LeakageError`: one feature alone separates the classes with AUC above
  ``max_single_feature_auc`` (named in the message), or the evaluation AUC exceeds
  ``max_eval_auc`` (the most important features are named).
* :class:`WindowOverlapError`: the same customer (lead) is in both the training and the
  evaluation (or calibration) rows for overlapping label periods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from crmscore.core.ids import categorical_from_text, text_codes
from crmscore.estimators import reasons as _reasons
from crmscore.evaluation.binary import fit_logistic_1d, gains_table, metrics_table, single_feature_auc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crmscore.config import ChurnConfig

__all__ = [
    "RISK_BANDS",
    "Baseline",
    "CalibratedChurnModel",
    "CalibratedModel",
    "EvaluationReport",
    "FramePreparer",
    "LeakageError",
    "ModelGateError",
    "TooFewPositivesError",
    "WindowOverlapError",
    "bgnbd_probability_no_purchase",
    "check_class_counts",
    "check_no_overlap",
    "check_single_feature_leakage",
    "clv_baselines",
    "evaluate_churn",
    "evaluate_out_of_time",
    "logistic_baseline",
    "make_lgbm_pipeline",
    "model_params",
    "out_of_time_split",
    "risk_band",
    "snapshot_churn_set",
]

logger = logging.getLogger(__name__)

#: Churn risk bands, highest first.
RISK_BANDS: tuple[str, ...] = ("high", "medium", "low")

#: Parameters shared by ``ChurnConfig``/``LeadsConfig`` and :class:`CalibratedModel`.
_MODEL_FIELDS: tuple[str, ...] = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
    "n_jobs",
    "random_state",
    "exclude_features",
    "calibration",
    "calibration_fraction",
    "min_rows",
    "min_positives",
    "min_calibration_positives",
    "max_single_feature_auc",
    "max_train_rows",
)
_LGBM_FIELDS: tuple[str, ...] = _MODEL_FIELDS[:9]
_CAL_EPS = 1e-6


# ------------------------------------------------------------------------------------------
# gates
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# preprocessing + LightGBM pipeline
# ------------------------------------------------------------------------------------------


def _is_categorical(s: pd.Series) -> bool:
    return not (
        pd.api.types.is_bool_dtype(s)
        or pd.api.types.is_numeric_dtype(s)
        or pd.api.types.is_datetime64_any_dtype(s)
        or pd.api.types.is_timedelta64_dtype(s)
    )


def _as_text(s: pd.Series) -> pd.Series:
    vals = s.astype(object)
    return vals.where(vals.isna(), vals.astype(str))


class FramePreparer(TransformerMixin, BaseEstimator):
    """Select and type the feature columns; categories learned at fit, unseen → missing.

    Parameters
    ----------
    exclude : tuple of str
        Columns that are never features (ids, cutoff, labels, redundant features). Timestamp
        and timedelta columns are dropped too (their time of knowledge is unknown).

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        Columns seen at fit.
    features_ : list of str
        Model input columns, in order.
    numeric_ : list of str
        Numeric and boolean features (as float64).
    categories_ : dict of str to list of str
        Categorical features and their categories (sorted text of the values seen at fit).
    """

    def __init__(self, exclude: tuple[str, ...] = ()) -> None:
        self.exclude = exclude

    def fit(self, X: pd.DataFrame, y: Any = None) -> FramePreparer:
        """Learn the feature columns, their kinds and the categories (``y`` is ignored)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FramePreparer needs a pandas DataFrame (column names carry meaning)")
        drop = set(self.exclude)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.features_: list[str] = []
        self.numeric_: list[str] = []
        self.categories_: dict[str, list[str]] = {}
        for col in X.columns:
            s = X[col]
            if col in drop:
                continue
            if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                logger.info("column %r is a timestamp: not a feature", col)
                continue
            self.features_.append(str(col))
            if _is_categorical(s):
                self.categories_[str(col)] = sorted(_as_text(s).dropna().unique().tolist())
            else:
                self.numeric_.append(str(col))
        if not self.features_:
            raise ValueError("no feature columns left after exclusions")
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return the typed feature frame (same index; input not modified).

        Raises
        ------
        ValueError
            A feature column of the fit is missing.
        """
        missing = [c for c in self.features_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature column(s) missing at transform: {missing}")
        out: dict[str, Any] = {}
        for col in self.features_:
            s = X[col]
            if col in self.categories_:
                codes, texts = text_codes(s)
                cat = categorical_from_text(codes, texts, self.categories_[col])
                unseen = int(((codes >= 0) & (cat.codes < 0)).sum())
                if unseen:
                    logger.debug("%r: %d value(s) of categories unseen at fit set to missing", col, unseen)
                out[col] = cat
            else:
                if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                    v = s.astype(np.float64)
                else:
                    v = pd.to_numeric(s, errors="coerce").astype(np.float64)
                    bad = int((s.notna() & v.isna()).sum())
                    if bad:
                        logger.warning("%r: %d non-numeric value(s) set to missing", col, bad)
                out[col] = v.to_numpy()
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The model input columns."""
        return np.asarray(self.features_, dtype=object)


def make_lgbm_pipeline(
    *,
    n_estimators: int = 200,
    learning_rate: float = 0.05,
    num_leaves: int = 31,
    min_child_samples: int = 20,
    subsample: float = 1.0,
    colsample_bytree: float = 1.0,
    reg_lambda: float = 0.0,
    n_jobs: int = 2,
    random_state: int = 0,
    exclude: Iterable[str] = (),
) -> Pipeline:
    """``prepare`` (:class:`FramePreparer`) → ``model`` (``lightgbm.LGBMClassifier``), unfitted.

    Categorical features reach LightGBM as pandas ``category`` columns (native categorical
    splits); ``subsample < 1`` turns on bagging at every iteration.
    """
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_samples=min_child_samples,
        subsample=subsample,
        subsample_freq=1 if subsample < 1 else 0,
        colsample_bytree=colsample_bytree,
        reg_lambda=reg_lambda,
        n_jobs=n_jobs,
        random_state=random_state,
        verbose=-1,
    )
    return Pipeline([("prepare", FramePreparer(exclude=tuple(exclude))), ("model", model)])


def model_params(cfg: Any) -> dict[str, Any]:
    """The :class:`CalibratedModel` parameters found on a ``ChurnConfig``/``LeadsConfig``."""
    return {f: getattr(cfg, f) for f in _MODEL_FIELDS if hasattr(cfg, f)}


class CalibratedModel(ClassifierMixin, BaseEstimator):
    """LightGBM pipeline plus a probability calibrator fitted on a later window.

    ``fit(X, y)`` with a ``time_column`` (default ``"cutoff"``) holding at least two cutoffs
    trains the pipeline on the earlier cutoffs and the calibrator on the latest one. With one
    cutoff or no dates, the calibration rows are a stratified share (``calibration_fraction``)
    of the records, split by record id (``X.index``), stated in ``calibration_split_``.
    ``fit(X, y, X_calib=..., y_calib=...)`` takes an explicit calibration window.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, \
reg_lambda, n_jobs, random_state
        LightGBM parameters (see :func:`make_lgbm_pipeline`).
    exclude_features : tuple of str
        Columns never used as features (the time column always is excluded).
    calibration : {"sigmoid", "isotonic"}
        Platt scaling of the raw log-odds, or isotonic regression (probabilities clipped to
        ``[1e-6, 1 - 1e-6]``).
    calibration_fraction : float
        Share of records for calibration when there are no later cutoff rows.
    min_rows, min_positives, min_calibration_positives : int
        Gates (:class:`TooFewPositivesError`).
    max_single_feature_auc : float
        Leakage canary (:class:`LeakageError`) on the training rows.
    max_train_rows : int or None
        Above this many training rows, LightGBM is fitted on a seeded sample of this size,
        stratified by label (None: all rows). Calibration and evaluation always use every
        row. Past a few hundred thousand rows more rows barely move the fit, and the cost is
        linear in them.
    time_column : str or None
        Column of ``X`` with each row's cutoff.
    label_horizon_days : int or None
        Label window length after a cutoff, for the overlap gate between training and
        calibration rows (None: any shared record id is refused).

    Attributes
    ----------
    pipeline_ : Pipeline
        Fitted ``prepare -> model`` pipeline.
    calibrator_ : tuple or IsotonicRegression
        ``("sigmoid", slope, intercept)`` or the fitted isotonic regression.
    calibration_split_ : str
        How the calibration rows were chosen.
    train_cutoffs_, calibration_cutoffs_ : list of Timestamp
        Cutoffs of each part (empty without dates).
    single_feature_auc_ : Series
        The leakage canary's per-feature AUC on the training rows.
    n_train_, n_calibration_ : int
        Rows in each part (training: the rows LightGBM was fitted on).
    n_train_available_ : int
        Training rows before the ``max_train_rows`` sample.
    classes_ : numpy.ndarray
        ``[False, True]``.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 0.0,
        n_jobs: int = 2,
        random_state: int = 0,
        exclude_features: tuple[str, ...] = (),
        calibration: Literal["sigmoid", "isotonic"] = "sigmoid",
        calibration_fraction: float = 0.3,
        min_rows: int = 1000,
        min_positives: int = 100,
        min_calibration_positives: int = 20,
        max_single_feature_auc: float = 0.98,
        max_train_rows: int | None = 300_000,
        time_column: str | None = "cutoff",
        label_horizon_days: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.exclude_features = exclude_features
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.min_rows = min_rows
        self.min_positives = min_positives
        self.min_calibration_positives = min_calibration_positives
        self.max_single_feature_auc = max_single_feature_auc
        self.max_train_rows = max_train_rows
        self.time_column = time_column
        self.label_horizon_days = label_horizon_days

    # -- fitting -------------------------------------------------------------------------

    def _exclusions(self) -> tuple[str, ...]:
        extra = (self.time_column,) if self.time_column else ()
        return (*tuple(self.exclude_features), *extra)

    def _cutoffs(self, X: pd.DataFrame) -> pd.Series | None:
        if self.time_column and self.time_column in X.columns:
            return pd.to_datetime(X[self.time_column], utc=True)
        return None

    def _split(self, X: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """Positions of training and calibration rows, and the description."""
        cut = self._cutoffs(X)
        if cut is not None and cut.nunique() >= 2:
            last = cut.max()
            cal = (cut == last).to_numpy()
            desc = (
                f"later window: calibrated on cutoff {last.date()}, trained on "
                f"{', '.join(str(c.date()) for c in sorted(cut[~cal].unique()))}"
            )
            check_no_overlap(
                X.index[~cal],
                X.index[cal],
                train_cutoffs=cut[~cal],
                eval_cutoffs=cut[cal],
                horizon_days=self.label_horizon_days,
                what="calibration",
            )
            return np.flatnonzero(~cal), np.flatnonzero(cal), desc
        ids = np.asarray(X.index, dtype=object)
        pos = np.arange(len(X))
        frac = self.calibration_fraction
        if pd.Index(ids).is_unique:
            tr, ca = train_test_split(pos, test_size=frac, stratify=y, random_state=self.random_state)
        else:
            n_splits = max(2, round(1.0 / frac))
            sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
            tr, ca = next(sgkf.split(pos, y, groups=ids))
        why = "no dates" if cut is None else "a single cutoff"
        desc = f"stratified split ({why}): {len(ca)} of {len(pos)} records held out for calibration"
        logger.warning("calibration: %s; not a later time window", desc)
        return np.sort(tr), np.sort(ca), desc

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        *,
        X_calib: pd.DataFrame | None = None,
        y_calib: Any = None,
    ) -> CalibratedModel:
        """Fit the pipeline on the earlier rows and the calibrator on the later ones.

        Parameters
        ----------
        X : DataFrame
            Features (index: record id), optionally with ``time_column``. Not modified.
        y : array-like
            Binary labels.
        X_calib, y_calib : DataFrame and array-like, optional
            An explicit later calibration window (then all of ``X`` is training data).

        Returns
        -------
        CalibratedModel
            self.

        Raises
        ------
        TooFewPositivesError, LeakageError, WindowOverlapError
            The gates (see the module docstring).
        """
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ValueError(f"calibration must be 'sigmoid' or 'isotonic', got {self.calibration!r}")
        y_arr = np.asarray(y).astype(bool)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y_arr)}")
        if X_calib is not None:
            if y_calib is None:
                raise ValueError("y_calib is required with X_calib")
            X_tr, y_tr = X, y_arr
            X_ca, y_ca = X_calib, np.asarray(y_calib).astype(bool)
            c_tr, c_ca = self._cutoffs(X_tr), self._cutoffs(X_ca)
            check_no_overlap(
                X_tr.index,
                X_ca.index,
                train_cutoffs=c_tr,
                eval_cutoffs=c_ca,
                horizon_days=self.label_horizon_days,
                what="calibration",
            )
            self.calibration_split_ = "explicit calibration window"
        else:
            check_class_counts(y_arr, min_rows=1, min_positives=1, what="training")
            tr, ca, self.calibration_split_ = self._split(X, y_arr)
            X_tr, y_tr, X_ca, y_ca = X.iloc[tr], y_arr[tr], X.iloc[ca], y_arr[ca]
        check_class_counts(y_tr, min_rows=self.min_rows, min_positives=self.min_positives, what="training")
        check_class_counts(y_ca, min_rows=1, min_positives=self.min_calibration_positives, what="calibration")
        self.n_train_available_ = len(X_tr)
        keep = self._training_sample(y_tr)
        if keep is not None:
            X_tr, y_tr = X_tr.iloc[keep], y_tr[keep]

        pipe = make_lgbm_pipeline(
            **{f: getattr(self, f) for f in _LGBM_FIELDS},
            exclude=self._exclusions(),
        )
        prep = pipe.named_steps["prepare"].fit(X_tr)
        Xt = prep.transform(X_tr)
        self.single_feature_auc_ = single_feature_auc(Xt, y_tr, random_state=self.random_state)
        check_single_feature_leakage(self.single_feature_auc_, self.max_single_feature_auc)
        pipe.named_steps["model"].fit(Xt, y_tr)
        self.pipeline_ = pipe

        raw = self._raw(X_ca)
        if self.calibration == "sigmoid":
            slope, intercept = fit_logistic_1d(raw, y_ca)
            self.calibrator_: Any = ("sigmoid", slope, intercept)
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
            self.calibrator_ = iso.fit(raw, y_ca.astype(np.float64))
        c_tr, c_ca = self._cutoffs(X_tr), self._cutoffs(X_ca)
        self.train_cutoffs_ = sorted(c_tr.unique()) if c_tr is not None else []
        self.calibration_cutoffs_ = sorted(c_ca.unique()) if c_ca is not None else []
        self.n_train_, self.n_calibration_ = len(X_tr), len(X_ca)
        self.base_rate_ = float(y_tr.mean())
        self.classes_ = np.array([False, True])
        self.feature_names_in_ = prep.feature_names_in_
        self.n_features_in_ = len(self.feature_names_in_)
        logger.info(
            "%s fitted on %d rows (%d features), calibrated (%s) on %d rows: %s",
            type(self).__name__,
            self.n_train_,
            len(prep.features_),
            self.calibration,
            self.n_calibration_,
            self.calibration_split_,
        )
        return self

    def _training_sample(self, y: np.ndarray) -> np.ndarray | None:
        """Sorted positions of a seeded, label-stratified sample of ``max_train_rows`` rows.

        None when every row is used (``max_train_rows`` unset or not exceeded).
        """
        cap = self.max_train_rows
        if cap is None or len(y) <= cap:
            return None
        if cap < 2:
            raise ValueError(f"max_train_rows must be at least 2, got {cap}")
        pos = np.arange(len(y))
        keep, _ = train_test_split(pos, train_size=cap, stratify=y, random_state=self.random_state)
        logger.info("training on a seeded stratified sample of %d of %d rows (max_train_rows)", cap, len(y))
        return np.sort(keep)

    # -- prediction ----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "pipeline_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        Xt = self.pipeline_.named_steps["prepare"].transform(X)
        return np.asarray(self.pipeline_.named_steps["model"].predict(Xt, raw_score=True), dtype=np.float64)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """LightGBM's raw score (log-odds, uncalibrated): what the contributions add up to."""
        self._check_fitted()
        return self._raw(X)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Alias of :meth:`raw_score` (scikit-learn name)."""
        return self.raw_score(X)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        cal = self.calibrator_
        if isinstance(cal, tuple):
            _, slope, intercept = cal
            p = 1.0 / (1.0 + np.exp(-(slope * raw + intercept)))
        else:
            p = cal.predict(raw)
        return np.clip(p, _CAL_EPS, 1.0 - _CAL_EPS)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)`` (columns: negative, positive)."""
        self._check_fitted()
        p = self._calibrate(self._raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``True`` where the calibrated probability is at least 0.5."""
        return self.predict_proba(X)[:, 1] >= 0.5

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, descending."""
        self._check_fitted()
        model = self.pipeline_.named_steps["model"]
        names = self.pipeline_.named_steps["prepare"].features_
        gain = model.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=names, dtype=np.float64).sort_values(ascending=False)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Exact per-row contributions (log-odds) plus ``expected_value``; rows sum to :meth:`raw_score`.

        About 1 ms per row at 200 trees x 31 leaves: call it on the rows to act on only
        (see :mod:`crmscore.estimators.reasons`).
        """
        self._check_fitted()
        return _reasons.feature_contributions(self.pipeline_, X)

    def reasons(self, X: pd.DataFrame, n: int = 5, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Top ``n`` positive and negative reasons of every row of ``X`` (select rows first)."""
        self._check_fitted()
        return _reasons.top_reasons(self.pipeline_, X, n=n, labels=labels)


# ------------------------------------------------------------------------------------------
# churn specifics
# ------------------------------------------------------------------------------------------


def risk_band(probability: Any, thresholds: Mapping[str, float]) -> np.ndarray:
    """Churn risk band per probability: ``high`` if ``p >= thresholds["high"]``, ``medium`` if
    ``p >= thresholds["medium"]``, else ``low``.

    Raises
    ------
    ValueError
        Thresholds missing, outside [0, 1] or with ``medium > high``.
    """
    try:
        high, medium = float(thresholds["high"]), float(thresholds["medium"])
    except KeyError as exc:
        raise ValueError(f"risk thresholds need 'high' and 'medium', got {dict(thresholds)}") from exc
    if not 0.0 <= medium <= high <= 1.0:
        raise ValueError(f"risk thresholds must satisfy 0 <= medium <= high <= 1, got {dict(thresholds)}")
    p = np.asarray(probability, dtype=np.float64)
    return np.where(p >= high, "high", np.where(p >= medium, "medium", "low")).astype(object)


class CalibratedChurnModel(CalibratedModel):
    """Churn probability (calibrated on a later window), risk band and reasons.

    Parameters are those of :class:`CalibratedModel` plus:

    risk_thresholds : dict
        ``{"high": ..., "medium": ...}`` on the calibrated probability (:func:`risk_band`).
    n_reasons : int
        Reasons per direction in :meth:`predict_frame`.
    explain_bands : tuple of str
        Risk bands whose rows get reasons in :meth:`predict_frame`.
    explain_top_n : int or None
        Also explain the top N rows by probability.

    Build it from the ``churn`` block with :meth:`from_config`.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 0.0,
        n_jobs: int = 2,
        random_state: int = 0,
        exclude_features: tuple[str, ...] = ("rfm_score",),
        calibration: Literal["sigmoid", "isotonic"] = "sigmoid",
        calibration_fraction: float = 0.3,
        min_rows: int = 1000,
        min_positives: int = 100,
        min_calibration_positives: int = 20,
        max_single_feature_auc: float = 0.98,
        max_train_rows: int | None = 300_000,
        time_column: str | None = "cutoff",
        label_horizon_days: int | None = None,
        risk_thresholds: Mapping[str, float] | None = None,
        n_reasons: int = 5,
        explain_bands: tuple[str, ...] = ("high", "medium"),
        explain_top_n: int | None = None,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
            reg_lambda=reg_lambda,
            n_jobs=n_jobs,
            random_state=random_state,
            exclude_features=exclude_features,
            calibration=calibration,
            calibration_fraction=calibration_fraction,
            min_rows=min_rows,
            min_positives=min_positives,
            min_calibration_positives=min_calibration_positives,
            max_single_feature_auc=max_single_feature_auc,
            max_train_rows=max_train_rows,
            time_column=time_column,
            label_horizon_days=label_horizon_days,
        )
        self.risk_thresholds = risk_thresholds
        self.n_reasons = n_reasons
        self.explain_bands = explain_bands
        self.explain_top_n = explain_top_n

    @classmethod
    def from_config(cls, cfg: ChurnConfig, **overrides: Any) -> CalibratedChurnModel:
        """Build from the ``churn`` config block (``overrides`` win).

        The overlap gate's label horizon is ``horizon_days`` for the dated definitions and
        None (any shared customer refused) for ``definition="label"``.
        """
        params = model_params(cfg)
        params["label_horizon_days"] = None if cfg.definition == "label" else cfg.horizon_days
        for f in ("risk_thresholds", "n_reasons", "explain_bands", "explain_top_n"):
            if hasattr(cfg, f):
                params[f] = getattr(cfg, f)
        params["risk_thresholds"] = dict(params.get("risk_thresholds") or {"high": 0.5, "medium": 0.25})
        params.update(overrides)
        return cls(**params)

    def _thresholds(self) -> Mapping[str, float]:
        return self.risk_thresholds or {"high": 0.5, "medium": 0.25}

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Risk band (``high``/``medium``/``low``) of each row from the calibrated probability."""
        return risk_band(self.predict_proba(X)[:, 1], self._thresholds())

    def predict_frame(self, X: pd.DataFrame, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Scores ready for ``customer_scores``: probability, band and reasons where worth it.

        Reasons (exact contributions, about 1 ms per row at 200 trees x 31 leaves) are computed
        only for rows in ``explain_bands`` or the top ``explain_top_n``; other rows get None.

        Returns
        -------
        DataFrame
            Index ``X.index``; ``churn_probability``, ``churn_risk``, ``top_reasons`` (JSON).
        """
        p = self.predict_proba(X)[:, 1]
        band = risk_band(p, self._thresholds())
        mask = _reasons.rows_to_explain(
            p, groups=band, explain_groups=self.explain_bands, top_n=self.explain_top_n
        )
        top: list[str | None] = [None] * len(X)
        if mask.any():
            sel = X.iloc[np.flatnonzero(mask)]
            long = self.reasons(sel, n=self.n_reasons, labels=labels)
            for pos, js in zip(np.flatnonzero(mask), _reasons.reasons_json(long, len(sel)), strict=True):
                top[pos] = js
        logger.info("reasons computed for %d of %d rows", int(mask.sum()), len(X))
        return pd.DataFrame({"churn_probability": p, "churn_risk": band, "top_reasons": top}, index=X.index)


def bgnbd_probability_no_purchase(
    params: Mapping[str, float], frequency: Any, recency: Any, T: Any, horizon: float
) -> np.ndarray:
    """P(no purchase in ``(T, T + horizon]`` | x, t_x, T) under BG/NBD.

    ``1 - P(alive | x, t_x, T) * (1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x))``: a
    customer alive at ``T`` has posterior rate ``lambda ~ Gamma(r + x, alpha + T)`` and buys
    nothing in ``horizon`` with probability ``E[exp(-lambda horizon)]``; a dead one never buys
    (Fader, Hardie & Lee 2005, eq. 10 and note 021 eq. 2). ``horizon`` is in the unit of ``T``.
    This is the exact inactivity-churn probability when the data follow BG/NBD with
    ``params``.
    """
    from crmscore.estimators.clv.model import bgnbd_probability_alive

    r, alpha = float(params["r"]), float(params["alpha"])
    x = np.asarray(frequency, dtype=np.float64)
    T_arr = np.asarray(T, dtype=np.float64)
    alive = bgnbd_probability_alive(params, x, recency, T_arr)
    buy_if_alive = -np.expm1((r + x) * (np.log(alpha + T_arr) - np.log(alpha + T_arr + horizon)))
    return 1.0 - alive * buy_if_alive


def snapshot_churn_set(customers: pd.DataFrame, cfg: ChurnConfig) -> pd.DataFrame:
    """Feature rows and labels from a snapshot export (customer attributes + a label column).

    There are no dates: every customer with a non-missing ``cfg.label_column`` is a row; the
    features are the attribute columns (``crmscore.features.behaviour.attribute_features``
    without ``tenure_days``: ``created_at`` is ignored, as there is no cutoff to measure it
    against). Evaluation of such data is a stratified holdout, not out of time.

    Returns
    -------
    DataFrame
        Index ``customer_id``; attribute features and the boolean ``churn`` label.
    """
    from crmscore.features.behaviour import attribute_features

    col = cfg.label_column
    if col not in customers:
        raise ValueError(f"churn.label_column {col!r} is not a column of customers")
    rows = customers[customers[col].notna()].drop_duplicates("customer_id", keep="first")
    ids = pd.Index(rows["customer_id"].astype("str").to_numpy(), name="customer_id")
    attrs = rows.drop(columns=[c for c in ("created_at",) if c in rows])
    feats = attribute_features(attrs, ids, "1970-01-01", exclude=(col,))
    label = pd.Series(rows[col].astype(bool).to_numpy(), index=ids, name="churn")
    return feats.join(label)


# ------------------------------------------------------------------------------------------
# out-of-time evaluation
# ------------------------------------------------------------------------------------------

#: A baseline: ``f(train_frame, eval_frame) -> scores of eval_frame`` (higher = more positive).
Baseline = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


def out_of_time_split(
    frame: pd.DataFrame,
    label: str,
    *,
    time_column: str = "cutoff",
    horizon_days: int | None = None,
    holdout_fraction: float = 0.25,
    random_state: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Training rows (earlier cutoffs) and evaluation rows (the latest labelled cutoff).

    Without a time column (or with a single cutoff), a stratified holdout of records
    (``holdout_fraction``, split by record id) — stated as such in the returned description.

    Raises
    ------
    WindowOverlapError
        A record is in both parts with overlapping label periods.
    """
    if label not in frame:
        raise ValueError(f"label column {label!r} not in the frame")
    has_time = time_column in frame.columns and frame[time_column].nunique() >= 2
    if has_time:
        cut = pd.to_datetime(frame[time_column], utc=True)
        last = cut.max()
        ev = (cut == last).to_numpy()
        train, evaluation = frame[~ev], frame[ev]
        check_no_overlap(
            train.index,
            evaluation.index,
            train_cutoffs=cut[~ev],
            eval_cutoffs=cut[ev],
            horizon_days=horizon_days,
        )
        if horizon_days is not None:
            late = int((cut[~ev] + pd.Timedelta(days=horizon_days) > last).sum())
            if late:
                logger.warning(
                    "%d training row(s) have label windows ending after the evaluation cutoff %s "
                    "(outcomes not yet known then): space cutoffs at least %d days apart",
                    late,
                    last.date(),
                    horizon_days,
                )
        cutoffs = ", ".join(str(c.date()) for c in sorted(cut[~ev].unique()))
        desc = f"out-of-time: trained on cutoffs {cutoffs}; evaluated on cutoff {last.date()}"
        return train, evaluation, desc
    y = frame[label].astype(bool).to_numpy()
    ids = np.asarray(frame.index, dtype=object)
    pos = np.arange(len(frame))
    if pd.Index(ids).is_unique:
        tr, ev_pos = train_test_split(pos, test_size=holdout_fraction, stratify=y, random_state=random_state)
    else:
        n_splits = max(2, round(1.0 / holdout_fraction))
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        tr, ev_pos = next(sgkf.split(pos, y, groups=ids))
    tr, ev_pos = np.sort(tr), np.sort(ev_pos)
    why = "no dates" if time_column not in frame.columns else "a single cutoff"
    desc = (
        f"stratified holdout ({why}): {len(ev_pos)} of {len(frame)} records held out, stratified by "
        "label; NOT an out-of-time test"
    )
    logger.warning("evaluation: %s", desc)
    return frame.iloc[tr], frame.iloc[ev_pos], desc


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _to_text(X: Any) -> Any:
    return pd.DataFrame(X).astype(object).where(pd.DataFrame(X).notna(), "missing").astype(str)


def logistic_baseline(columns: Iterable[str] | None = None, *, label: str) -> Baseline:
    """Logistic regression on ``columns`` (None: every feature column) as a baseline.

    Numeric columns: median imputation with missing indicators, signed ``log1p``,
    standardisation; other columns: one-hot (unseen ignored). Fitted on the training frame.
    """

    def run(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
        cols = list(columns) if columns is not None else [c for c in train.columns if c != label]
        cols = [c for c in cols if not pd.api.types.is_datetime64_any_dtype(train[c])]
        num = [c for c in cols if not _is_categorical(train[c])]
        cat = [c for c in cols if _is_categorical(train[c])]
        steps = []
        if num:
            steps.append(
                (
                    "num",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                            ("log", FunctionTransformer(_signed_log)),
                            ("scale", StandardScaler()),
                        ]
                    ),
                    num,
                )
            )
        if cat:
            steps.append(
                (
                    "cat",
                    Pipeline(
                        [
                            ("text", FunctionTransformer(_to_text)),
                            ("onehot", OneHotEncoder(handle_unknown="ignore")),
                        ]
                    ),
                    cat,
                )
            )
        model = Pipeline([("columns", ColumnTransformer(steps)), ("lr", LogisticRegression(max_iter=2000))])
        model.fit(train[cols], train[label].astype(bool).to_numpy())
        return model.predict_proba(evaluation[cols])[:, 1]

    return run


def clv_baselines(
    *, time_unit: str = "week", horizon_days: int | None = None, penalizer: float = 0.0
) -> dict[str, Baseline]:
    """BG/NBD baselines from the BTYD summary columns (``frequency``, ``recency``, ``T``).

    ``"1 - P(alive) (BG/NBD)"`` and, with ``horizon_days`` (inactivity churn),
    ``"P(no purchase in H) (BG/NBD)"`` (:func:`bgnbd_probability_no_purchase`). The BG/NBD
    model is fitted on the evaluation cutoff's summaries (no labels used; it is what scoring
    at that cutoff would do). Rows without a purchase get the median score.
    """
    from crmscore.core.time import DAYS_PER_UNIT
    from crmscore.estimators.clv.model import ClvModel

    cache: dict[int, Any] = {}

    def fitted(evaluation: pd.DataFrame) -> tuple[Any, np.ndarray]:
        key = id(evaluation)
        if key not in cache:
            s = evaluation[["frequency", "recency", "T", "monetary_value"]].astype(np.float64)
            ok = s[["frequency", "recency", "T"]].notna().all(axis=1).to_numpy()
            summ = s[ok].fillna({"monetary_value": 0.0})
            model = ClvModel(time_unit=time_unit, penalizer=penalizer).fit(summ)  # type: ignore[arg-type]
            cache.clear()
            cache[key] = (model, ok)
        return cache[key]

    def fill(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        out = np.full(len(ok), np.nan)
        out[ok] = values
        out[~ok] = np.nanmedian(values) if ok.any() else 0.5
        return out

    def one_minus_alive(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
        model, ok = fitted(evaluation)
        s = evaluation[ok]
        return fill(1.0 - model.conditional_probability_alive(s["frequency"], s["recency"], s["T"]), ok)

    out: dict[str, Baseline] = {"1 - P(alive) (BG/NBD)": one_minus_alive}
    if horizon_days is not None:
        h = horizon_days / DAYS_PER_UNIT[time_unit]

        def no_purchase(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
            model, ok = fitted(evaluation)
            s = evaluation[ok]
            p = bgnbd_probability_no_purchase(model.bgnbd_params_, s["frequency"], s["recency"], s["T"], h)
            return fill(p, ok)

        out[f"P(no purchase in {horizon_days}d) (BG/NBD)"] = no_purchase
    return out


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_out_of_time`.

    Attributes
    ----------
    split : str
        How training and evaluation rows were separated (out of time, or a stated holdout).
    metrics : DataFrame
        One row per score (the model first, then the baselines): ``roc_auc``, ``pr_auc``,
        ``brier``, ``ece``, ``calibration_slope``, ``lift_top_decile``, ``capture_top_decile``…
    gains : dict of str to DataFrame
        Gains table by decile per score.
    predictions : DataFrame
        Evaluation rows: the label and every score.
    model : CalibratedModel
        The model fitted on the training rows.
    label : str
        Label column.
    """

    split: str
    metrics: pd.DataFrame
    gains: dict[str, pd.DataFrame]
    predictions: pd.DataFrame
    model: CalibratedModel
    label: str
    baseline_errors: dict[str, str] = field(default_factory=dict)

    def scores(self) -> dict[str, np.ndarray]:
        """Score arrays by name (model first)."""
        return {c: self.predictions[c].to_numpy() for c in self.predictions.columns if c != self.label}

    def figures(self) -> dict[str, Figure]:
        """ROC, precision-recall, calibration and gains figures (new Figures, nothing shown)."""
        from crmscore.evaluation.binary import plot_calibration, plot_gains, plot_pr, plot_roc

        y = self.predictions[self.label].to_numpy()
        s = self.scores()
        model_only = {k: v for k, v in s.items() if k == self.metrics.index[0]}
        return {
            "roc": plot_roc(y, s),
            "pr": plot_pr(y, s),
            "calibration": plot_calibration(
                y, {**model_only, **{k: v for k, v in s.items() if "logistic" in k}}
            ),
            "gains": plot_gains(y, s),
        }


def evaluate_out_of_time(
    frame: pd.DataFrame,
    label: str,
    model: CalibratedModel,
    *,
    baselines: Mapping[str, Baseline] | None = None,
    time_column: str = "cutoff",
    horizon_days: int | None = None,
    holdout_fraction: float = 0.25,
    max_eval_auc: float = 0.98,
    model_name: str = "LightGBM (calibrated)",
    random_state: int = 0,
) -> EvaluationReport:
    """Fit ``model`` on the earlier cutoffs and evaluate it on the latest, beside baselines.

    Parameters
    ----------
    frame : DataFrame
        Stacked training set (index: record id) with ``time_column``, ``label`` and features
        (e.g. ``crmscore.pipelines.features.build_churn_training_set``). Not modified.
    label : str
        Boolean label column.
    model : CalibratedModel
        Unfitted template (cloned).
    baselines : mapping of str to callable, optional
        ``f(train, eval) -> scores`` (see :func:`logistic_baseline`, :func:`clv_baselines`).
        A baseline that fails is left out and its error recorded in ``baseline_errors``.
    time_column, horizon_days, holdout_fraction, random_state
        See :func:`out_of_time_split`.
    max_eval_auc : float
        Leakage canary: a higher evaluation AUC raises :class:`LeakageError`.
    model_name : str
        Row name of the model in the metrics.

    Returns
    -------
    EvaluationReport
    """
    train, evaluation, desc = out_of_time_split(
        frame,
        label,
        time_column=time_column,
        horizon_days=horizon_days,
        holdout_fraction=holdout_fraction,
        random_state=random_state,
    )
    est = clone(model)
    X_tr = train.drop(columns=[label])
    est.fit(X_tr, train[label].to_numpy())
    y_ev = evaluation[label].astype(bool).to_numpy()
    scores: dict[str, np.ndarray] = {model_name: est.predict_proba(evaluation.drop(columns=[label]))[:, 1]}
    errors: dict[str, str] = {}
    for name, fn in (baselines or {}).items():
        try:
            scores[name] = np.asarray(fn(train, evaluation), dtype=np.float64)
        except Exception as exc:  # a broken baseline must not hide the result
            logger.warning("baseline %r failed and is left out: %s", name, exc)
            errors[name] = f"{type(exc).__name__}: {exc}"
    table = metrics_table(y_ev, scores)
    auc = float(table.loc[model_name, "roc_auc"])
    if auc > max_eval_auc:
        imp = est.feature_importance().head(5)
        prep = est.pipeline_.named_steps["prepare"]
        single = single_feature_auc(prep.transform(evaluation.drop(columns=[label])), y_ev)
        listing = ", ".join(
            f"{f!r} (gain share {g / imp.sum():.2f}, alone AUC {single.get(f, np.nan):.3f})"
            for f, g in imp.items()
        )
        raise LeakageError(
            f"evaluation ROC AUC {auc:.4f} exceeds max_eval_auc={max_eval_auc}: too good to be true, "
            f"check these features for leakage: {listing}"
        )
    preds = pd.DataFrame({label: y_ev, **scores}, index=evaluation.index)
    gains = {name: gains_table(y_ev, s) for name, s in scores.items()}
    logger.info("evaluation (%s): %s ROC AUC %.4f", desc, model_name, auc)
    return EvaluationReport(
        split=desc,
        metrics=table,
        gains=gains,
        predictions=preds,
        model=est,
        label=label,
        baseline_errors=errors,
    )


_RFM_COLUMNS: tuple[str, ...] = ("recency_days", "n_purchases", "spend_total")


def evaluate_churn(
    frame: pd.DataFrame,
    cfg: ChurnConfig,
    *,
    time_unit: str = "week",
    label: str = "churn",
    time_column: str = "cutoff",
    **overrides: Any,
) -> EvaluationReport:
    """Out-of-time evaluation of the churn model of ``cfg`` beside its baselines.

    Baselines: logistic regression on the RFM features (``recency_days``, ``n_purchases``,
    ``spend_total``; on all attributes when the data have no transactions) and, when the BTYD
    summary is present, ``1 - P(alive)`` of a BG/NBD model (plus ``P(no purchase in H)`` for
    inactivity churn). ``overrides`` are passed to :meth:`CalibratedChurnModel.from_config`.
    """
    model = CalibratedChurnModel.from_config(cfg, time_column=time_column, **overrides)
    rfm = [c for c in _RFM_COLUMNS if c in frame.columns]
    baselines: dict[str, Baseline] = {}
    if rfm:
        baselines["logistic regression (RFM)"] = logistic_baseline(rfm, label=label)
    else:
        feats = [c for c in frame.columns if c not in (label, time_column, *cfg.exclude_features)]
        baselines["logistic regression (all attributes)"] = logistic_baseline(feats, label=label)
    if {"frequency", "recency", "T", "monetary_value"} <= set(frame.columns):
        horizon = cfg.horizon_days if cfg.definition == "inactivity" else None
        baselines.update(clv_baselines(time_unit=time_unit, horizon_days=horizon))
    return evaluate_out_of_time(
        frame,
        label,
        model,
        baselines=baselines,
        time_column=time_column,
        horizon_days=None if cfg.definition == "label" else cfg.horizon_days,
        holdout_fraction=cfg.holdout_fraction,
        max_eval_auc=cfg.max_eval_auc,
        random_state=cfg.random_state,
    )
