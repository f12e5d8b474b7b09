"""Metrics and plots for binary scores (churn, lead conversion): pure functions.

Every function takes the observed labels ``y`` (0/1 or bool) and scores ``p`` (probabilities,
higher = more likely positive) and returns numbers, frames or matplotlib Figures. Nothing here
fits a model, writes a file, shows a window or selects a matplotlib backend: figures are built
with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state), so they render with any
backend and are safe in worker processes; the caller saves or logs them.

Conventions
-----------
*Deciles* sort the rows by descending score; ties keep the input order (a stable sort), so
results are deterministic. Decile ``k`` (1 = highest scores) holds rows ``floor((k-1) n / 10)``
to ``floor(k n / 10) - 1`` of that order, so bins differ by at most one row.

*Lift* of the top fraction ``f``: positive rate among the top ``ceil(f n)`` rows divided by the
overall positive rate. *Capture* (cumulative gain): share of all positives found there.

*Expected calibration error* (Naeini et al. 2015): ``sum_b n_b / n * |mean(y_b) - mean(p_b)|``
over ``n_bins`` equal-width probability bins on [0, 1] (``strategy="uniform"``) or equal-count
bins (``"quantile"``).

*Calibration slope and intercept* (Cox 1958; Steyerberg 2009): the coefficients of a logistic
regression of ``y`` on ``logit(p)`` (probabilities clipped to ``[1e-6, 1 - 1e-6]``); a
calibrated model has slope 1 and intercept 0, a slope below 1 means over-confident scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "binary_metrics",
    "brier_score",
    "calibration_slope_intercept",
    "calibration_table",
    "capture_at",
    "expected_calibration_error",
    "fit_logistic_1d",
    "gains_table",
    "lift_at",
    "metrics_table",
    "plot_calibration",
    "plot_gains",
    "plot_pr",
    "plot_roc",
    "pr_auc",
    "roc_auc",
    "single_feature_auc",
]

logger = logging.getLogger(__name__)

_EPS = 1e-6


def _check(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 int and scores as float, same length, no missing values."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 1 or p_arr.ndim != 1 or y_arr.shape != p_arr.shape:
        raise ValueError(f"y and p must be 1-d of the same length, got {y_arr.shape} and {p_arr.shape}")
    if y_arr.size == 0:
        raise ValueError("no rows to evaluate")
    if pd.isna(y_arr).any() or np.isnan(p_arr).any():
        raise ValueError("y and p must not contain missing values")
    y01 = y_arr.astype(np.int64)
    if not np.isin(y01, (0, 1)).all():
        raise ValueError("y must be binary (0/1 or bool)")
    return y01, p_arr


def _order(p: np.ndarray) -> np.ndarray:
    """Row order by descending score, ties in input order."""
    return np.argsort(-p, kind="stable")


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    y01, p_arr = _check(y, p)
    if y01.min() == y01.max():
        return math.nan
    return float(roc_auc_score(y01, p_arr))


def pr_auc(y: Any, p: Any) -> float:
    """Area under the precision-recall curve as average precision (sklearn's estimator)."""
    y01, p_arr = _check(y, p)
    if y01.sum() == 0:
        return math.nan
    return float(average_precision_score(y01, p_arr))


def brier_score(y: Any, p: Any) -> float:
    """Mean squared error of the probabilities, ``mean((p - y) ** 2)``."""
    y01, p_arr = _check(y, p)
    return float(brier_score_loss(y01, p_arr))


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


def calibration_table(
    y: Any, p: Any, n_bins: int = 10, strategy: Literal["uniform", "quantile"] = "uniform"
) -> pd.DataFrame:
    """Observed versus predicted rate per probability bin (the calibration curve's points).

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin_lower``, ``bin_upper``, ``n``, ``mean_predicted``,
        ``observed_rate``. Bins are right-open except the last, which includes 1.
    """
    y01, p_arr = _check(y, p)
    edges = _bin_edges(p_arr, n_bins, strategy)
    idx = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, len(edges) - 2)
    k = len(edges) - 1
    n = np.bincount(idx, minlength=k)
    sum_p = np.bincount(idx, weights=p_arr, minlength=k)
    sum_y = np.bincount(idx, weights=y01, minlength=k)
    has = n > 0
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1][has],
            "bin_upper": edges[1:][has],
            "n": n[has],
            "mean_predicted": sum_p[has] / n[has],
            "observed_rate": sum_y[has] / n[has],
        }
    )


