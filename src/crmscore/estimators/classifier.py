"""The calibrated LightGBM classifier shared by every classifier kind (churn, leads).

Model
-----
``make_lgbm_pipeline(params)`` builds ``Pipeline([("prepare", FramePreparer), ("model",
LGBMClassifier)])``. :class:`FramePreparer` learns at fit which columns are numeric and which
are categorical (pandas ``category``, text or object columns) and the categories of each;
at transform categorical columns become ``category`` dtype with exactly those categories, so
LightGBM uses them natively and a category never seen in training becomes missing.

Calibration on a later window
-----------------------------
:class:`CalibratedModel` fits the pipeline on the rows of the earlier cutoffs and a Platt
(``"sigmoid"``, logistic on the raw log-odds) or isotonic :class:`Calibrator` on the rows of
the latest cutoff of its training data (:func:`crmscore.core.time.latest_cutoff_mask`):
the calibrator never sees a training row and learns how the scores of a *later* period map to
outcomes (drift included). Data without dates (snapshot exports with a label column, or a
single cutoff) fall back to a stratified split of the records (``calibration_fraction``),
stated in ``calibration_split_`` and logged.

One prediction path
-------------------
The fitted state is three plain parts: ``preparer_`` (feature list and categories),
``booster_`` (a ``lightgbm.Booster``) and ``calibrator_`` (:class:`Calibrator`, a few numbers).
A model bundle (:mod:`crmscore.estimators.bundles`) stores exactly these and loads them back
into the same estimator class, so training-time predictions, the registered MLflow pyfunc and
production scoring all run :meth:`CalibratedModel.predict_frame`. A kind's *head* (a subclass:
:class:`crmscore.estimators.churn.CalibratedChurnModel`,
:class:`crmscore.estimators.leads.LeadScoringModel`) only turns the calibrated probability into
its output columns (``OUTPUTS``, :meth:`CalibratedModel.head`) with its ``thresholds``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils import Tags
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from crmscore.core.time import latest_cutoff_mask
from crmscore.estimators import reasons as _reasons
from crmscore.estimators.gates import (
    NotFittedModelError,
    check_class_counts,
    check_no_overlap,
    check_single_feature_leakage,
)
from crmscore.estimators.preparer import FramePreparer
from crmscore.evaluation.binary import fit_logistic_1d, single_feature_auc

__all__ = [
    "CALIBRATION_EPS",
    "CLASSIFIER_PARAMS",
    "LGBM_PARAMS",
    "CalibratedModel",
    "Calibrator",
    "make_lgbm_pipeline",
    "model_params",
]

logger = logging.getLogger(__name__)

#: LightGBM hyperparameters of :func:`make_lgbm_pipeline` (and of the config blocks).
LGBM_PARAMS: tuple[str, ...] = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
    "n_jobs",
    "random_state",
)
#: Parameters shared by the classifier config blocks (``churn``, ``leads``) and :class:`CalibratedModel`.
CLASSIFIER_PARAMS: tuple[str, ...] = (
    *LGBM_PARAMS,
    "exclude_features",
    "calibration",
    "calibration_fraction",
    "min_rows",
    "min_positives",
    "min_calibration_positives",
    "max_single_feature_auc",
    "max_train_rows",
)
#: Calibrated probabilities are clipped to ``[CALIBRATION_EPS, 1 - CALIBRATION_EPS]``.
CALIBRATION_EPS = 1e-6


# ------------------------------------------------------------------------------------------
# preprocessing + LightGBM pipeline
# ------------------------------------------------------------------------------------------


def make_lgbm_pipeline(params: Mapping[str, Any], *, exclude: Iterable[str] = ()) -> Pipeline:
    """``prepare`` (:class:`FramePreparer`) → ``model`` (``lightgbm.LGBMClassifier``), unfitted.

    Parameters
    ----------
    params : mapping
        The LightGBM hyperparameters, exactly the keys of :data:`LGBM_PARAMS` (their defaults
        are :class:`CalibratedModel`'s: ``CalibratedModel().lgbm_params()``).
    exclude : iterable of str
        Columns the preparer never uses as features.

    Categorical features reach LightGBM as pandas ``category`` columns (native categorical
    splits); ``subsample < 1`` turns on bagging at every iteration.
    """
    from lightgbm import LGBMClassifier

    if set(params) != set(LGBM_PARAMS):
        raise ValueError(f"LightGBM parameters must be exactly {LGBM_PARAMS}, got {sorted(params)}")
    model = LGBMClassifier(**params, subsample_freq=1 if params["subsample"] < 1 else 0, verbose=-1)
    return Pipeline([("prepare", FramePreparer(exclude=tuple(exclude))), ("model", model)])


def model_params(cfg: Any) -> dict[str, Any]:
    """The :class:`CalibratedModel` parameters found on a classifier config block."""
    return {f: getattr(cfg, f) for f in CLASSIFIER_PARAMS if hasattr(cfg, f)}


def binary_labels(y: Any, owner: str = "CalibratedModel", name: str = "y") -> np.ndarray:
    """``y`` as a 1-d boolean array; only 0/1 or False/True labels are accepted.

    Raises
    ------
    ValueError
        ``y`` is None, not 1-d, contains NaN, or is continuous, multiclass or not 0/1.
    """
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    arr = column_or_1d(y, warn=True)  # a column vector warns (DataConversionWarning) and is raveled
    kind = type_of_target(arr, input_name=name)  # raises on NaN / inf
    if kind != "binary":
        raise ValueError(f"Only binary classification is supported. Unknown label type: {kind!r} for {name}")
    values = pd.unique(arr)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"{name} must hold 0/1 or False/True labels, got {sorted(map(str, values))}")
    return arr.astype(bool)


# ------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibrator:
    """Map LightGBM's raw score (log-odds) to a calibrated probability: plain numbers only.

    ``kind="sigmoid"``: Platt scaling ``p = 1 / (1 + exp(-(slope * raw + intercept)))``.
    ``kind="isotonic"``: the isotonic regression's step thresholds ``x`` → ``y``, linearly
    interpolated and clipped at the ends (scikit-learn's ``out_of_bounds="clip"``).
    Probabilities are clipped to ``[CALIBRATION_EPS, 1 - CALIBRATION_EPS]``.
    """

    kind: Literal["sigmoid", "isotonic"]
    slope: float = float("nan")
    intercept: float = float("nan")
    x: tuple[float, ...] = field(default=())
    y: tuple[float, ...] = field(default=())

    @classmethod
    def fit(cls, kind: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on raw scores ``raw`` and boolean outcomes ``y`` of a later window."""
        if kind == "sigmoid":
            slope, intercept = fit_logistic_1d(raw, y)
            return cls("sigmoid", slope=float(slope), intercept=float(intercept))
        if kind == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
            iso.fit(raw, np.asarray(y, dtype=np.float64))
            xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
            ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
            return cls("isotonic", x=tuple(xs.tolist()), y=tuple(ys.tolist()))
        raise ValueError(f"calibration must be 'sigmoid' or 'isotonic', got {kind!r}")

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of each raw score, shape ``(n,)``."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-(self.slope * raw + self.intercept)))
        else:
            x, y = np.asarray(self.x), np.asarray(self.y)
            p = np.interp(np.clip(raw, x[0], x[-1]), x, y)
        return np.clip(p, CALIBRATION_EPS, 1.0 - CALIBRATION_EPS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (the bundle's ``calibrator`` entry)."""
        if self.kind == "sigmoid":
            return {"kind": "sigmoid", "slope": self.slope, "intercept": self.intercept}
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`."""
        if d["kind"] == "sigmoid":
            return cls("sigmoid", slope=float(d["slope"]), intercept=float(d["intercept"]))
        if d["kind"] == "isotonic":
            return cls("isotonic", x=tuple(map(float, d["x"])), y=tuple(map(float, d["y"])))
        raise ValueError(f"unknown calibrator kind {d['kind']!r}")


# ------------------------------------------------------------------------------------------
# the estimator
# ------------------------------------------------------------------------------------------


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
        LightGBM parameters (:data:`LGBM_PARAMS`, see :func:`make_lgbm_pipeline`).
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
    thresholds : dict or None
        The head's thresholds on its output (risk bands, grades); None: the head's defaults
        (``DEFAULT_THRESHOLDS``).

    Attributes
    ----------
    preparer_ : FramePreparer
        Fitted feature preparer (feature list, kinds, categories).
    booster_ : lightgbm.Booster
        The fitted trees.
    calibrator_ : Calibrator
        Platt or isotonic calibration, fitted on the later window.
    pipeline_ : Pipeline
        The fitted ``prepare -> model`` pipeline (only on a model fitted in this process; a
        loaded bundle has ``preparer_`` and ``booster_`` alone).
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

    #: Output columns of :meth:`predict_frame` and their MLflow signature types.
    OUTPUTS: ClassVar[tuple[tuple[str, str], ...]] = (("probability", "double"),)
    #: Thresholds used when ``thresholds`` is None.
    DEFAULT_THRESHOLDS: ClassVar[Mapping[str, float]] = {}

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
        thresholds: Mapping[str, float] | None = None,
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
        self.thresholds = thresholds

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values go to LightGBM's missing-value splits
        tags.classifier_tags.multi_class = False  # binary 0/1 labels only
        return tags

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
            cal = latest_cutoff_mask(cut)
            last = cut.max()
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
        y_arr = binary_labels(y, type(self).__name__)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y_arr)}")
        if X_calib is not None:
            if y_calib is None:
                raise ValueError("y_calib is required with X_calib")
            X_tr, y_tr = X, y_arr
            X_ca, y_ca = X_calib, binary_labels(y_calib, type(self).__name__, "y_calib")
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

        pipe = make_lgbm_pipeline(self.lgbm_params(), exclude=self._exclusions())
        prep = pipe.named_steps["prepare"].fit(X_tr)
        Xt = prep.transform(X_tr)
        self.single_feature_auc_ = single_feature_auc(Xt, y_tr, random_state=self.random_state)
        check_single_feature_leakage(self.single_feature_auc_, self.max_single_feature_auc)
        pipe.named_steps["model"].fit(Xt, y_tr)
        self.pipeline_ = pipe
        self.preparer_ = prep
        self.booster_ = pipe.named_steps["model"].booster_
        self.calibrator_ = Calibrator.fit(self.calibration, self._raw(X_ca), y_ca)
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

    def lgbm_params(self) -> dict[str, Any]:
        """The LightGBM hyperparameters (:data:`LGBM_PARAMS`) of this estimator."""
        return {f: getattr(self, f) for f in LGBM_PARAMS}

    def _thresholds(self) -> Mapping[str, float]:
        return dict(self.thresholds) if self.thresholds else dict(self.DEFAULT_THRESHOLDS)

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedModelError(f"{type(self).__name__} is not fitted: call fit() first")

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        Xt = self.preparer_.transform(X)
        return np.asarray(self.booster_.predict(Xt, raw_score=True), dtype=np.float64)

    @property
    def features(self) -> list[str]:
        """Model input columns, in order."""
        self._check_fitted()
        return list(self.preparer_.features_)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """LightGBM's raw score (log-odds, uncalibrated): what the contributions add up to."""
        self._check_fitted()
        return self._raw(X)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Alias of :meth:`raw_score` (scikit-learn name)."""
        return self.raw_score(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)`` (columns: negative, positive)."""
        self._check_fitted()
        p = self.calibrator_.predict(self._raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``True`` where the calibrated probability is at least 0.5."""
        return self.predict_proba(X)[:, 1] >= 0.5

    def head(self, probability: np.ndarray) -> dict[str, Any]:
        """The kind's output columns from the calibrated probability (override in a head)."""
        return {"probability": probability}

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """The kind's outputs (:attr:`OUTPUTS`) of every row of ``X``, index ``X.index``.

        This is what training evaluates, the registered pyfunc returns and scoring writes.

        Raises
        ------
        ValueError
            A feature column is missing (named).
        """
        self._check_fitted()
        missing = [c for c in self.preparer_.features_ if c not in X.columns]
        if missing:
            raise ValueError(f"{type(self).__name__}: feature column(s) missing: {missing}")
        cols = self.head(self.predict_proba(X)[:, 1])
        return pd.DataFrame(cols, index=X.index, columns=[c for c, _ in self.OUTPUTS])

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, descending."""
        self._check_fitted()
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features, dtype=np.float64).sort_values(ascending=False)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Exact per-row contributions (log-odds) plus ``expected_value``; rows sum to :meth:`raw_score`.

        About 1 ms per row at 200 trees x 31 leaves: call it on the rows to act on only
        (see :mod:`crmscore.estimators.reasons`).
        """
        self._check_fitted()
        return _reasons.feature_contributions(self.preparer_, self.booster_, X)

    def reasons(self, X: pd.DataFrame, n: int = 5, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Top ``n`` positive and negative reasons of every row of ``X`` (select rows first)."""
        return _reasons.rank_contributions(self.contributions(X), X, n=n, labels=labels)

    def reasons_json(self, X: pd.DataFrame, n: int = 5) -> list[str | None]:
        """``top_reasons`` JSON text of every row of ``X``, in order (select rows first)."""
        if not len(X):
            return []
        return _reasons.reasons_json(self.reasons(X, n=n), len(X))
