"""Out-of-time evaluation of a classifier beside naive baselines (one rule for every kind).

The evaluation window is the latest cutoff of the stacked training set
(:func:`crmscore.core.time.latest_cutoff_mask`); the model is fitted (and calibrated) on the
earlier cutoffs only. Data without dates fall back to a stratified holdout of records, stated
as such (``NOT an out-of-time test``) in the split description that every metric carries.
Baselines (:func:`logistic_baseline`, and the kinds' own, e.g.
:func:`crmscore.estimators.churn.clv_baselines`) are fitted on the same training rows and
scored on the same evaluation rows, so the metrics table compares like with like.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from crmscore.core.time import latest_cutoff_mask
from crmscore.estimators.classifier import CalibratedModel
from crmscore.estimators.gates import LeakageError, check_no_overlap
from crmscore.estimators.preparer import is_categorical
from crmscore.evaluation.binary import gains_table, metrics_table, single_feature_auc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Baseline",
    "EvaluationReport",
    "evaluate_classifier",
    "evaluate_out_of_time",
    "logistic_baseline",
    "out_of_time_split",
    "simple_baseline",
]

logger = logging.getLogger(__name__)

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
        ev = latest_cutoff_mask(cut)
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
        num = [c for c in cols if not is_categorical(train[c])]
        cat = [c for c in cols if is_categorical(train[c])]
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
    baseline_errors : dict
        Baselines that failed and why (left out of ``metrics``).
    evaluation : DataFrame
        The evaluation rows themselves (features and label), in the order of ``predictions``.
    """

    split: str
    metrics: pd.DataFrame
    gains: dict[str, pd.DataFrame]
    predictions: pd.DataFrame
    model: CalibratedModel
    label: str
    baseline_errors: dict[str, str] = field(default_factory=dict)
    evaluation: pd.DataFrame | None = None

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
        (e.g. ``crmscore.features.tables.build_churn_training_set``). Not modified.
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
        single = single_feature_auc(est.preparer_.transform(evaluation.drop(columns=[label])), y_ev)
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
        evaluation=evaluation,
    )


def simple_baseline(
    frame: pd.DataFrame,
    label: str,
    columns: Iterable[str],
    name: str,
    *,
    exclude: Iterable[str] = (),
) -> dict[str, Baseline]:
    """The kind's simple logistic baseline: on ``columns`` when the frame has them all, else on
    every attribute (``"logistic regression (all attributes)"``, for data without the history
    those columns come from). ``exclude`` (and ``label``, ``cutoff``) are never inputs."""
    cols = list(columns)
    if cols and set(cols) <= set(frame.columns):
        return {f"logistic regression ({name})": logistic_baseline(cols, label=label)}
    skip = {label, "cutoff", *exclude}
    feats = [c for c in frame.columns if c not in skip]
    return {"logistic regression (all attributes)": logistic_baseline(feats, label=label)}


def evaluate_classifier(
    frame: pd.DataFrame,
    label: str,
    model: CalibratedModel,
    cfg: Any,
    baselines: Mapping[str, Baseline],
    *,
    time_column: str = "cutoff",
    horizon_days: int | None = None,
) -> EvaluationReport:
    """:func:`evaluate_out_of_time` with the holdout share, leakage ceiling and seed of a
    classifier config block ``cfg`` (``churn`` or ``leads``)."""
    return evaluate_out_of_time(
        frame,
        label,
        model,
        baselines=baselines,
        time_column=time_column,
        horizon_days=horizon_days,
        holdout_fraction=cfg.holdout_fraction,
        max_eval_auc=cfg.max_eval_auc,
        random_state=cfg.random_state,
    )
