"""Maximum-likelihood fits of BG/NBD and Gamma-Gamma: BFGS and Newton, starts, covariances.

The objectives (lifetimes' weighted mean negative log-likelihood plus an L2 penalty, with
analytic derivatives) are in :mod:`.likelihood`; the closed forms in :mod:`.bgnbd` and
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
from scipy.optimize import minimize

from crmscore.estimators.clv.bgnbd import BGNBD_PARAMS, _as_float
from crmscore.estimators.clv.gamma_gamma import GG_PARAMS, gg_log_likelihood
from crmscore.estimators.clv.likelihood import (
    _bgnbd_objective,
    _BgnbdData,
    _gg_objective,
    _group_rows,
    _numerical_hessian,
    _wsum,
)

__all__ = ["ClvFitError", "fit_bgnbd", "fit_gamma_gamma"]

logger = logging.getLogger(__name__)

#: Above twice this many unique (x, t_x, T) tuples, BG/NBD starts from a fit on a subsample of
#: about this many tuples and finishes with Newton steps on the full data.
_BGNBD_START_TUPLES = 50_000


class ClvFitError(RuntimeError):
    """The BG/NBD or Gamma-Gamma optimiser failed from every starting point."""


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


def _collapse_tuples(cols: tuple[np.ndarray, ...], weights: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of aligned columns with their summed weights.

    Parameters
    ----------
    cols : tuple of ndarray
        Aligned float columns.
    weights : array_like or None
        Weight per row (``None``: ones).

    Returns
    -------
    unique : list of ndarray
        The columns on the unique rows (first-occurrence order, as :func:`_group_rows`).
    w : ndarray
        Summed weight per unique row.
    """
    w = np.ones_like(cols[0]) if weights is None else _as_float(weights)
    uniq, inv, _ = _group_rows(*cols)
    return uniq, np.bincount(inv, weights=w, minlength=len(uniq[0]))


def _fit_summary(names: tuple[str, ...], params: np.ndarray, H: np.ndarray, n: float, model: str) -> dict:
    """Parameters, log-parameters and their covariances from the Hessian at the optimum.

    Parameters
    ----------
    names : tuple of str
        Parameter names, in the order of ``params``.
    params : ndarray
        Fitted parameters in natural units.
    H : ndarray
        Hessian of the mean objective in log-parameters.
    n : float
        Number of customers (total weight).
    model : str
        Model name for the warnings of :func:`_inverse_cov`.

    Returns
    -------
    dict
        ``params``, ``log_params``, ``log_cov``, ``cov`` (delta method) and ``se``.
    """
    log_params = np.log(params)
    log_cov = _inverse_cov(H, n, model)
    cov = log_cov * np.outer(params, params)
    return {
        "params": dict(zip(names, params.tolist(), strict=True)),
        "log_params": log_params.tolist(),
        "log_cov": log_cov.tolist(),
        "cov": cov.tolist(),
        "se": dict(zip(names, np.sqrt(np.diag(cov)).tolist(), strict=True)),
    }


