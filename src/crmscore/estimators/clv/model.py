"""Probabilistic customer lifetime value: BG/NBD purchases × Gamma-Gamma spend.

This is the only module of crmscore that touches ``lifetimes`` (pinned ``==0.11.3``, archived
since 2020). The likelihoods, predictions and intervals are implemented here in vectorised
numpy/scipy; ``lifetimes`` is kept as the *reference implementation* (:func:`to_lifetimes`
builds its fitters with our parameters) and the oracle tests check both against the published
numbers. ``lifetimes`` is imported lazily, so importing this module does not import it.

Model
-----
BG/NBD (Fader, Hardie & Lee 2005a, "Counting Your Customers the Easy Way", *Marketing
Science* 24(2)): while alive a customer buys as a Poisson process with rate
``lambda ~ Gamma(r, alpha)``; after each purchase she dies with probability
``p ~ Beta(a, b)``. It is fitted on *all* customers, one-time buyers (``frequency == 0``)
included, from the sufficient statistics ``frequency`` (x, repeat purchase periods),
``recency`` (t_x) and ``T`` (age), all in the summary's time unit.

Gamma-Gamma (Fader, Hardie & Lee 2005b, "RFM and CLV: Using Iso-Value Curves", *JMR* 42;
Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value", note 025): the average
spend per repeat transaction ``monetary_value`` (m) of a customer with x repeat purchases is
Gamma(p x, nu x) with ``nu ~ Gamma(q, v)``. It is fitted on repeat buyers with positive
spend only. Customers with ``frequency > 0`` but ``monetary_value <= 0`` (refunds exceeding
purchases, free orders) are set aside from the fit and counted in ``diagnostics_``; at
prediction they get the population mean spend and ``spend_imputed = True``.

Units
-----
``time_unit`` (``"day"`` or ``"week"``) is the unit of ``recency`` and ``T`` (the literature
and the CDNOW oracle use weeks = days / 7, computed from *daily* periods: never fit on weekly
buckets, see design §4). The CLV horizon is in months and the discount rate per year. In the
default ``month_convention="exact"`` a month is 365.25 / 12 = 30.4375 days (4.348214... weeks)
and month k's cash flow is discounted by ``(1 + discount_rate_annual) ** (-k / 12)``.
``month_convention="lifetimes"`` reproduces ``lifetimes``' ``customer_lifetime_value``
exactly: a month is 30 days or 4.345 weeks (its ``freq`` factors), and its monthly
``discount_rate`` equals ``(1 + discount_rate_annual) ** (1 / 12) - 1``
(see :func:`monthly_discount_rate`), so that ``(1 + monthly) ** k == (1 + annual) ** (k / 12)``.
In both conventions CLV is ``sum_{k=1..H} spend * (E[X(k L)] - E[X((k-1) L)]) / (1+d_m)^k``
with ``L`` the month length in model units and ``E[X(t)]`` the conditional expected
purchases (FHL 2005a eq. 10); the spend is the Gamma-Gamma conditional mean (note 025 eq. 5).

Speed
-----
Fitting collapses customers to unique ``(frequency, recency, T)`` tuples with counts as weights
(same optimum as the unweighted fit: the objective is the *mean* negative log-likelihood, as in
lifetimes) and uses analytic gradients. BG/NBD on large data (over 100,000 unique tuples) starts
from a BFGS fit on a Poisson-thinned subsample of about 50,000 tuples and finishes with damped
Newton steps on all tuples using the analytic Hessian (two or three steps; the same Hessian
gives the standard errors), instead of ~60 full-data BFGS evaluations. Predictions use the factorisation
``E[X(t) | x, t_x, T] = P(alive | x, t_x, T) * G(t | x, T)`` where ``G`` (the hypergeometric part,
the only costly term) depends on ``(x, T)`` only, so ``hyp2f1`` is evaluated on unique
``(x, T)`` pairs (typically a few thousand, whatever the number of customers).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import digamma, expit, gammaln, hyp2f1, polygamma
from sklearn.base import BaseEstimator

from crmscore.core.serial import package_versions
from crmscore.core.time import DAYS_PER_UNIT

__all__ = [
    "BGNBD_PARAMS",
    "DAYS_PER_MONTH",
    "GG_PARAMS",
    "LIFETIMES_MONTH_FACTOR",
    "ClvFitError",
    "ClvModel",
    "bgnbd_conditional_expected_purchases",
    "bgnbd_expected_purchases",
    "bgnbd_log_likelihood",
    "bgnbd_probability_alive",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gg_conditional_expected_average_profit",
    "gg_log_likelihood",
    "lifetimes_freq",
    "load_cdnow_sample",
    "monthly_discount_rate",
    "to_lifetimes",
]

logger = logging.getLogger(__name__)

#: Parameter names, in the literature's order.
BGNBD_PARAMS: tuple[str, ...] = ("r", "alpha", "a", "b")
GG_PARAMS: tuple[str, ...] = ("p", "q", "v")
#: An exact average (Julian) month in days.
DAYS_PER_MONTH: float = 365.25 / 12.0
#: lifetimes' month length per time unit in ``_customer_lifetime_value`` (``freq`` "D" → 30, "W" → 4.345).
LIFETIMES_MONTH_FACTOR: dict[str, float] = {"day": 30.0, "week": 4.345}
_LIFETIMES_FREQ: dict[str, str] = {"day": "D", "week": "W"}
_FORMAT = "crmscore.clv/1"
#: Above twice this many unique (x, t_x, T) tuples, BG/NBD starts from a fit on a subsample of
#: about this many tuples and finishes with Newton steps on the full data.
_BGNBD_START_TUPLES = 50_000


class ClvFitError(RuntimeError):
    """The BG/NBD or Gamma-Gamma optimiser failed from every starting point."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def monthly_discount_rate(discount_rate_annual: float) -> float:
    """Monthly rate equivalent to an annual one: ``(1 + d) ** (1 / 12) - 1``."""
    return float((1.0 + discount_rate_annual) ** (1.0 / 12.0) - 1.0)


def _month_length(time_unit: str, month_convention: str) -> float:
    """Length of one month in the model's time unit."""
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be 'day' or 'week', got {time_unit!r}")
    if month_convention == "exact":
        return DAYS_PER_MONTH / DAYS_PER_UNIT[time_unit]
    if month_convention == "lifetimes":
        return LIFETIMES_MONTH_FACTOR[time_unit]
    raise ValueError(f"month_convention must be 'exact' or 'lifetimes', got {month_convention!r}")


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


