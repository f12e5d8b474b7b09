"""BG/NBD closed forms: likelihood, P(alive) and expected purchases (pure numpy/scipy).

BG/NBD (Fader, Hardie & Lee 2005a, "Counting Your Customers the Easy Way", *Marketing
Science* 24(2)): while alive a customer buys as a Poisson process with rate
``lambda ~ Gamma(r, alpha)``; after each purchase she dies with probability
``p ~ Beta(a, b)``. It is fitted on *all* customers, one-time buyers (``frequency == 0``)
included, from the sufficient statistics ``frequency`` (x, repeat purchase periods),
``recency`` (t_x) and ``T`` (age), all in the summary's time unit (``alpha`` is in that unit).

Predictions use the factorisation ``E[X(t) | x, t_x, T] = P(alive | x, t_x, T) * G(t | x, T)``
(:func:`_p_alive`, :func:`_g_term`) where ``G`` (the hypergeometric part, the only costly term)
depends on ``(x, T)`` only, so callers evaluate ``hyp2f1`` on unique ``(x, T)`` pairs (typically
a few thousand, whatever the number of customers); :func:`_discounted_sums` gives the monthly
discounted increments of ``G`` that make CLV. The fit is in :mod:`.optimize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, hyp2f1

__all__ = [
    "BGNBD_PARAMS",
    "bgnbd_conditional_expected_purchases",
    "bgnbd_expected_purchases",
    "bgnbd_log_likelihood",
    "bgnbd_probability_alive",
]

#: Parameter names, in the literature's order.
BGNBD_PARAMS: tuple[str, ...] = ("r", "alpha", "a", "b")


def _as_float(a: Any) -> np.ndarray:
    """A float array from array_like input (NaN for missing pandas values)."""
    # pandas objects through ``to_numpy``: ``np.asarray(series)`` probes attributes through
    # ``Series.__getattr__``, which hashes a string index (slow on millions of rows)
    if isinstance(a, (pd.Series, pd.Index)):
        return a.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(a, dtype=float)


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

    Parameters
    ----------
    params : mapping
        ``r``, ``alpha``, ``a``, ``b``.
    frequency, recency, T : array_like
        x, t_x and T.

    Returns
    -------
    numpy.ndarray
        P(alive) per customer.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
    return _p_alive(r, alpha, a, b, x, tx, T)


def _p_alive(r: Any, alpha: Any, a: Any, b: Any, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive) of note 021 eq. (2) from broadcastable parameters (scalars or draw columns)."""
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

    Parameters
    ----------
    params : mapping
        ``r``, ``alpha``, ``a``, ``b``.
    t : array_like
        Length of the future period, in the time unit of ``T``.
    frequency, recency, T : array_like
        x, t_x and T.

    Returns
    -------
    numpy.ndarray
        ``E[X(t) | x, t_x, T]`` per customer.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    x, tx, T = _as_float(frequency), _as_float(recency), _as_float(T)
    return _p_alive(r, alpha, a, b, x, tx, T) * _g_term(r, alpha, a, b, x, T, t)


def bgnbd_expected_purchases(params: Mapping[str, float], t: Any) -> np.ndarray:
    """Unconditional expected repeat purchases in ``(0, t]`` for a new customer: FHL 2005a eq. (9).

    Parameters
    ----------
    params : mapping
        ``r``, ``alpha``, ``a``, ``b``.
    t : array_like
        Time since the first purchase.

    Returns
    -------
    numpy.ndarray
        ``E[X(t)]``, same shape as ``t``.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    t = _as_float(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        hyp = hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - hyp * (alpha / (alpha + t)) ** r)


def _discounted_sums(
    params: Mapping[str, float],
    x: np.ndarray,
    T: np.ndarray,
    horizon_months: int,
    month_length: float,
    discount_rate_annual: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (x, T): discounted sum of monthly increments of G, and G at the horizon.

    ``sum_{k=1..H} (G(k L) - G((k-1) L)) * (1 + d) ** (-k / 12)`` with ``L`` the month length
    in model units. Multiplied by P(alive) and the spend they give CLV and expected purchases.
    """
    r, alpha, a, b = (float(params[k]) for k in BGNBD_PARAMS)
    prev = np.zeros_like(T)
    total = np.zeros_like(T)
    for k in range(1, horizon_months + 1):
        cur = _g_term(r, alpha, a, b, x, T, k * month_length)
        total += (cur - prev) / (1.0 + discount_rate_annual) ** (k / 12.0)
        prev = cur
    return total, prev
