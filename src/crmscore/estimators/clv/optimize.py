"""Maximum-likelihood fits of BG/NBD and Gamma-Gamma: objectives, BFGS and Newton, covariances.

The objectives are lifetimes': the weighted *mean* negative log-likelihood (FHL 2005a eq. 6;
note 025 eq. 1a) plus an L2 penalty, in log-parameters, with analytic gradients (and, for
BG/NBD, the analytic Hessian). The closed forms themselves are in :mod:`.bgnbd` and
:mod:`.gamma_gamma`.

Speed
-----
Fitting collapses customers to unique ``(frequency, recency, T)`` tuples with counts as weights
(same optimum as the unweighted fit: the objective is the *mean* negative log-likelihood, as in
lifetimes) and uses analytic gradients. BG/NBD on large data (over 100,000 unique tuples) starts
from a BFGS fit on a Poisson-thinned subsample of about 50,000 tuples and finishes with damped
Newton steps on all tuples using the analytic Hessian (two or three steps; the same Hessian
gives the standard errors), instead of ~60 full-data BFGS evaluations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, polygamma

from crmscore.estimators.clv.bgnbd import BGNBD_PARAMS, _as_float
from crmscore.estimators.clv.gamma_gamma import GG_PARAMS, gg_log_likelihood

__all__ = ["ClvFitError", "fit_bgnbd", "fit_gamma_gamma"]

logger = logging.getLogger(__name__)

#: Above twice this many unique (x, t_x, T) tuples, BG/NBD starts from a fit on a subsample of
#: about this many tuples and finishes with Newton steps on the full data.
_BGNBD_START_TUPLES = 50_000


class ClvFitError(RuntimeError):
    """The BG/NBD or Gamma-Gamma optimiser failed from every starting point."""


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
            res = minimize(objective, x0, jac=True, method="BFGS", options={"gtol": tol, "maxiter": max_iter})
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