def _group_rows(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of aligned 1-D arrays: ``(unique columns, inverse, counts)``.

    Hash-based (``pandas.factorize`` per column, codes combined pairwise), O(n).
    """
    codes, _ = pd.factorize(cols[0])
    codes = codes.astype(np.int64)
    for c in cols[1:]:
        c_codes, c_uni = pd.factorize(c)
        key = codes * np.int64(len(c_uni)) + c_codes
        codes, _ = pd.factorize(key)
        codes = codes.astype(np.int64)
    n_unique = int(codes.max()) + 1 if len(codes) else 0
    first = np.full(n_unique, -1, dtype=np.int64)
    # first occurrence of each code (reverse assignment keeps the smallest index)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    counts = np.bincount(codes, minlength=n_unique)
    return [np.asarray(c)[first] for c in cols], codes, counts


def _as_float(a: Any) -> np.ndarray:
    # pandas objects through ``to_numpy``: ``np.asarray(series)`` probes attributes through
    # ``Series.__getattr__``, which hashes a string index (~0.15 s per million rows)
    if isinstance(a, (pd.Series, pd.Index)):
        return a.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(a, dtype=float)


# --------------------------------------------------------------------------------------------
# BG/NBD math (Fader, Hardie & Lee 2005a)
# --------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(params: Mapping[str, float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood, FHL 2005a eq. (6) in the log-sum-exp form of §7.

    Parameters
    ----------
    params : mapping
        ``r``, ``alpha``, ``a``, ``b`` (``alpha`` in the time unit of ``recency`` and ``T``).
    frequency, recency, T : array_like
        x, t_x and T.

    Returns
    -------
    numpy.ndarray
        ``log L(r, alpha, a, b | x, t_x, T)`` per customer.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
    A1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    A2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    A3 = -(r + x) * np.log(alpha + T)
    A4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + tx)
    return A1 + A2 + np.logaddexp(A3, np.where(x > 0, A4, -np.inf))


def bgnbd_probability_alive(params: Mapping[str, float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """P(alive | x, t_x, T), Fader, Hardie & Lee (2008), note 021 eq. (2).

    ``1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x)) ** (r + x))``; one-time
    buyers (x = 0) have P(alive) = 1 under BG/NBD (they cannot have died before a repeat
    purchase), a known limitation of the model.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
    return _p_alive(r, alpha, a, b, x, tx, T)