def expected_calibration_error(
    y: Any, p: Any, n_bins: int = 10, strategy: Literal["uniform", "quantile"] = "uniform"
) -> float:
    """Expected calibration error: count-weighted mean ``|observed - predicted|`` over bins."""
    tab = calibration_table(y, p, n_bins, strategy)
    w = tab["n"].to_numpy(dtype=np.float64)
    gap = np.abs(tab["observed_rate"].to_numpy() - tab["mean_predicted"].to_numpy())
    return float(np.sum(w * gap) / np.sum(w))


def fit_logistic_1d(x: Any, y: Any, max_iter: int = 100) -> tuple[float, float]:
    """Unpenalised maximum-likelihood logistic regression of binary ``y`` on one covariate.

    Newton's method with step halving (so it cannot diverge); under (quasi-)separation the
    coefficients stop growing once the log-likelihood no longer improves. Returns
    ``(slope, intercept)``.
    """
    xv = np.asarray(x, dtype=np.float64)
    yv = np.asarray(y, dtype=np.float64)
    X = np.column_stack([np.ones_like(xv), xv])

    def loglik(beta: np.ndarray) -> float:
        eta = X @ beta
        return float(np.sum(yv * eta - np.logaddexp(0.0, eta)))

    beta = np.array([0.0, 0.0])
    ll = loglik(beta)
    for _ in range(max_iter):
        mu = expit(X @ beta)
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        hess = X.T @ (X * w[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, X.T @ (yv - mu))
        t = 1.0
        while t > 1e-6:
            cand = beta + t * step
            ll_new = loglik(cand)
            if ll_new >= ll - 1e-12:
                break
            t /= 2.0
        else:
            break
        beta, converged = cand, abs(ll_new - ll) < 1e-10
        ll = ll_new
        if converged and np.max(np.abs(t * step)) < 1e-8:
            break
    return float(beta[1]), float(beta[0])


def calibration_slope_intercept(y: Any, p: Any) -> tuple[float, float]:
    """Slope and intercept of the logistic recalibration ``logit P(y) = a + b logit(p)``.

    Fitted by unpenalised maximum likelihood (:func:`fit_logistic_1d`). Returns
    ``(slope, intercept)``; NaN when only one class is present.
    """
    y01, p_arr = _check(y, p)
    if y01.min() == y01.max():
        return math.nan, math.nan
    q = np.clip(p_arr, _EPS, 1.0 - _EPS)
    return fit_logistic_1d(np.log(q) - np.log1p(-q), y01)


def _top_count(n: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    return max(1, math.ceil(fraction * n - 1e-9))


def lift_at(y: Any, p: Any, fraction: float = 0.1) -> float:
    """Positive rate in the top ``fraction`` of scores divided by the overall positive rate."""
    y01, p_arr = _check(y, p)
    base = y01.mean()
    if base == 0:
        return math.nan
    top = y01[_order(p_arr)[: _top_count(len(y01), fraction)]]
    return float(top.mean() / base)


def capture_at(y: Any, p: Any, fraction: float = 0.1) -> float:
    """Share of all positives found in the top ``fraction`` of scores (cumulative gain)."""
    y01, p_arr = _check(y, p)
    total = y01.sum()
    if total == 0:
        return math.nan
    top = y01[_order(p_arr)[: _top_count(len(y01), fraction)]]
    return float(top.sum() / total)


def gains_table(y: Any, p: Any, n_bins: int = 10) -> pd.DataFrame:
    """Gains (lift) table by score decile (``n_bins`` groups, 1 = highest scores).

    Returns
    -------
    DataFrame
        Columns ``decile``, ``n``, ``positives``, ``positive_rate``, ``mean_score``,
        ``min_score``, ``max_score``, ``lift`` (decile rate / overall rate),
        ``cumulative_n``, ``cumulative_positives``, ``capture`` (cumulative share of all
        positives) and ``cumulative_lift``.
    """
    y01, p_arr = _check(y, p)
    n = len(y01)
    order = _order(p_arr)
    ys, ps = y01[order], p_arr[order]
    group = (np.arange(n) * n_bins) // n + 1
    frame = pd.DataFrame({"decile": group, "y": ys, "p": ps})
    g = frame.groupby("decile", sort=True)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "positives": g["y"].sum(),
            "mean_score": g["p"].mean(),
            "min_score": g["p"].min(),
            "max_score": g["p"].max(),
        }
    ).reset_index()
    base = y01.mean()
    total = y01.sum()
    out["positive_rate"] = out["positives"] / out["n"]
    out["lift"] = out["positive_rate"] / base if base > 0 else np.nan
    out["cumulative_n"] = out["n"].cumsum()
    out["cumulative_positives"] = out["positives"].cumsum()
    out["capture"] = out["cumulative_positives"] / total if total > 0 else np.nan
    out["cumulative_lift"] = (
        (out["cumulative_positives"] / out["cumulative_n"]) / base if base > 0 else np.nan
    )
    cols = [
        "decile",
        "n",
        "positives",
        "positive_rate",
        "mean_score",
        "min_score",
        "max_score",
        "lift",
        "cumulative_n",
        "cumulative_positives",
        "capture",
        "cumulative_lift",
    ]
    return out[cols]


