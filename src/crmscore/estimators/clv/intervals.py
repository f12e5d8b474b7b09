"""Parametric-bootstrap prediction intervals of expected purchases and CLV.

:meth:`ClvModel.predict_interval <crmscore.estimators.clv.model.ClvModel.predict_interval>`
draws parameter vectors of each model from the asymptotic normal of the log-parameters
(:func:`draw_log_normal`; log space keeps them positive), recomputes the per-customer predictions
for every draw and takes the quantiles (:func:`bootstrap_intervals`). These intervals cover
*parameter* uncertainty of the expectations, not the Poisson noise of a single customer's future
purchases.

Cost: the ``hyp2f1`` part runs on unique ``(x, T)`` pairs only; the rest is elementwise work on
unique ``(x, t_x, T, m)`` rows, chunked to bound memory and run in threads
(:func:`_run_in_threads`; the results depend neither on the chunks nor on the threads); the
quantiles come from one sort per block (:func:`_quantiles`, the values of ``np.quantile`` at a
seventh of its cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from crmscore.estimators.clv.bgnbd import BGNBD_PARAMS, _discounted_sums, _p_alive
from crmscore.estimators.clv.likelihood import _group_rows

__all__ = ["bootstrap_intervals", "draw_log_normal"]


def _run_in_threads(fn: Callable[[Any], None], items: Iterable[Any], n_jobs: int) -> None:
    """``fn(item)`` for every item, ``n_jobs`` at a time in threads (numpy and scipy's special
    functions release the GIL in their array loops); each call writes its own output slots."""
    items = list(items)
    workers = max(1, min(int(n_jobs), len(items)))
    if workers == 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fn, items))


def draw_log_normal(
    params: Mapping[str, float], log_cov: np.ndarray, n_draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Parameter vectors from the normal ``N(log(params), log_cov)``, exponentiated.

    Parameters
    ----------
    params : mapping
        Fitted parameters (natural units, positive), in the order of ``log_cov``.
    log_cov : numpy.ndarray
        Covariance of the log-parameters (symmetrised here).
    n_draws : int
        Number of draws.
    rng : numpy.random.Generator
        Source of the standard normal draws (``n_draws x len(params)`` of them).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_draws, len(params))``, in natural units (always positive).

    Raises
    ------
    RuntimeError
        The covariance is not finite.
    """
    mu = np.log(list(params.values()))
    cov = (log_cov + log_cov.T) / 2
    if not np.all(np.isfinite(cov)):
        raise RuntimeError("parameter covariance is not finite: intervals are unavailable")
    # eigen-decomposition tolerates a borderline (near singular) covariance
    vals, vecs = np.linalg.eigh(cov)
    z = rng.standard_normal((n_draws, len(mu)))
    return np.exp(mu + (z * np.sqrt(np.clip(vals, 0, None))) @ vecs.T)


def bootstrap_intervals(
    bg_draws: np.ndarray,
    gg_draws: np.ndarray,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    m: np.ndarray,
    qs: np.ndarray,
    horizon_months: int,
    month_length: float,
    discount_rate_annual: float,
    chunk_size: int = 4_000,
    n_jobs: int = 2,
) -> np.ndarray:
    """Quantiles over parameter draws of per-customer expected purchases and CLV.

    Customers with ``x > 0`` and ``m <= 0`` get the population mean spend, as in
    :meth:`~crmscore.estimators.clv.model.ClvModel.expected_average_spend`.

    Parameters
    ----------
    bg_draws, gg_draws : numpy.ndarray
        BG/NBD ``(B, 4)`` and Gamma-Gamma ``(B, 3)`` parameter draws (natural units).
    x, tx, T, m : numpy.ndarray
        Validated summary columns ``frequency``, ``recency``, ``T`` and ``monetary_value``.
    qs : numpy.ndarray
        The two quantile levels (lower, upper).
    horizon_months : int
        Horizon of the expected purchases and CLV.
    month_length : float
        One month in the time unit of ``T``.
    discount_rate_annual : float
        Annual discount rate of the CLV.
    chunk_size : int
        Unique rows per block (a block holds ``chunk_size * B`` floats per temporary).
    n_jobs : int
        Blocks (and draws of the discounted sums) computed at a time, in threads.

    Returns
    -------
    numpy.ndarray
        Shape ``(4, len(x))``: expected purchases lower and upper, CLV lower and upper.
    """
    B = len(bg_draws)
    imputed = (x > 0) & ~(m > 0)
    m = np.where(imputed, 0.0, m)
    xs = np.where(imputed, 0.0, x)  # spend as if no repeat (population mean)
    (ux, utx, uT, um, uxs), inv, _ = _group_rows(x, tx, T, m, xs)
    (px, pT), pinv, _ = _group_rows(ux, uT)
    ds = np.empty((B, len(px)))
    gh = np.empty((B, len(px)))

    def draw(i: int) -> None:
        prm = dict(zip(BGNBD_PARAMS, bg_draws[i], strict=True))
        ds[i], gh[i] = _discounted_sums(prm, px, pT, horizon_months, month_length, discount_rate_annual)

    r, al, a, b = (bg_draws[:, [k]] for k in range(4))
    p, q, v = (gg_draws[:, [k]] for k in range(3))
    n = len(ux)
    out = np.empty((4, n))

    def chunk(sl: slice) -> None:
        cx, ctx, cT = ux[sl], utx[sl], uT[sl]
        pa = _p_alive(r, al, a, b, cx, ctx, cT)
        ep = pa * gh[:, pinv[sl]]
        wgt = p * uxs[sl] / (p * uxs[sl] + q - 1)
        spend = (1 - wgt) * (v * p / (q - 1)) + wgt * um[sl]
        clv = spend * pa * ds[:, pinv[sl]]
        out[0:2, sl] = _quantiles(ep, qs)
        out[2:4, sl] = _quantiles(clv, qs)

    slices = [slice(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    _run_in_threads(draw, range(B), n_jobs)  # draws first: the chunks read ds and gh
    _run_in_threads(chunk, slices, n_jobs)
    return out[:, inv]


def _quantiles(a: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """``np.quantile(a, qs, axis=0)`` (method ``"linear"``), bit for bit, through one sort.

    ``np.quantile`` partitions along the strided axis 0 of a ``(n_draws, n_rows)`` block,
    several times slower than sorting it (docs/scoring.md, "Speed"). The
    order statistics are the same and the interpolation is numpy's own: the virtual index
    ``(n - 1) * q``, its neighbours clipped to the ends, ``_lerp`` (from the upper neighbour
    when ``gamma >= 0.5``), NaN wherever a column holds one (NaN sorts last). A test checks
    the equality on random blocks with NaN, infinities and ties.
    """
    n = a.shape[0]
    s = np.sort(a, axis=0)
    virtual = (n - 1) * np.asarray(qs, dtype=np.float64)
    lower = np.floor(virtual)
    upper = lower + 1
    last, first = virtual >= n - 1, virtual < 0
    lower[last] = upper[last] = -1  # the last value
    lower[first] = upper[first] = 0
    lo_i, hi_i = lower.astype(np.intp), upper.astype(np.intp)
    gamma = (virtual - lo_i).reshape(-1, 1)
    lo, hi = s[lo_i], s[hi_i]
    with np.errstate(invalid="ignore"):  # inf - inf: the column is then NaN or inf, as numpy gives
        diff = hi - lo
        out = lo + diff * gamma
        np.subtract(hi, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    out[:, np.isnan(s[-1])] = np.nan
    return out
