"""Diagnostic plots of a fitted :class:`crmscore.estimators.clv.model.ClvModel` (pure; return Figures).

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend change, nothing shown), so they are safe in servers, tests and MLflow logging.
After Fader, Hardie & Lee (2005a, figures 2-5) and lifetimes' ``plotting`` module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "plot_calibration_vs_holdout_purchases",
    "plot_cumulative_transactions",
    "plot_frequency_recency_matrix",
    "plot_probability_alive_matrix",
]


def _grid(model: Any, max_frequency: int, max_recency: float, n_recency: int) -> tuple[np.ndarray, ...]:
    x = np.arange(max_frequency + 1, dtype=float)
    tx = np.linspace(0.0, max_recency, n_recency)
    X, TX = np.meshgrid(x, tx)  # rows: recency, cols: frequency
    return x, tx, X, TX


def _matrix_figure(
    values: np.ndarray, x: np.ndarray, tx: np.ndarray, title: str, label: str, time_unit: str
) -> Figure:
    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot()
    im = ax.imshow(
        values,
        origin="lower",
        aspect="auto",
        extent=(x[0] - 0.5, x[-1] + 0.5, tx[0], tx[-1]),
        cmap="viridis",
    )
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("frequency (repeat purchases in calibration)")
    ax.set_ylabel(f"recency ({time_unit}s)")
    ax.set_title(title)
    return fig


def plot_frequency_recency_matrix(
    model: Any,
    T: float,
    horizon: float | None = None,
    max_frequency: int = 20,
    n_recency: int = 60,
) -> Figure:
    """Expected repeat purchases over ``horizon`` by (frequency, recency) for customers of age ``T``.

    Parameters
    ----------
    model : ClvModel
        Fitted model.
    T : float
        Customer age (``model.time_unit``); recency runs from 0 to ``T``.
    horizon : float, optional
        Horizon in ``model.time_unit``; defaults to ``model.horizon_months`` converted.
    max_frequency, n_recency : int
        Grid size.
    """
    h = model.horizon_in_time_units() if horizon is None else float(horizon)
    x, tx, X, TX = _grid(model, max_frequency, T, n_recency)
    TX = np.where(X == 0, 0.0, TX)  # x = 0 implies recency 0
    vals = model.conditional_expected_number_of_purchases_up_to_time(h, X, TX, np.full_like(X, T))
    return _matrix_figure(
        vals,
        x,
        tx,
        f"Expected purchases in the next {h:.3g} {model.time_unit}s (age T = {T:.3g})",
        "expected purchases",
        model.time_unit,
    )


def plot_probability_alive_matrix(
    model: Any, T: float, max_frequency: int = 20, n_recency: int = 60
) -> Figure:
    """P(alive) by (frequency, recency) for customers of age ``T`` (note 021 eq. 2)."""
    x, tx, X, TX = _grid(model, max_frequency, T, n_recency)
    TX = np.where(X == 0, 0.0, TX)
    vals = model.conditional_probability_alive(X, TX, np.full_like(X, T))
    return _matrix_figure(
        vals, x, tx, f"Probability alive (age T = {T:.3g} {model.time_unit}s)", "P(alive)", model.time_unit
    )


def plot_calibration_vs_holdout_purchases(model: Any, cal_holdout: pd.DataFrame, n: int = 7) -> Figure:
    """Mean holdout purchases, actual vs model, by calibration frequency (FHL 2005a fig. 4).

    Customers with ``frequency_cal >= n`` are pooled in the last group.
    """
    from crmscore.evaluation.clv import holdout_predictions

    preds = holdout_predictions(model, cal_holdout)
    group = np.minimum(cal_holdout["frequency_cal"].to_numpy(dtype=int), n)
    means = preds[["actual", "model"]].groupby(group).mean()
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.plot(means.index, means["actual"], marker="o", label="actual")
    ax.plot(means.index, means["model"], marker="s", linestyle="--", label="BG/NBD")
    ax.set_xticks(means.index, [*map(str, means.index[:-1]), f"{n}+"] if len(means) else [])
    ax.set_xlabel("purchases in calibration period (frequency)")
    ax.set_ylabel("mean purchases in holdout period")
    ax.set_title("Calibration vs holdout purchases")
    ax.legend()
    return fig


def plot_cumulative_transactions(
    model: Any,
    first_purchase: Any,
    repeat_purchase_times: Any,
    t_end: float,
    t_calibration: float | None = None,
    n_points: int = 100,
) -> Figure:
    """Cumulative repeat transactions over time, actual vs model (FHL 2005a fig. 2).

    The model curve is ``sum_i E[X(t - t0_i)]`` (eq. 9, unconditional) over customers whose
    first purchase ``t0_i`` is before ``t``; it is evaluated per distinct ``t0`` (cohort).

    Parameters
    ----------
    model : ClvModel
        Fitted model.
    first_purchase : array_like
        First purchase time of each customer, in ``model.time_unit`` since a common origin.
    repeat_purchase_times : array_like
        Times of all repeat purchases (same origin and unit).
    t_end : float
        End of the plotted window (same origin and unit).
    t_calibration : float, optional
        End of the calibration period, drawn as a vertical line.
    n_points : int
        Points of the time grid.
    """
    from crmscore.estimators.clv.bgnbd import bgnbd_expected_purchases

    t0 = np.asarray(first_purchase, dtype=float)
    rep = np.sort(np.asarray(repeat_purchase_times, dtype=float))
    grid = np.linspace(0.0, t_end, n_points)
    cohorts, counts = np.unique(t0, return_counts=True)
    age = grid[:, None] - cohorts[None, :]
    exp_ = np.where(age > 0, bgnbd_expected_purchases(model.bgnbd_params_, np.clip(age, 0, None)), 0.0)
    expected = exp_ @ counts
    actual = np.searchsorted(rep, grid, side="right")
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    ax.plot(grid, actual, label="actual")
    ax.plot(grid, expected, linestyle="--", label="BG/NBD")
    if t_calibration is not None:
        ax.axvline(t_calibration, color="grey", linestyle=":", label="end of calibration")
    ax.set_xlabel(f"time ({model.time_unit}s)")
    ax.set_ylabel("cumulative repeat transactions")
    ax.set_title("Tracking cumulative repeat transactions")
    ax.legend()
    return fig