_BGNBD_ADVICE = (
    "Try: a larger penalizer (e.g. 0.001-0.1); checking the time unit of recency and T "
    "(weeks = days / 7; fit on daily periods, not weekly buckets); checking that there are "
    "repeat buyers and that recency <= T."
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
    (x, tx, T), w = _collapse_tuples((_as_float(frequency), _as_float(recency), _as_float(T)), weights)
    scale = 1.0 / T.max()
    Ts = T * scale
    txs = tx * scale
    data = _BgnbdData(x, txs, Ts, w)
    starts = _bgnbd_starts(x, Ts, w, n_starts, random_state)
    lp0, diag, frac = _bgnbd_start(data, (x, txs, Ts, w), starts, penalizer, tol, max_iter, random_state)
    lp, f, H, diag = _bgnbd_polish(data, lp0, diag, frac, starts, penalizer, tol, max_iter)
    params_scaled = np.exp(lp)
    params = params_scaled.copy()
    params[1] /= scale
    summary = _fit_summary(BGNBD_PARAMS, params, H, data.W, "BG/NBD")
    # total log-likelihood in the original time unit: rescaling time by s adds -sum(w x) log s
    ll_scaled = -(f - penalizer * float(np.sum(params_scaled**2))) * data.W
    ll = ll_scaled + math.log(scale) * _wsum(w, x)
    return {
        **summary,
        "log_likelihood": float(ll),
        "objective": float(f),
        "n": data.W,
        "n_unique": len(x),
        "time_scale": scale,
        **diag,
    }


def _bgnbd_starts(
    x: np.ndarray, Ts: np.ndarray, w: np.ndarray, n_starts: int, random_state: int | None
) -> list[np.ndarray]:
    """Starting log-parameters of the BG/NBD fit: three fixed ones, then random perturbations.

    Parameters
    ----------
    x, Ts, w : ndarray
        Unique frequencies, rescaled ages and their weights.
    n_starts : int
        Number of starts returned.
    random_state : int, optional
        Seed of the perturbations of the data-driven start.

    Returns
    -------
    list of ndarray
        Log-parameters ``(r, alpha, a, b)``: lifetimes' default, a data-driven start, zeros,
        then the data-driven start plus standard normal noise.
    """
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
    return starts[:n_starts]


def _bgnbd_start(
    data: _BgnbdData,
    tuples: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    starts: list[np.ndarray],
    penalizer: float,
    tol: float,
    max_iter: int,
    random_state: int | None,
) -> tuple[np.ndarray, dict[str, Any], float]:
    """BFGS fit that starts the Newton polish: on a subsample for large data, else on all data.

    Large data (over ``2 * _BGNBD_START_TUPLES`` tuples): BFGS on a Poisson-thinned subsample
    gives a start close to the optimum; if that fails, BFGS on all tuples.

    Parameters
    ----------
    data : _BgnbdData
        All tuples, pre-aggregated.
    tuples : tuple of ndarray
        The unique ``(x, t_x, T)`` (time rescaled) and weights behind ``data``.
    starts : list of ndarray
        Starting log-parameters.
    penalizer, tol, max_iter, random_state
        As in :func:`fit_bgnbd` (the subsample fit uses ``tol = 1e-7``).

    Returns
    -------
    log_params : ndarray
        The BFGS solution.
    diag : dict
        Diagnostics of :func:`_minimise`.
    fraction : float
        Subsampling fraction of the fit (1.0 on all data).

    Raises
    ------
    ClvFitError
        BFGS on all tuples failed from every start.
    """
    x, txs, Ts, w = tuples
    if len(x) > 2 * _BGNBD_START_TUPLES:
        frac = _BGNBD_START_TUPLES / len(x)
        w_sub = np.random.default_rng(random_state).poisson(w * frac).astype(np.float64)
        keep = w_sub > 0
        sub = _BgnbdData(x[keep], txs[keep], Ts[keep], w_sub[keep])
        try:
            lp0, diag = _minimise(
                lambda lp: _bgnbd_objective(lp, sub, penalizer),
                starts,
                1e-7,
                max_iter,
                "BG/NBD",
                _BGNBD_ADVICE,
            )
            return lp0, diag, frac
        except ClvFitError:
            logger.info("BG/NBD: subsample start failed; fitting the full data")
    lp0, diag = _minimise(
        lambda lp: _bgnbd_objective(lp, data, penalizer), starts, tol, max_iter, "BG/NBD", _BGNBD_ADVICE
    )
    return lp0, diag, 1.0


def _bgnbd_polish(
    data: _BgnbdData,
    lp0: np.ndarray,
    diag: dict[str, Any],
    frac: float,
    starts: list[np.ndarray],
    penalizer: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, np.ndarray, dict[str, Any]]:
    """Newton steps on all tuples from the BFGS start; BFGS on all tuples if Newton fails.

    Parameters
    ----------
    data : _BgnbdData
        All tuples, pre-aggregated.
    lp0 : ndarray
        Start (from :func:`_bgnbd_start`).
    diag : dict
        Diagnostics of the start fit.
    frac : float
        Subsampling fraction of the start fit.
    starts : list of ndarray
        Further starts for the BFGS fallback (after ``lp0``).
    penalizer, tol, max_iter
        As in :func:`fit_bgnbd`.

    Returns
    -------
    log_params : ndarray
        The optimum.
    f : float
        Objective at the optimum.
    hessian : ndarray
        Analytic Hessian in log-parameters at the optimum.
    diag : dict
        Combined diagnostics (BFGS plus Newton iterations and evaluations,
        ``newton_iterations``, ``start_sample_fraction``, ``max_abs_gradient``).
    """

    def obj_hess(lp: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return _bgnbd_objective(lp, data, penalizer, hessian=True)

    lp, f, g, H, newton = _newton(obj_hess, lp0, tol)
    if not newton["converged"]:
        logger.info("BG/NBD: Newton polish failed (%s); BFGS on the full data", newton["message"])
        frac = 1.0
        lp, diag = _minimise(
            lambda z: _bgnbd_objective(z, data, penalizer),
            [lp0, *starts],
            tol,
            max_iter,
            "BG/NBD",
            _BGNBD_ADVICE,
        )
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
    return lp, f, H, diag


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


_GG_ADVICE = (
    "Try: a larger penalizer (e.g. 0.001-0.1); checking that monetary_value is the mean of "
    "the repeat purchases (first purchase excluded) in currency units; removing extreme spend."
)


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
    (x, m), w = _collapse_tuples((x, m), weights)
    W = float(w.sum())
    c = _wsum(w, m) / W
    obj = _gg_scaled_objective(x, m / c, w, penalizer, c)
    starts = _gg_starts(c, n_starts, random_state)
    lp, diag = _minimise(obj, starts, tol, max_iter, "Gamma-Gamma", _GG_ADVICE)
    H = _numerical_hessian(lambda z: obj(z)[1], lp)
    params = np.exp(lp)
    params[2] *= c
    summary = _fit_summary(GG_PARAMS, params, H, W, "Gamma-Gamma")
    ll = float(np.sum(w * gg_log_likelihood(dict(zip(GG_PARAMS, params, strict=True)), x, m)))
    if params[1] <= 1:
        logger.warning(
            "Gamma-Gamma: q = %.3g <= 1, so the population mean spend v p / (q - 1) is not finite; "
            "expected spend and CLV are meaningless (check for extreme spend or add a penalizer)",
            params[1],
        )
    return {
        **summary,
        "log_likelihood": ll,
        "objective": float(obj(lp)[0]),
        "n": W,
        "n_unique": len(x),
        "spend_scale": c,
        **diag,
    }


def _gg_scaled_objective(
    x: np.ndarray, ms: np.ndarray, w: np.ndarray, penalizer: float, scale: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """:func:`_gg_objective` on unique ``(x, m / scale)`` tuples, as a function of log-parameters.

    Parameters
    ----------
    x, ms, w : ndarray
        Unique frequencies, spends divided by ``scale``, and their weights.
    penalizer : float
        L2 penalty coefficient (on the unscaled parameters).
    scale : float
        Spend scale (the weighted mean spend).

    Returns
    -------
    callable
        ``log_params -> (objective, gradient)``.
    """
    ux, xinv = np.unique(x, return_inverse=True)
    wx = np.bincount(xinv, weights=w, minlength=len(ux))
    log_ms = np.log(ms)
    consts = (_wsum(w * x, log_ms), _wsum(w, log_ms))

    def obj(lp: np.ndarray) -> tuple[float, np.ndarray]:
        return _gg_objective(lp, ux, wx, x, ms, w, consts, penalizer, scale)

    return obj


def _gg_starts(scale: float, n_starts: int, random_state: int | None) -> list[np.ndarray]:
    """Starting log-parameters ``(p, q, v / scale)`` of the Gamma-Gamma fit.

    Parameters
    ----------
    scale : float
        Spend scale (the weighted mean spend).
    n_starts : int
        Number of starts returned.
    random_state : int, optional
        Seed of the perturbations of the first start.

    Returns
    -------
    list of ndarray
        ``(2, 3, 1)``, lifetimes' default start (in scaled units), zeros, then the first start
        plus standard normal noise.
    """
    starts = [np.log([2.0, 3.0, 1.0]), np.full(3, 0.1) - np.array([0, 0, np.log(scale)]), np.zeros(3)]
    rng = np.random.default_rng(random_state)
    while len(starts) < n_starts:
        starts.append(starts[0] + rng.normal(0.0, 1.0, 3))
    return starts[:n_starts]