def binary_metrics(y: Any, p: Any, n_bins: int = 10, top_fraction: float = 0.1) -> dict[str, float]:
    """All headline metrics of one score.

    Returns
    -------
    dict
        ``n``, ``positives``, ``base_rate``, ``roc_auc``, ``pr_auc``, ``brier``, ``ece``,
        ``calibration_slope``, ``calibration_intercept``, ``lift_top_decile``,
        ``capture_top_decile`` (top decile = ``top_fraction``).
    """
    y01, p_arr = _check(y, p)
    slope, intercept = calibration_slope_intercept(y01, p_arr)
    return {
        "n": float(len(y01)),
        "positives": float(y01.sum()),
        "base_rate": float(y01.mean()),
        "roc_auc": roc_auc(y01, p_arr),
        "pr_auc": pr_auc(y01, p_arr),
        "brier": brier_score(y01, p_arr),
        "ece": expected_calibration_error(y01, p_arr, n_bins),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "lift_top_decile": lift_at(y01, p_arr, top_fraction),
        "capture_top_decile": capture_at(y01, p_arr, top_fraction),
    }


def metrics_table(y: Any, scores: Mapping[str, Any], n_bins: int = 10) -> pd.DataFrame:
    """:func:`binary_metrics` of several scores of the same rows, one row per score name.

    Brier score, ECE and calibration slope only mean something for probabilities; a baseline
    that is a ranking score still gets them computed (read them as such).
    """
    rows = {name: binary_metrics(y, s, n_bins) for name, s in scores.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def _auc_abs(y01: np.ndarray, values: np.ndarray) -> float:
    """max(AUC, 1 - AUC) of ``values`` as a score (direction-free separation).

    The AUC is the Mann-Whitney statistic on average ranks (ties count one half), the same
    number as ``roc_auc_score`` without its input checks (several times faster: the leakage
    canary calls it twice per feature).
    """
    from scipy.stats import rankdata

    pos = y01.astype(bool)
    n1 = int(pos.sum())
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(values)
    auc = (float(ranks[pos].sum()) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    return float(max(auc, 1.0 - auc))


def single_feature_auc(
    X: pd.DataFrame,
    y: Any,
    *,
    n_folds: int = 5,
    smoothing: float = 10.0,
    max_rows: int = 200_000,
    random_state: int = 0,
) -> pd.Series:
    """How well each feature alone separates the classes (the leakage canary's measure).

    Numeric (and boolean) features: ``max(AUC, 1 - AUC)`` of the raw values, with missing
    values placed first and then last (the larger of the two), so a feature that is missing
    exactly for one class is caught too. Categorical/text features: the AUC of an out-of-fold
    smoothed target mean of the category (``n_folds`` folds, prior weight ``smoothing``), so
    a high-cardinality id column does not look predictive just because each value is rare,
    while a category that really determines the label does.

    Parameters
    ----------
    X : DataFrame
        Features (not modified).
    y : array-like
        Binary labels.
    n_folds, smoothing : int, float
        Target-encoding folds and prior weight for categorical features.
    max_rows : int
        Rows sampled (seeded) above this size, to bound the cost.
    random_state : int
        Seed of the sample and the folds.

    Returns
    -------
    Series
        Per feature, in [0.5, 1]; sorted descending. Constant features get 0.5.
    """
    y01 = np.asarray(y).astype(np.int64)
    if len(y01) != len(X):
        raise ValueError("X and y have different lengths")
    rng = np.random.default_rng(random_state)
    rows = np.arange(len(X))
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    y01 = y01[rows]
    if y01.min() == y01.max():
        return pd.Series(0.5, index=X.columns, dtype=np.float64)
    fold = rng.integers(0, n_folds, len(rows))
    out: dict[str, float] = {}
    for col in X.columns:
        s = X[col].iloc[rows]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            miss = np.isnan(v)
            if miss.all() or (np.nanmin(v) == np.nanmax(v) and not miss.any()):
                out[col] = 0.5
                continue
            lo, hi = np.nanmin(v), np.nanmax(v)
            out[col] = max(
                _auc_abs(y01, np.where(miss, lo - 1.0, v)), _auc_abs(y01, np.where(miss, hi + 1.0, v))
            )
        elif pd.api.types.is_datetime64_any_dtype(s):
            continue
        else:
            codes, _ = pd.factorize(s.astype("object"), use_na_sentinel=False)
            prior = y01.mean()
            enc = np.empty(len(rows))
            for k in range(n_folds):
                test = fold == k
                train = ~test
                k_cat = int(codes.max()) + 1
                cnt = np.bincount(codes[train], minlength=k_cat)
                pos = np.bincount(codes[train], weights=y01[train], minlength=k_cat)
                enc[test] = ((pos + smoothing * prior) / (cnt + smoothing))[codes[test]]
            out[col] = _auc_abs(y01, enc) if np.ptp(enc) > 0 else 0.5
    return pd.Series(out, dtype=np.float64).sort_values(ascending=False)


# ------------------------------------------------------------------------------------------
# plots: each returns a new Figure (no pyplot, no backend selection, nothing shown)
# ------------------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def plot_roc(y: Any, scores: Mapping[str, Any], title: str = "ROC curve") -> Figure:
    """ROC curves of several scores of the same rows, AUC in the legend."""
    fig, ax = _figure(title)
    for name, s in scores.items():
        y01, p_arr = _check(y, s)
        fpr, tpr, _ = roc_curve(y01, p_arr)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y01, p_arr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_pr(y: Any, scores: Mapping[str, Any], title: str = "Precision-recall curve") -> Figure:
    """Precision-recall curves, average precision in the legend, base rate as reference."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure(title)
    base = math.nan
    for name, s in scores.items():
        y01, p_arr = _check(y, s)
        base = y01.mean()
        prec, rec, _ = precision_recall_curve(y01, p_arr)
        ax.plot(rec, prec, label=f"{name} (AP {pr_auc(y01, p_arr):.3f})")
    ax.axhline(base, linestyle=":", color="grey", label=f"base rate {base:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_calibration(
    y: Any,
    scores: Mapping[str, Any],
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "quantile",
    title: str = "Calibration",
) -> Figure:
    """Observed rate versus mean predicted probability per bin, ECE in the legend."""
    fig, ax = _figure(title)
    for name, s in scores.items():
        tab = calibration_table(y, s, n_bins, strategy)
        ece = expected_calibration_error(y, s, n_bins)
        ax.plot(tab["mean_predicted"], tab["observed_rate"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_gains(
    y: Any, scores: Mapping[str, Any], n_bins: int = 10, title: str = "Cumulative gains"
) -> Figure:
    """Cumulative share of positives captured by the top deciles, with the random line."""
    fig, ax = _figure(title)
    for name, s in scores.items():
        tab = gains_table(y, s, n_bins)
        x = np.concatenate([[0.0], tab["cumulative_n"].to_numpy() / tab["n"].sum()])
        c = np.concatenate([[0.0], tab["capture"].to_numpy()])
        ax.plot(x, c, marker="o", label=f"{name} (top decile {tab['capture'].iloc[0]:.2f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random")
    ax.set_xlabel("share of records contacted (by descending score)")
    ax.set_ylabel("share of positives captured")
    ax.legend(loc="lower right", fontsize="small")
    return fig
