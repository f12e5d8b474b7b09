"""The likelihood objectives of BG/NBD and Gamma-Gamma, with analytic derivatives.

The objectives are lifetimes': the weighted *mean* negative log-likelihood (FHL 2005a eq. 6;
note 025 eq. 1a) plus an L2 penalty, in log-parameters, with analytic gradients (and, for
BG/NBD, the analytic Hessian). The closed forms themselves are in :mod:`.bgnbd` and
:mod:`.gamma_gamma`; the fits that minimise these objectives are in :mod:`.optimize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, polygamma

__all__: list[str] = []


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
    g = np.empty(4)
    H = np.zeros((4, 4)) if hessian else None
    ll = _bgnbd_frequency_terms(params, d, g, H)
    ll_T, lT, iT = _bgnbd_age_terms(params, d, g, H)
    ll -= ll_T
    if len(d.x):
        ll += _bgnbd_repeat_terms(params, d, lT, iT, g, H)
    return _bgnbd_penalised(ll, g, H, params, d.W, penalizer)


def _bgnbd_frequency_terms(params: np.ndarray, d: _BgnbdData, g: np.ndarray, H: np.ndarray | None) -> float:
    """``A1 + A2`` of the log-likelihood, summed over unique x; derivatives written into g, H.

    Parameters
    ----------
    params : ndarray
        Natural parameters ``(r, alpha, a, b)``.
    d : _BgnbdData
        Pre-aggregated data.
    g : ndarray
        Gradient in natural parameters (length 4); every element is set here.
    H : ndarray or None
        Upper triangle of the Hessian in natural parameters (4 x 4, zeros on entry), or
        ``None`` when no Hessian is wanted.

    Returns
    -------
    float
        The weighted sum of ``A1 + A2``.
    """
    r, al, a, b = params
    ux, wx = d.ux, d.wx
    A12 = (
        gammaln(r + ux)
        - gammaln(r)
        + r * np.log(al)
        + gammaln(a + b)
        + gammaln(b + ux)
        - gammaln(b)
        - gammaln(a + b + ux)
    )
    g[0] = _wsum(wx, digamma(r + ux) - digamma(r)) + d.W * np.log(al)
    g[1] = d.W * r / al
    g[2] = _wsum(wx, digamma(a + b) - digamma(a + b + ux))
    g[3] = _wsum(wx, digamma(a + b) + digamma(b + ux) - digamma(b) - digamma(a + b + ux))
    if H is not None:
        H[0, 0] = _wsum(wx, polygamma(1, r + ux) - polygamma(1, r))
        H[0, 1] = d.W / al
        H[1, 1] = -d.W * r / al**2
        t_ab = _wsum(wx, polygamma(1, a + b) - polygamma(1, a + b + ux))
        H[2, 2] = t_ab
        H[2, 3] = t_ab
        H[3, 3] = _wsum(
            wx, polygamma(1, a + b) + polygamma(1, b + ux) - polygamma(1, b) - polygamma(1, a + b + ux)
        )
    return _wsum(wx, A12)


def _bgnbd_age_terms(
    params: np.ndarray, d: _BgnbdData, g: np.ndarray, H: np.ndarray | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(r + x) log(alpha + T)`` summed over unique T; its derivatives subtracted from g, H.

    Parameters
    ----------
    params, d, g, H
        As in :func:`_bgnbd_frequency_terms` (``g`` and ``H`` already hold the ``A1 + A2`` terms).

    Returns
    -------
    ll_T : float
        The weighted sum, to be *subtracted* from the log-likelihood.
    lT, iT : ndarray
        ``log(alpha + T)`` and ``1 / (alpha + T)`` on the unique T (reused by the softplus block).
    """
    r, al = params[0], params[1]
    lT = np.log(al + d.uT)
    iT = 1.0 / (al + d.uT)
    sWT_iT = _wsum(d.WT, iT)
    ll_T = r * _wsum(d.WT, lT) + _wsum(d.XT, lT)
    g[0] -= _wsum(d.WT, lT)
    g[1] -= r * sWT_iT + _wsum(d.XT, iT)
    if H is not None:
        H[0, 1] -= sWT_iT
        H[1, 1] += _wsum(r * d.WT + d.XT, iT * iT)
    return ll_T, lT, iT


def _bgnbd_repeat_terms(
    params: np.ndarray,
    d: _BgnbdData,
    lT: np.ndarray,
    iT: np.ndarray,
    g: np.ndarray,
    H: np.ndarray | None,
) -> float:
    """``softplus(A4 - A3)`` over the repeat-buyer tuples; its derivatives added to g, H.

    Parameters
    ----------
    params, d, g, H
        As in :func:`_bgnbd_frequency_terms` (``g`` and ``H`` already hold the other blocks).
    lT, iT : ndarray
        ``log(alpha + T)`` and ``1 / (alpha + T)`` on the unique T (from :func:`_bgnbd_age_terms`).

    Returns
    -------
    float
        The weighted sum of ``softplus(z)``.
    """
    r, al, a, b = params
    ltx = np.log(al + d.utx)
    itx = 1.0 / (al + d.utx)
    bx1 = b + np.maximum(d.ux, 1) - 1  # x = 0 rows are not in this block
    inv_bx1 = (1.0 / bx1)[d.xinv]
    rx = r + d.x
    dl = lT[d.Tinv] - ltx[d.txinv]
    z = (np.log(a) - np.log(bx1))[d.xinv] + rx * dl
    # softplus(z) and sigmoid(z) from one exp: e = exp(-|z|)
    e = np.exp(-np.abs(z))
    ll = _wsum(d.w, np.maximum(z, 0.0) + np.log1p(e))
    s4 = np.where(z >= 0, 1.0, e) / (1.0 + e) * d.w
    di = iT[d.Tinv] - itx[d.txinv]
    z_al = rx * di
    g[0] += _wsum(s4, dl)
    g[1] += _wsum(s4, z_al)
    sw4 = float(s4.sum())
    g[2] += sw4 / a
    g[3] -= _wsum(s4, inv_bx1)
    if H is None:
        return ll
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
    return ll


def _bgnbd_penalised(
    ll: float, g: np.ndarray, H: np.ndarray | None, params: np.ndarray, W: float, penalizer: float
) -> tuple[Any, ...]:
    """Mean negative log-likelihood plus L2 penalty, with derivatives chained to log-parameters.

    Parameters
    ----------
    ll : float
        Total weighted log-likelihood.
    g : ndarray
        Its gradient in natural parameters.
    H : ndarray or None
        Upper triangle of its Hessian in natural parameters, or ``None``.
    params : ndarray
        Natural parameters ``(r, alpha, a, b)``.
    W : float
        Total weight (number of customers).
    penalizer : float
        L2 penalty coefficient.

    Returns
    -------
    tuple
        ``(f, grad)`` or, with ``H``, ``(f, grad, hessian)``, all in log-parameters.
    """
    pen = penalizer * np.sum(params**2)
    f = -ll / W + pen
    gnat = -g / W + 2 * penalizer * params
    grad = gnat * params
    if H is None:
        return float(f), grad
    H = np.triu(H) + np.triu(H, 1).T
    Hnat = -H / W + 2 * penalizer * np.eye(4)
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