def _p_alive(r: Any, alpha: Any, a: Any, b: Any, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    log_div = (
        (r + x) * (np.log(alpha + T) - np.log(alpha + tx)) + np.log(a) - np.log(b + np.maximum(x, 1) - 1)
    )
    return np.where(x == 0, 1.0, expit(-log_div))


def _g_term(r: Any, alpha: Any, a: Any, b: Any, x: np.ndarray, T: np.ndarray, t: Any) -> np.ndarray:
    """The hypergeometric factor of eq. (10): ``E[X(t) | x, t_x, T] = P(alive) * G(t | x, T)``.

    ``G = (a + b + x - 1) / (a - 1) * [1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
    * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))]``. When ``2F1`` overflows the
    Euler transformation ``2F1(c-a', c-b'; c; z) (1 - z) ** (c - a' - b')`` is used, as lifetimes
    does.
    """
    t = np.asarray(t, dtype=float)
    _a = r + x
    _b = b + x
    _c = a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ln_hyp = np.log(hyp2f1(_a, _b, _c, z))
        bad = np.isinf(ln_hyp)
        if np.any(bad):
            alt = np.log(hyp2f1(_c - _a, _c - _b, _c, z)) + (_c - _a - _b) * np.log1p(-z)
            ln_hyp = np.where(bad, alt, ln_hyp)
        first = (a + b + x - 1) / (a - 1)
        return first * -np.expm1(ln_hyp + (r + x) * (np.log(alpha + T) - np.log(alpha + t + T)))


def bgnbd_conditional_expected_purchases(
    params: Mapping[str, float], t: Any, frequency: Any, recency: Any, T: Any
) -> np.ndarray:
    """Expected repeat purchases in ``(T, T + t]`` given (x, t_x, T): FHL 2005a eq. (10).

    Matches lifetimes' ``conditional_expected_number_of_purchases_up_to_time``.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
    return _p_alive(r, alpha, a, b, x, tx, T) * _g_term(r, alpha, a, b, x, T, t)


def bgnbd_expected_purchases(params: Mapping[str, float], t: Any) -> np.ndarray:
    """Unconditional expected repeat purchases in ``(0, t]`` for a new customer: FHL 2005a eq. (9)."""
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    t = _as_float(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        hyp = hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - hyp * (alpha / (alpha + t)) ** r)


# --------------------------------------------------------------------------------------------
# Gamma-Gamma math (Fader & Hardie 2013, note 025)
# --------------------------------------------------------------------------------------------


def gg_log_likelihood(params: Mapping[str, float], frequency: Any, monetary_value: Any) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend, note 025 eq. (1a).

    Only meaningful for ``frequency > 0`` and ``monetary_value > 0``.
    """
    p, q, v = (float(params[k]) for k in GG_PARAMS)
    x, m = _as_float(frequency), _as_float(monetary_value)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def gg_conditional_expected_average_profit(
    params: Mapping[str, float], frequency: Any, monetary_value: Any
) -> np.ndarray:
    """E[spend per transaction | x, m], note 025 eq. (5).

    ``(q - 1) / (p x + q - 1) * v p / (q - 1) + p x / (p x + q - 1) * m``: a weighted average of
    the population mean ``v p / (q - 1)`` (finite only when q > 1) and the customer's mean.
    Matches lifetimes' ``conditional_expected_average_profit``.
    """
    p, q, v = (float(params[k]) for k in GG_PARAMS)
    x, m = _as_float(frequency), _as_float(monetary_value)
    w = p * x / (p * x + q - 1)
    return (1 - w) * (v * p / (q - 1)) + w * m


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------


def _wsum(w: np.ndarray, v: np.ndarray) -> float:
    """Weighted sum without BLAS (``w @ v`` goes through threaded BLAS, erratic on busy hosts)."""
    return float(np.einsum("i,i->", w, v))


class _BgnbdData:
    """Sufficient statistics of the BG/NBD likelihood, pre-aggregated for fast evaluation.

    The log-likelihood (FHL 2005a eq. 6, lifetimes' A1..A4) is split into
    ``A1 + A2`` (depends on x only: summed over unique x with weights),
    ``-(r + x) log(alpha + T)`` (summed over unique T with weights ``W_T`` and ``sum w x``) and,
    for repeat buyers only, ``softplus(A4 - A3)`` over the unique (x, t_x, T) tuples, where
    ``A4 - A3 = log a - log(b + x - 1) + (r + x) (log(alpha + T) - log(alpha + t_x))``.
    """

    def __init__(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray) -> None:
        self.W = float(w.sum())
        self.ux, xinv = np.unique(x, return_inverse=True)
        self.wx = np.bincount(xinv, weights=w, minlength=len(self.ux))
        self.uT, Tinv = np.unique(T, return_inverse=True)
        self.WT = np.bincount(Tinv, weights=w, minlength=len(self.uT))
        self.XT = np.bincount(Tinv, weights=w * x, minlength=len(self.uT))
        pos = x > 0
        self.utx, self.txinv = np.unique(tx[pos], return_inverse=True)
        self.Tinv = Tinv[pos]
        self.xinv = xinv[pos]
        self.x = x[pos]
        self.w = w[pos]


def _bgnbd_objective(
    log_params: np.ndarray, d: _BgnbdData, penalizer: float, hessian: bool = False
) -> tuple[Any, ...]:
    """Mean weighted negative log-likelihood (+ L2 penalty) and its gradient in log-parameters.

    With ``hessian=True`` also returns the analytic Hessian in log-parameters (third element).
    Derivatives in natural parameters ``(r, alpha, a, b)`` of each block (``psi``/``psi_1``
    the digamma/trigamma functions, ``s = sigmoid(z)`` for the softplus block, ``z`` as in
    :class:`_BgnbdData`) are chained to log-parameters:
    ``H_log = diag(p) H diag(p) + diag(p * grad)``.
    """
    params = np.exp(log_params)
    r, al, a, b = params
    ux, wx = d.ux, d.wx
    # A1 + A2 on unique x
    A12 = (
        gammaln(r + ux)
        - gammaln(r)
        + r * np.log(al)
        + gammaln(a + b)
        + gammaln(b + ux)
        - gammaln(b)
        - gammaln(a + b + ux)
    )
    g = np.empty(4)
    ll = _wsum(wx, A12)
    g[0] = _wsum(wx, digamma(r + ux) - digamma(r)) + d.W * np.log(al)
    g[1] = d.W * r / al
    g[2] = _wsum(wx, digamma(a + b) - digamma(a + b + ux))
    g[3] = _wsum(wx, digamma(a + b) + digamma(b + ux) - digamma(b) - digamma(a + b + ux))
    # A3 on unique T
    lT = np.log(al + d.uT)
    iT = 1.0 / (al + d.uT)
    sWT_iT = _wsum(d.WT, iT)
    ll -= r * _wsum(d.WT, lT) + _wsum(d.XT, lT)
    g[0] -= _wsum(d.WT, lT)
    g[1] -= r * sWT_iT + _wsum(d.XT, iT)
    if hessian:
        H = np.zeros((4, 4))
        H[0, 0] = _wsum(wx, polygamma(1, r + ux) - polygamma(1, r))
        H[0, 1] = d.W / al - sWT_iT
        H[1, 1] = -d.W * r / al**2 + _wsum(r * d.WT + d.XT, iT * iT)
        t_ab = _wsum(wx, polygamma(1, a + b) - polygamma(1, a + b + ux))
        H[2, 2] = t_ab
        H[2, 3] = t_ab
        H[3, 3] = _wsum(
            wx, polygamma(1, a + b) + polygamma(1, b + ux) - polygamma(1, b) - polygamma(1, a + b + ux)
        )
    # softplus(A4 - A3) on repeat-buyer tuples
    if len(d.x):
        ltx = np.log(al + d.utx)
        itx = 1.0 / (al + d.utx)
        bx1 = b + np.maximum(ux, 1) - 1  # x = 0 rows are not in this block
        inv_bx1 = (1.0 / bx1)[d.xinv]
        rx = r + d.x
        dl = lT[d.Tinv] - ltx[d.txinv]
        z = (np.log(a) - np.log(bx1))[d.xinv] + rx * dl
        # softplus(z) and sigmoid(z) from one exp: e = exp(-|z|)
        e = np.exp(-np.abs(z))
        ll += _wsum(d.w, np.maximum(z, 0.0) + np.log1p(e))
        s4 = np.where(z >= 0, 1.0, e) / (1.0 + e) * d.w
        di = iT[d.Tinv] - itx[d.txinv]
        z_al = rx * di
        g[0] += _wsum(s4, dl)
        g[1] += _wsum(s4, z_al)
        sw4 = float(s4.sum())
        g[2] += sw4 / a
        g[3] -= _wsum(s4, inv_bx1)
        if hessian:
            # second derivatives of softplus(z): s (1 - s) z_i z_j + s z_ij, s (1 - s) = e / (1 + e)^2
            q = e / (1.0 + e) ** 2 * d.w
            za = 1.0 / a
            zs = (dl, z_al, None, -inv_bx1)
            qz = [None if v is None else q * v for v in zs]
            sq = float(q.sum())
            for i in (0, 1, 3):
                for j in (0, 1, 3):
                    if j >= i:
                        H[i, j] += _wsum(qz[i], zs[j])
                H[i, 2] += za * float(qz[i].sum()) if i < 2 else 0.0
            H[2, 2] += za * za * sq - sw4 / a**2
            H[2, 3] += za * float(qz[3].sum())
            H[0, 1] += _wsum(s4, di)
            H[1, 1] -= _wsum(s4, rx * (iT * iT)[d.Tinv] - rx * (itx * itx)[d.txinv])
            H[3, 3] += _wsum(s4, inv_bx1 * inv_bx1)
    pen = penalizer * np.sum(params**2)
    f = -ll / d.W + pen
    gnat = -g / d.W + 2 * penalizer * params
    grad = gnat * params
    if not hessian:
        return float(f), grad
    H = np.triu(H) + np.triu(H, 1).T
    Hnat = -H / d.W + 2 * penalizer * np.eye(4)
    return float(f), grad, Hnat * np.outer(params, params) + np.diag(grad)


def _gg_objective(
    log_params: np.ndarray,
    ux: np.ndarray,
    wx: np.ndarray,
    x: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    consts: tuple[float, float],
    penalizer: float,
    v_scale: float,
) -> tuple[float, np.ndarray]:
    """Mean weighted Gamma-Gamma negative log-likelihood (+ L2 penalty) and gradient.

    ``m`` is the spend divided by ``v_scale`` (so ``v`` here is ``v / v_scale``); the likelihood
    of the unscaled data differs by a constant and the penalty is put on the unscaled ``v`` so
    the optimum equals lifetimes' penalised one. The gamma functions depend on x only and run
    on unique x (weights ``wx``); ``consts`` are ``sum w x log m`` and ``sum w log m``; only
    ``log(x m + v)`` runs over the (x, m) tuples.
    """
    params = np.exp(log_params)
    p, q, v = params
    W = w.sum()
    sxlm, slm = consts
    pux = p * ux
    gx = gammaln(pux + q) - gammaln(pux) - gammaln(q) + q * np.log(v) + pux * np.log(ux)
    xmv = x * m + v
    log_xmv = np.log(xmv)
    ll = _wsum(wx, gx) + p * sxlm - slm - _wsum(w, (p * x + q) * log_xmv)
    dig = digamma(pux + q)
    dp = _wsum(wx, ux * (dig - digamma(pux) + np.log(ux))) + sxlm - _wsum(w * x, log_xmv)
    dq = _wsum(wx, dig - digamma(q) + np.log(v)) - _wsum(w, log_xmv)
    dv = W * q / v - _wsum(w, (p * x + q) / xmv)
    g = np.array([dp, dq, dv])
    nat = params * np.array([1.0, 1.0, v_scale])
    f = -ll / W + penalizer * np.sum(nat**2)
    grad = (-g / W) * params + 2 * penalizer * nat**2
    return float(f), grad


def _numerical_hessian(
    grad: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, h: float = 1e-4
) -> np.ndarray:
    """Central differences of an analytic gradient; symmetrised."""
    k = len(x0)
    H = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (grad(x0 + e) - grad(x0 - e)) / (2 * h)
    return (H + H.T) / 2


def _minimise(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    starts: list[np.ndarray],
    tol: float,
    max_iter: int,
    model: str,
    advice: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """BFGS from each start in turn until one converges; otherwise raise :class:`ClvFitError`."""
    messages = []
    for i, x0 in enumerate(starts):
        with np.errstate(all="ignore"):
            res = optimize.minimize(
                objective, x0, jac=True, method="BFGS", options={"gtol": tol, "maxiter": max_iter}
            )
        gmax = float(np.max(np.abs(res.jac))) if np.all(np.isfinite(res.jac)) else math.inf
        ok = bool(np.isfinite(res.fun) and np.all(np.isfinite(res.x)))
        # BFGS reports "precision loss" when the line search cannot improve a point whose gradient
        # is already at rounding level: that is convergence too.
        converged = ok and (res.success or gmax < 1e-5) and np.all(np.abs(res.x) < 30)
        if converged:
            if i > 0:
                logger.info("%s fit converged from start %d after %d failure(s)", model, i + 1, i)
            return res.x, {
                "converged": True,
                "message": str(res.message),
                "iterations": int(res.nit),
                "function_evaluations": int(res.nfev),
                "start": i,
                "max_abs_gradient": gmax,
            }
        messages.append(
            f"start {i + 1}: {res.message} (max |grad| {gmax:.2g}, log-params {np.round(res.x, 3)})"
        )
        logger.warning("%s fit failed from start %d: %s", model, i + 1, res.message)
    raise ClvFitError(
        f"{model} fit did not converge from {len(starts)} starting points. {advice}\n" + "\n".join(messages)
    )


def fit_bgnbd(
    frequency: Any,
    recency: Any,
    T: Any,
    weights: Any = None,
    *,
    penalizer: float = 0.0,
    tol: float = 1e-9,
    max_iter: int = 1000,
    n_starts: int = 6,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Maximum-likelihood BG/NBD fit (FHL 2005a eq. 6) on (optionally weighted) tuples.

    The objective is lifetimes': the weighted *mean* negative log-likelihood plus
    ``penalizer * sum(params ** 2)`` where ``alpha`` is expressed with time rescaled so that
    ``max(T) == 1`` (lifetimes' ``_scale_time``). Rows are collapsed to unique
    ``(frequency, recency, T)`` tuples with summed weights, which leaves the objective unchanged.

    Parameters
    ----------
    frequency, recency, T : array_like
        Sufficient statistics x, t_x, T (time in any unit; ``alpha`` comes back in that unit).
    weights : array_like, optional
        Number of customers per row (defaults to ones).
    penalizer : float
        L2 penalty coefficient (0 = pure maximum likelihood).
    tol : float
        Gradient tolerance (max abs) on the mean objective in log-parameter space (BFGS and Newton).
    max_iter : int
        Iteration cap per start.
    n_starts : int
        Starting points tried in turn (fixed ones, then random ones from ``random_state``).
    random_state : int, optional
        Seed for the random starts.

    Returns
    -------
    dict
        ``params`` (dict r, alpha, a, b), ``log_cov`` (covariance of the log-parameters, from
        the analytic Hessian), ``cov`` (delta-method covariance of the parameters), ``se``,
        ``log_likelihood`` (total, unpenalised), ``n`` (customers), ``n_unique`` (tuples) and
        the optimiser diagnostics (``converged``, ``message``, ``iterations`` and
        ``function_evaluations`` of BFGS plus Newton, ``newton_iterations``,
        ``start_sample_fraction``: share of the tuples' weight in the BFGS start fit, 1.0 when it
        ran on all data, ``max_abs_gradient``).

    Notes
    -----
    Above ``2 * _BGNBD_START_TUPLES`` unique tuples, BFGS runs on a Poisson-thinned subsample
    (weights ``~ Poisson(w * fraction)``) and damped Newton steps with the analytic Hessian
    finish on all tuples; on failure the fit falls back to BFGS on all tuples.

    Raises
    ------
    ClvFitError
        No start converged; the message says what to change.
    """
    x = _as_float(frequency)
    tx = _as_float(recency)
    T = _as_float(T)
    w = np.ones_like(x) if weights is None else _as_float(weights)
    (x, tx, T), inv, _ = _group_rows(x, tx, T)
    w = np.bincount(inv, weights=w, minlength=len(x))
    scale = 1.0 / T.max()
    Ts = T * scale
    txs = tx * scale
    data = _BgnbdData(x, txs, Ts, w)
    W = data.W

    def obj(lp: np.ndarray) -> tuple[float, np.ndarray]:
        return _bgnbd_objective(lp, data, penalizer)

    def obj_hess(lp: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return _bgnbd_objective(lp, data, penalizer, hessian=True)

    # data-driven start: alpha from the mean purchase rate of repeat buyers
    rate = _wsum(w, x) / max(_wsum(w, Ts), 1e-12)
    starts = [
        np.full(4, 0.1),  # lifetimes' default start
        np.log([0.5, max(0.5 / max(rate, 1e-6), 1e-3), 1.0, 3.0]),
        np.zeros(4),
    ]
    rng = np.random.default_rng(random_state)
    while len(starts) < n_starts:
        starts.append(starts[1] + rng.normal(0.0, 1.0, 4))
    starts = starts[:n_starts]
    advice = (
        "Try: a larger penalizer (e.g. 0.001-0.1); checking the time unit of recency and T "
        "(weeks = days / 7; fit on daily periods, not weekly buckets); checking that there are "
        "repeat buyers and that recency <= T."
    )
    # Large data: BFGS on a Poisson-thinned subsample gives a start close to the optimum, then
    # a few Newton steps with the analytic Hessian on the full data (quadratic convergence).
    frac = 1.0
    lp0 = None
    if len(x) > 2 * _BGNBD_START_TUPLES:
        frac = _BGNBD_START_TUPLES / len(x)
        w_sub = np.random.default_rng(random_state).poisson(w * frac).astype(np.float64)
        keep = w_sub > 0
        sub = _BgnbdData(x[keep], txs[keep], Ts[keep], w_sub[keep])
        try:
            lp0, diag = _minimise(
                lambda lp: _bgnbd_objective(lp, sub, penalizer), starts, 1e-7, max_iter, "BG/NBD", advice
            )
        except ClvFitError:
            logger.info("BG/NBD: subsample start failed; fitting the full data")
    if lp0 is None:
        frac = 1.0
        lp0, diag = _minimise(obj, starts, tol, max_iter, "BG/NBD", advice)
    lp, f, g, H, newton = _newton(obj_hess, lp0, tol)
    if not newton["converged"]:
        logger.info("BG/NBD: Newton polish failed (%s); BFGS on the full data", newton["message"])
        frac = 1.0
        lp, diag = _minimise(obj, [lp0, *starts], tol, max_iter, "BG/NBD", advice)
        f, g, H = obj_hess(lp)
        newton = {"iterations": 0, "function_evaluations": 1}
    diag = {
        **diag,
        "iterations": diag["iterations"] + newton["iterations"],
        "function_evaluations": diag["function_evaluations"] + newton["function_evaluations"],
        "newton_iterations": newton["iterations"],
        "start_sample_fraction": frac,
        "max_abs_gradient": float(np.max(np.abs(g))),
    }
    params_scaled = np.exp(lp)
    params = params_scaled.copy()
    params[1] /= scale
    log_params = np.log(params)
    log_cov = _inverse_cov(H, W, "BG/NBD")
    cov = log_cov * np.outer(params, params)
    # total log-likelihood in the original time unit: rescaling time by s adds -sum(w x) log s
    ll_scaled = -(f - penalizer * float(np.sum(params_scaled**2))) * W
    ll = ll_scaled + math.log(scale) * _wsum(w, x)
    return {
        "params": dict(zip(BGNBD_PARAMS, params.tolist(), strict=True)),
        "log_params": log_params.tolist(),
        "log_cov": log_cov.tolist(),
        "cov": cov.tolist(),
        "se": dict(zip(BGNBD_PARAMS, np.sqrt(np.diag(cov)).tolist(), strict=True)),
        "log_likelihood": float(ll),
        "objective": float(f),
        "n": W,
        "n_unique": len(x),
        "time_scale": scale,
        **diag,
    }


def _newton(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    tol: float,
    max_iter: int = 50,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, dict[str, Any]]:
    """Damped Newton minimisation with an analytic Hessian and Armijo backtracking.

    Used to polish a start that is already close to the optimum (a subsample fit or a BFGS
    solution). Converged when ``max |grad| <= tol``, or when the Newton step is at rounding level
    and ``max |grad| < 1e-5`` (the same rule as :func:`_minimise`).

    Returns
    -------
    x, f, grad, hessian : the final point, objective, gradient and Hessian
    info : dict
        ``converged``, ``message``, ``iterations``, ``function_evaluations``.
    """
    x = np.asarray(x0, dtype=float)
    with np.errstate(all="ignore"):
        f, g, H = fun(x)
    nfev = 1
    message = "maximum number of Newton iterations reached"
    converged = False
    it = 0
    for it in range(max_iter + 1):
        if not (np.isfinite(f) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            message = "non-finite objective, gradient or Hessian"
            break
        gmax = float(np.max(np.abs(g)))
        if gmax <= tol:
            converged, message = True, "Newton: gradient below tolerance"
            break
        if it == max_iter:
            break
        eig = np.linalg.eigvalsh(H)
        Hm = H if eig[0] > 1e-12 * abs(eig[-1]) else H + (abs(eig[0]) + 1e-6 * abs(eig[-1])) * np.eye(len(x))
        step = -np.linalg.solve(Hm, g)
        slope = float(g @ step)
        if np.max(np.abs(step)) < 1e-12 and gmax < 1e-5:
            converged, message = True, "Newton: step at rounding level"
            break
        t = 1.0
        while True:
            with np.errstate(all="ignore"):
                f_new, g_new, H_new = fun(x + t * step)
            nfev += 1
            if np.isfinite(f_new) and f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-6:
                break
        if t < 1e-6:
            # no decrease along the Newton direction: at the optimum up to rounding, or lost
            converged = gmax < 1e-5
            message = "Newton: no further decrease" + ("" if converged else " away from the optimum")
            break
        x, f, g, H = x + t * step, f_new, g_new, H_new
    converged = converged and bool(np.all(np.abs(x) < 30))
    info = {"converged": converged, "message": message, "iterations": it, "function_evaluations": nfev}
    return x, float(f), g, H, info


def _inverse_cov(H: np.ndarray, n: float, model: str) -> np.ndarray:
    """Asymptotic covariance of the log-parameters: inverse Hessian of the mean NLL over n."""
    try:
        eig = np.linalg.eigvalsh(H)
        if np.any(eig <= 0):
            logger.warning(
                "%s: the Hessian is not positive definite (eigenvalues %s); standard errors "
                "and intervals are unreliable (a weakly identified parameter: try a penalizer)",
                model,
                np.round(eig, 6),
            )
        return np.linalg.inv(H) / n
    except np.linalg.LinAlgError:
        logger.warning("%s: singular Hessian; covariance set to NaN", model)
        return np.full_like(H, np.nan)


def fit_gamma_gamma(
    frequency: Any,
    monetary_value: Any,
    weights: Any = None,
    *,
    penalizer: float = 0.0,
    tol: float = 1e-9,
    max_iter: int = 1000,
    n_starts: int = 6,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Maximum-likelihood Gamma-Gamma fit (note 025 eq. 1a) on repeat buyers with positive spend.

    Same objective as lifetimes (mean NLL + ``penalizer * (p² + q² + v²)``). Internally the spend
    is divided by its mean so that the optimiser sees ``v`` of order one; the penalty uses the
    unscaled ``v``. Rows must have ``frequency > 0`` and ``monetary_value > 0`` (the caller
    sets the others aside).

    Returns
    -------
    dict
        ``params`` (p, q, v), ``log_cov``, ``cov``, ``se``, ``log_likelihood`` and diagnostics,
        as :func:`fit_bgnbd`.
    """
    x = _as_float(frequency)
    m = _as_float(monetary_value)
    if len(x) == 0:
        raise ClvFitError("Gamma-Gamma: no repeat buyer with positive spend to fit on")
    if np.any(x <= 0) or np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise ValueError("Gamma-Gamma needs frequency > 0 and finite monetary_value > 0 on every row")
    w = np.ones_like(x) if weights is None else _as_float(weights)
    (x, m), inv, _ = _group_rows(x, m)
    w = np.bincount(inv, weights=w, minlength=len(x))
    W = float(w.sum())
    c = _wsum(w, m) / W
    ms = m / c
    ux, xinv = np.unique(x, return_inverse=True)
    wx = np.bincount(xinv, weights=w, minlength=len(ux))
    log_ms = np.log(ms)
    consts = (_wsum(w * x, log_ms), _wsum(w, log_ms))

    def obj(lp: np.ndarray) -> tuple[float, np.ndarray]:
        return _gg_objective(lp, ux, wx, x, ms, w, consts, penalizer, c)

    starts = [np.log([2.0, 3.0, 1.0]), np.full(3, 0.1) - np.array([0, 0, np.log(c)]), np.zeros(3)]
    rng = np.random.default_rng(random_state)
    while len(starts) < n_starts:
        starts.append(starts[0] + rng.normal(0.0, 1.0, 3))
    lp, diag = _minimise(
        obj,
        starts[:n_starts],
        tol,
        max_iter,
        "Gamma-Gamma",
        "Try: a larger penalizer (e.g. 0.001-0.1); checking that monetary_value is the mean of "
        "the repeat purchases (first purchase excluded) in currency units; removing extreme spend.",
    )
    H = _numerical_hessian(lambda z: obj(z)[1], lp)
    params = np.exp(lp)
    params[2] *= c
    log_cov = _inverse_cov(H, W, "Gamma-Gamma")
    cov = log_cov * np.outer(params, params)
    ll = float(np.sum(w * gg_log_likelihood(dict(zip(GG_PARAMS, params, strict=True)), x, m)))
    if params[1] <= 1:
        logger.warning(
            "Gamma-Gamma: q = %.3g <= 1, so the population mean spend v p / (q - 1) is not finite; "
            "expected spend and CLV are meaningless (check for extreme spend or add a penalizer)",
            params[1],
        )
    return {
        "params": dict(zip(GG_PARAMS, params.tolist(), strict=True)),
        "log_params": np.log(params).tolist(),
        "log_cov": log_cov.tolist(),
        "cov": cov.tolist(),
        "se": dict(zip(GG_PARAMS, np.sqrt(np.diag(cov)).tolist(), strict=True)),
        "log_likelihood": ll,
        "objective": float(obj(lp)[0]),
        "n": W,
        "n_unique": len(x),
        "spend_scale": c,
        **diag,
    }


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------


class ClvModel(BaseEstimator):
    """BG/NBD + Gamma-Gamma customer lifetime value with the scikit-learn estimator contract.

    Parameters
    ----------
    time_unit : {"week", "day"}
        Unit of ``recency`` and ``T`` in the summaries given to ``fit`` and ``predict``.
    penalizer : float
        L2 penalty for both fits (lifetimes' ``penalizer_coef`` semantics).
    horizon_months : int
        Default horizon of ``expected_purchases`` and ``predicted_clv``, in months.
    discount_rate_annual : float
        Annual discount rate for CLV (0.10 = 10 % a year).
    interval : float
        Central probability of the prediction intervals (0.9 → 5 % and 95 % quantiles).
    n_bootstrap : int
        Parameter draws for the intervals.
    month_convention : {"exact", "lifetimes"}
        ``"exact"``: a month is 365.25/12 days. ``"lifetimes"``: 30 days / 4.345 weeks, as
        lifetimes' ``customer_lifetime_value`` (equivalence mode; see the module docstring).
    random_state : int, optional
        Seed of the random optimiser restarts and of the bootstrap.
    tol : float
        Optimiser gradient tolerance.
    n_starts : int
        Optimiser starting points tried before giving up.

    Attributes
    ----------
    bgnbd_params_ : dict
        Fitted r, alpha (in ``time_unit``), a, b.
    gg_params_ : dict
        Fitted p, q, v (currency units).
    bgnbd_cov_, gg_cov_ : numpy.ndarray
        Asymptotic covariance of the parameters (delta method from the log-parameters).
    bgnbd_log_cov_, gg_log_cov_ : numpy.ndarray
        Covariance of the log-parameters (inverse Hessian of the NLL), used by the bootstrap.
    diagnostics_ : dict
        Per model: log-likelihood, convergence flag and message, iterations, standard errors,
        sample sizes; plus ``n_nonpositive_spend_set_aside``.
    n_customers_ : int
        Customers in the fit.
    """

    def __init__(
        self,
        time_unit: Literal["week", "day"] = "week",
        penalizer: float = 0.0,
        horizon_months: int = 12,
        discount_rate_annual: float = 0.10,
        interval: float = 0.9,
        n_bootstrap: int = 200,
        month_convention: Literal["exact", "lifetimes"] = "exact",
        random_state: int | None = 0,
        tol: float = 1e-9,
        n_starts: int = 6,
    ) -> None:
        self.time_unit = time_unit
        self.penalizer = penalizer
        self.horizon_months = horizon_months
        self.discount_rate_annual = discount_rate_annual
        self.interval = interval
        self.n_bootstrap = n_bootstrap
        self.month_convention = month_convention
        self.random_state = random_state
        self.tol = tol
        self.n_starts = n_starts

    @classmethod
    def from_config(cls, config: Any, time_unit: Literal["week", "day"] = "week", **kwargs: Any) -> ClvModel:
        """Build from a :class:`crmscore.config.ClvConfig` block (``time_unit`` from the features block)."""
        fields = ("penalizer", "horizon_months", "discount_rate_annual", "interval", "n_bootstrap")
        params = {f: getattr(config, f) for f in fields if hasattr(config, f)}
        for f in ("month_convention", "random_state"):
            if hasattr(config, f):
                params[f] = getattr(config, f)
        params.update(kwargs)
        return cls(time_unit=time_unit, **params)

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, summary: pd.DataFrame, y: Any = None, sample_weight: Any = None) -> ClvModel:
        """Fit BG/NBD on all customers and Gamma-Gamma on repeat buyers with positive spend.

        Parameters
        ----------
        summary : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T`` (in ``time_unit``) and ``monetary_value``,
            one row per customer (or per unique pattern with ``sample_weight``).
        y : None
            Ignored (scikit-learn signature).
        sample_weight : array_like, optional
            Customers per row (integer counts), as lifetimes' ``weights``.

        Returns
        -------
        ClvModel
            self.
        """
        _month_length(self.time_unit, self.month_convention)  # validates both
        x, tx, T, m = _check_summary(summary, need_monetary=True)
        _warn_units(T, self.time_unit)
        w = np.ones(len(x)) if sample_weight is None else _as_float(sample_weight)
        if w.shape != x.shape or np.any(w < 0):
            raise ValueError("sample_weight must be non-negative, one value per row")
        common = {
            "penalizer": self.penalizer,
            "tol": self.tol,
            "n_starts": self.n_starts,
            "random_state": self.random_state,
        }
        bg = fit_bgnbd(x, tx, T, w, **common)
        repeat = x > 0
        bad_spend = repeat & ~(m > 0)
        n_bad = int(w[bad_spend].sum())
        if n_bad:
            logger.warning(
                "Gamma-Gamma: %d repeat buyer(s) with monetary_value <= 0 (refunds/free orders) set "
                "aside from the fit; they get the population mean spend at prediction",
                n_bad,
            )
        keep = repeat & (m > 0)
        gg = fit_gamma_gamma(x[keep], m[keep], w[keep], **common)
        self.bgnbd_params_ = bg["params"]
        self.gg_params_ = gg["params"]
        self.bgnbd_cov_ = np.asarray(bg["cov"])
        self.gg_cov_ = np.asarray(gg["cov"])
        self.bgnbd_log_cov_ = np.asarray(bg["log_cov"])
        self.gg_log_cov_ = np.asarray(gg["log_cov"])
        drop = ("params", "cov", "log_cov", "log_params")
        self.diagnostics_ = {
            "bgnbd": {k: v for k, v in bg.items() if k not in drop},
            "gamma_gamma": {k: v for k, v in gg.items() if k not in drop},
            "n_nonpositive_spend_set_aside": n_bad,
        }
        self.n_customers_ = round(float(w.sum()))
        logger.info(
            "CLV fit on %d customers: BG/NBD %s (LL %.1f), Gamma-Gamma %s (LL %.1f)",
            self.n_customers_,
            _fmt(self.bgnbd_params_),
            bg["log_likelihood"],
            _fmt(self.gg_params_),
            gg["log_likelihood"],
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "bgnbd_params_"):
            raise RuntimeError("ClvModel is not fitted: call fit() or from_json() first")

    # -- point predictions -----------------------------------------------------------------

    def month_length(self) -> float:
        """One month in the model's time unit under ``month_convention``."""
        return _month_length(self.time_unit, self.month_convention)

    def horizon_in_time_units(self, horizon_months: float | None = None) -> float:
        """The horizon converted to the summary's time unit."""
        h = self.horizon_months if horizon_months is None else horizon_months
        return float(h) * self.month_length()

    def conditional_probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(alive | x, t_x, T); see :func:`bgnbd_probability_alive`."""
        self._check_fitted()
        return bgnbd_probability_alive(self.bgnbd_params_, frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> np.ndarray:
        """E[repeat purchases in (T, T + t]]; FHL 2005a eq. (10), ``t`` in ``time_unit``."""
        self._check_fitted()
        return bgnbd_conditional_expected_purchases(self.bgnbd_params_, t, frequency, recency, T)

    def conditional_expected_average_profit(self, frequency: Any, monetary_value: Any) -> np.ndarray:
        """E[spend per transaction]; note 025 eq. (5) (no imputation: the raw formula)."""
        self._check_fitted()
        return gg_conditional_expected_average_profit(self.gg_params_, frequency, monetary_value)

    def expected_average_spend(self, frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
        """Gamma-Gamma expected spend, with the population mean for x > 0 & m <= 0.

        Returns
        -------
        spend, imputed : numpy.ndarray
            The expected spend and the mask of customers given the population mean.
        """
        x, m = _as_float(frequency), _as_float(monetary_value)
        imputed = (x > 0) & ~(m > 0)
        spend = self.conditional_expected_average_profit(np.where(imputed, 0.0, x), np.where(imputed, 0.0, m))
        return spend, imputed

    def customer_lifetime_value(
        self,
        frequency: Any,
        recency: Any,
        T: Any,
        monetary_value: Any,
        horizon_months: int | None = None,
        discount_rate_annual: float | None = None,
    ) -> np.ndarray:
        """Discounted expected value of the next ``horizon_months`` months per customer.

        ``sum_{k=1..H} spend * (E[X(k L)] - E[X((k-1) L)]) * (1 + d) ** (-k / 12)`` with ``L``
        the month length in ``time_unit`` (see the module docstring for both conventions); with
        ``month_convention="lifetimes"`` and ``discount_rate=monthly_discount_rate(d)`` this
        equals lifetimes' ``GammaGammaFitter.customer_lifetime_value``.
        """
        self._check_fitted()
        x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
        spend, _ = self.expected_average_spend(x, monetary_value)
        H = self.horizon_months if horizon_months is None else horizon_months
        d = self.discount_rate_annual if discount_rate_annual is None else discount_rate_annual
        (px, pT), pinv, _ = _group_rows(x, T)
        ds, _ = _discounted_sums(self.bgnbd_params_, px, pT, int(H), self.month_length(), d)
        return spend * self.conditional_probability_alive(x, tx, T) * ds[pinv]

    def predict(self, summary: pd.DataFrame, horizon_months: int | None = None) -> pd.DataFrame:
        """Per-customer P(alive), expected purchases, expected spend and CLV over the horizon.

        Parameters
        ----------
        summary : pandas.DataFrame
            ``frequency``, ``recency``, ``T`` (``time_unit``) and ``monetary_value``.
        horizon_months : int, optional
            Defaults to ``self.horizon_months``.

        Returns
        -------
        pandas.DataFrame
            Same index as ``summary``; columns ``p_alive``, ``expected_purchases`` (repeat
            purchases within the horizon), ``expected_avg_spend``, ``predicted_clv``
            (discounted) and ``spend_imputed``.
        """
        self._check_fitted()
        x, tx, T, m = _check_summary(summary, need_monetary=True)
        H = int(self.horizon_months if horizon_months is None else horizon_months)
        (px, pT), pinv, _ = _group_rows(x, T)
        ds, g_h = _discounted_sums(
            self.bgnbd_params_, px, pT, H, self.month_length(), self.discount_rate_annual
        )
        pa = self.conditional_probability_alive(x, tx, T)
        spend, imputed = self.expected_average_spend(x, m)
        return pd.DataFrame(
            {
                "p_alive": pa,
                "expected_purchases": pa * g_h[pinv],
                "expected_avg_spend": spend,
                "predicted_clv": spend * pa * ds[pinv],
                "spend_imputed": imputed,
            },
            index=summary.index,
        )

    # -- intervals -------------------------------------------------------------------------

    def draw_parameters(self, n_draws: int, random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Parameter vectors from the asymptotic normal of the log-parameters.

        Returns
        -------
        bgnbd, gg : numpy.ndarray
            Arrays of shape (n_draws, 4) and (n_draws, 3) in natural units (always positive).
        """
        self._check_fitted()
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        out = []
        for params, log_cov in (
            (self.bgnbd_params_, self.bgnbd_log_cov_),
            (self.gg_params_, self.gg_log_cov_),
        ):
            mu = np.log(list(params.values()))
            cov = (log_cov + log_cov.T) / 2
            if not np.all(np.isfinite(cov)):
                raise RuntimeError("parameter covariance is not finite: intervals are unavailable")
            # eigen-decomposition tolerates a borderline (near singular) covariance
            vals, vecs = np.linalg.eigh(cov)
            z = rng.standard_normal((n_draws, len(mu)))
            out.append(np.exp(mu + (z * np.sqrt(np.clip(vals, 0, None))) @ vecs.T))
        return out[0], out[1]

    def predict_interval(
        self,
        summary: pd.DataFrame,
        interval: float | None = None,
        n_bootstrap: int | None = None,
        horizon_months: int | None = None,
        random_state: int | None = None,
        chunk_size: int = 4_000,
        n_jobs: int = 2,
    ) -> pd.DataFrame:
        """Parametric-bootstrap prediction intervals for expected purchases and CLV.

        Draws ``n_bootstrap`` parameter vectors of each model from the asymptotic normal of the
        log-parameters (:meth:`draw_parameters`; log space keeps them positive), recomputes the
        per-customer predictions and takes the ``(1 - interval) / 2`` and ``(1 + interval) / 2``
        quantiles. These intervals cover *parameter* uncertainty of the expectations, not the
        Poisson noise of a single customer's future purchases.

        Cost: the ``hyp2f1`` part runs on unique ``(x, T)`` pairs only
        (``n_bootstrap * (horizon_months + 1) * n_pairs`` calls, ~0.2 µs each); the rest is
        ``O(n_bootstrap * n_rows)`` elementwise work on unique ``(x, t_x, T, m)`` rows, chunked
        to bound memory (``chunk_size * n_bootstrap`` floats; 4,000 x 200 keeps each temporary
        in cache: 18 s of CPU at 1M rows against 22.5 s with 20,000), ``n_jobs`` chunks at a time in
        threads (the results do not depend on ``n_jobs``); the quantiles come from one sort per
        block (:func:`_quantiles`, the values of ``np.quantile`` at a seventh of its cost).
        Measured at one million customers, ``n_bootstrap=200``, 12-month horizon: 5.7-6.3 s
        with two threads on a quiet two-core host, with the point predictions.

        Returns
        -------
        pandas.DataFrame
            Same index as ``summary``; ``expected_purchases_lower/upper`` and
            ``predicted_clv_lower/upper``.
        """
        self._check_fitted()
        x, tx, T, m = _check_summary(summary, need_monetary=True)
        level = self.interval if interval is None else interval
        B = int(self.n_bootstrap if n_bootstrap is None else n_bootstrap)
        H = int(self.horizon_months if horizon_months is None else horizon_months)
        if not 0 < level < 1:
            raise ValueError("interval must be in (0, 1)")
        qs = np.array([(1 - level) / 2, (1 + level) / 2])
        bg_draws, gg_draws = self.draw_parameters(B, random_state)
        imputed = (x > 0) & ~(m > 0)
        m = np.where(imputed, 0.0, m)
        xs = np.where(imputed, 0.0, x)  # spend as if no repeat (population mean)
        (ux, utx, uT, um, uxs), inv, _ = _group_rows(x, tx, T, m, xs)
        (px, pT), pinv, _ = _group_rows(ux, uT)
        L = self.month_length()
        ds = np.empty((B, len(px)))
        gh = np.empty((B, len(px)))

        def draw(i: int) -> None:
            prm = dict(zip(BGNBD_PARAMS, bg_draws[i], strict=True))
            ds[i], gh[i] = _discounted_sums(prm, px, pT, H, L, self.discount_rate_annual)

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
        res = out[:, inv]
        return pd.DataFrame(
            {
                "expected_purchases_lower": res[0],
                "expected_purchases_upper": res[1],
                "predicted_clv_lower": res[2],
                "predicted_clv_upper": res[3],
            },
            index=summary.index,
        )

    # -- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-data representation (JSON-safe): params, covariances, diagnostics, units, versions."""
        self._check_fitted()
        return {
            "format": _FORMAT,
            "init_params": self.get_params(),
            "units": {
                "time_unit": self.time_unit,
                "days_per_time_unit": DAYS_PER_UNIT[self.time_unit],
                "month_convention": self.month_convention,
                "month_length_in_time_units": self.month_length(),
                "horizon_months": self.horizon_months,
                "discount_rate_annual": self.discount_rate_annual,
                "alpha": f"{self.time_unit}s",
                "v": "currency of monetary_value",
            },
            "bgnbd": {
                "params": dict(self.bgnbd_params_),
                "cov": self.bgnbd_cov_.tolist(),
                "log_cov": self.bgnbd_log_cov_.tolist(),
            },
            "gamma_gamma": {
                "params": dict(self.gg_params_),
                "cov": self.gg_cov_.tolist(),
                "log_cov": self.gg_log_cov_.tolist(),
            },
            "diagnostics": self.diagnostics_,
            "n_customers": self.n_customers_,
            "versions": package_versions(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClvModel:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        if data.get("format") != _FORMAT:
            raise ValueError(
                f"not a crmscore CLV model (format {data.get('format')!r}, expected {_FORMAT!r})"
            )
        model = cls(**data["init_params"])
        model.bgnbd_params_ = {k: float(data["bgnbd"]["params"][k]) for k in BGNBD_PARAMS}
        model.gg_params_ = {k: float(data["gamma_gamma"]["params"][k]) for k in GG_PARAMS}
        model.bgnbd_cov_ = np.asarray(data["bgnbd"]["cov"], dtype=float)
        model.gg_cov_ = np.asarray(data["gamma_gamma"]["cov"], dtype=float)
        model.bgnbd_log_cov_ = np.asarray(data["bgnbd"]["log_cov"], dtype=float)
        model.gg_log_cov_ = np.asarray(data["gamma_gamma"]["log_cov"], dtype=float)
        model.diagnostics_ = data["diagnostics"]
        model.n_customers_ = int(data["n_customers"])
        return model

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (floats round-trip exactly); returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True), encoding="utf-8")
        return p

    @classmethod
    def from_json(cls, path: str | Path) -> ClvModel:
        """Load a model written by :meth:`to_json` (no pickle involved)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _quantiles(a: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """``np.quantile(a, qs, axis=0)`` (method ``"linear"``), bit for bit, through one sort.

    ``np.quantile`` partitions along the strided axis 0 of a ``(n_draws, n_rows)`` block,
    about 7x slower than sorting it (3.2 s against 0.44 s for 1M rows x 200 draws). The
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


def _discounted_sums(
    params: Mapping[str, float],
    x: np.ndarray,
    T: np.ndarray,
    horizon_months: int,
    month_length: float,
    discount_rate_annual: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (x, T): discounted sum of monthly increments of G, and G at the horizon.

    Multiplied by P(alive) and the spend they give CLV and expected purchases.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    prev = np.zeros_like(T)
    total = np.zeros_like(T)
    for k in range(1, horizon_months + 1):
        cur = _g_term(r, alpha, a, b, x, T, k * month_length)
        total += (cur - prev) / (1.0 + discount_rate_annual) ** (k / 12.0)
        prev = cur
    return total, prev


def _check_summary(summary: pd.DataFrame, need_monetary: bool) -> tuple[np.ndarray, ...]:
    """Validate a BTYD summary (lifetimes' ``_check_inputs`` rules) and return its columns."""
    cols = ["frequency", "recency", "T"] + (["monetary_value"] if need_monetary else [])
    missing = [c for c in cols if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing}; expected {cols}")
    arrs = [summary[c].to_numpy(dtype=float, na_value=np.nan) for c in cols]
    x, tx, T = arrs[:3]
    if len(x) == 0:
        raise ValueError("summary is empty")
    for name, arr in zip(cols, arrs, strict=True):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"summary column {name!r} has missing or infinite values")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be a non-negative integer")
    if np.any(tx < 0):
        raise ValueError("recency must be >= 0")
    if np.any(tx > T):
        raise ValueError("recency > T for some customers (check the cutoff and the units)")
    if np.any(tx[x == 0] != 0):
        raise ValueError("recency must be 0 when frequency is 0")
    return tuple(arrs)


def _warn_units(T: np.ndarray, time_unit: str) -> None:
    """Log a warning when T's range suggests the wrong time unit."""
    t_max = float(T.max())
    if time_unit == "week" and t_max > 1200:
        logger.warning("max T is %.0f with time_unit='week' (23 years): is T in days?", t_max)
    elif time_unit == "day" and 0 < t_max < 60:
        logger.warning("max T is %.1f with time_unit='day': is T in weeks?", t_max)


def _fmt(d: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in d.items())


# --------------------------------------------------------------------------------------------
# lifetimes as reference implementation
# --------------------------------------------------------------------------------------------


def to_lifetimes(model: ClvModel) -> tuple[Any, Any]:
    """lifetimes' ``BetaGeoFitter`` and ``GammaGammaFitter`` carrying ``model``'s parameters.

    For cross-checks (tests, benchmarks, notebooks): the fitters predict with lifetimes' own
    code. CLV equivalence: ``gg.customer_lifetime_value(bgf, ..., time=H,
    discount_rate=monthly_discount_rate(d), freq={"day": "D", "week": "W"}[time_unit])`` equals
    ``model.customer_lifetime_value`` when ``model.month_convention == "lifetimes"``.
    """
    model._check_fitted()
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bgf = BetaGeoFitter(penalizer_coef=model.penalizer)
    bgf.params_ = pd.Series(model.bgnbd_params_, dtype=float)[list(BGNBD_PARAMS)]
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    ggf = GammaGammaFitter(penalizer_coef=model.penalizer)
    ggf.params_ = pd.Series(model.gg_params_, dtype=float)[list(GG_PARAMS)]
    return bgf, ggf


def lifetimes_freq(time_unit: str) -> str:
    """lifetimes' ``freq`` code for a time unit (``"day"`` → ``"D"``, ``"week"`` → ``"W"``)."""
    return _LIFETIMES_FREQ[time_unit]


def load_cdnow_sample() -> pd.DataFrame:
    """lifetimes' bundled CDNOW sample transactions (2,357 customers, 1997-01 to 1998-06).

    Read through ``importlib.resources`` (``lifetimes.datasets`` needs ``pkg_resources``).

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (str), ``date`` (naive datetime64), ``n_items``, ``amount``.
    """
    from importlib.resources import files

    path = files("lifetimes") / "datasets" / "CDNOW_sample.txt"
    with path.open("r") as fh:
        df = pd.read_csv(
            fh,
            sep=r"\s+",
            header=None,
            names=["customer_index", "customer_id", "date", "n_items", "amount"],
            dtype={"customer_index": str, "customer_id": str, "date": str},
        )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df.drop(columns="customer_index")
