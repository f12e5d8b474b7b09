"""Contractual lifetime value: the shifted-beta-geometric (sBG) model, :class:`SbgModel`.

sBG (Fader & Hardie 2007, "How to project customer retention", *Journal of Interactive
Marketing* 21(1)): at the end of each period an active customer churns with her own probability
``theta``, and ``theta ~ Beta(alpha, beta)`` across customers. With ``T`` the period at whose end
the customer churns (``T = 1, 2, ...``)::

    P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta)
    S(t)     = P(T > t) = B(alpha, beta + t) / B(alpha, beta)
    r(t)     = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1)

Data and censoring
------------------
One row per customer: ``tenure`` t (whole periods, ``t >= 1``) and ``churned``:

* ``churned=True``: churned at the end of period t (``T = t``), contributes ``log P(T = t)``;
* ``churned=False``: still active after t periods (``T > t``, right-censored), contributes
  ``log S(t)``.

A customer who is *in* her t-th period and has not yet reached its renewal decision has
survived only ``t - 1`` decisions: pass ``tenure = t - 1`` for her (or count tenure in completed
periods). In the paper's cohort tables "survivors in year t" are the customers with ``T > t``.

The fit maximises the (weighted) log-likelihood over ``log(alpha), log(beta)`` with L-BFGS-B and
analytic gradients, on the unique ``(tenure, churned)`` tuples with their counts as weights (at
most ``2 * max(tenure)`` rows whatever the number of customers, so 1M customers fit in well under
a second of optimisation; ``n_unique_`` records how many). Standard errors come from the
analytic Hessian of the negative log-likelihood in the log-parameters (inverted), mapped to
``(alpha, beta)`` with the delta method (``J = diag(alpha, beta)``).

Segments
--------
With ``segment`` (contract type, plan, ...) each segment gets its own ``(alpha, beta)``; a
segment with fewer than ``min_segment_customers`` customers (sum of weights) or fewer than
``min_segment_churned`` churn events uses the pooled fit (all customers) instead and is flagged
``fallback`` in ``segments_``. Segment labels are compared as strings (``str(label)``); a label
unseen at fit time gets the pooled parameters at prediction.

Residual lifetime and CLV (DERL, Fader & Hardie 2010)
-----------------------------------------------------
Fader & Hardie (2010, "Customer-Base Valuation in a Contractual Setting: The Perils of Ignoring
Heterogeneity", *Marketing Science* 29(1)) value a customer "who has made n - 1 renewals" just
before her next renewal decision::

    DERL(d | alpha, beta, n - 1) = sum_{t >= n} S(t) / S(n - 1) / (1 + d) ** (t - n)
                                 = (beta + n - 1) / (alpha + beta + n - 1)
                                   * 2F1(1, beta + n; alpha + beta + n; 1 / (1 + d))

i.e. the expected number of *future* payments, the next one (at the coming renewal, if she
renews) undiscounted and each later one discounted one more period. An active customer at
``tenure`` t in this module's convention has made t renewals (``T > t``), so
:meth:`SbgModel.derl` evaluates the formula with ``n - 1 = t``::

    derl(t, d) = (beta + t) / (alpha + beta + t) * 2F1(1, beta + t + 1; alpha + beta + t + 1; 1/(1+d))
               = sum_{s >= t+1} S(s) / S(t) / (1 + d) ** (s - t - 1)

``d`` is the discount rate *per period* (monthly periods and 10 % a year:
``d = 1.1 ** (1 / 12) - 1``) and must be ``> 0``. :meth:`SbgModel.clv` is
``derl * recurring_revenue`` (revenue per period): the value of the future renewals, excluding
the payment already received.

Numerically, scipy's ``hyp2f1`` returns NaN or inf near ``z = 1`` when ``beta + t`` or ``alpha``
is large (e.g. ``beta + t = 500`` at ``d = 0.001``), so :meth:`SbgModel.derl` evaluates the same
quantity as the posterior expectation ``E[(1 - theta)(1 + d) / (d + theta)]`` with
``theta ~ Beta(alpha, beta + t)`` (the individual-level DERL averaged over the posterior after t
renewals; expanding it term by term gives the 2F1 series), integrated once per unique
``(segment, tenure)``. The tests check it against the closed form
(:func:`derl_closed_form`) and against the truncated direct sum.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, hyp2f1, log_expit, polygamma
from sklearn.base import BaseEstimator

from crmscore.core.serial import package_versions
from crmscore.estimators.gates import NotFittedModelError

__all__ = [
    "SBG_FORMAT",
    "SbgModel",
    "derl_closed_form",
    "sbg_log_likelihood",
]

logger = logging.getLogger(__name__)

#: Format tag of :meth:`SbgModel.to_dict` (and of the bundle's ``sbg.json``).
SBG_FORMAT = "crmscore.sbg/1"
#: Bounds of log(alpha), log(beta) in the optimiser (a fit at a bound is logged as a warning).
_LOG_BOUND = 15.0


# -- input checks --------------------------------------------------------------------------


def _values(a: Any, name: str) -> np.ndarray:
    if isinstance(a, (pd.Series, pd.Index)):
        # nullable numbers/booleans: pd.NA becomes NaN (reported as missing, not as a bad type)
        numeric = pd.api.types.is_numeric_dtype(a.dtype) and a.dtype != bool
        a = a.to_numpy(dtype=float, na_value=np.nan) if numeric and a.hasnans else a.to_numpy()
    arr = np.asarray(a)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {arr.shape})")
    return arr


def _check_tenure(tenure: Any, name: str = "tenure", minimum: int = 1) -> np.ndarray:
    """Whole periods as float64: finite, integer-valued, ``>= minimum``; else ValueError."""
    arr = _values(tenure, name)
    try:
        t = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric whole periods (got dtype {arr.dtype})") from exc
    bad = ~np.isfinite(t)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} missing or infinite value(s): drop those customers or "
            "fill their tenure before fitting/scoring"
        )
    if (t < minimum).any():
        raise ValueError(
            f"{name} must be >= {minimum} whole periods; {int((t < minimum).sum())} value(s) are "
            f"below (smallest {t.min():g})"
        )
    if (t != np.round(t)).any():
        raise ValueError(f"{name} must be whole periods (integers); got e.g. {t[t != np.round(t)][0]:g}")
    return t


def _check_churned(churned: Any, n: int) -> np.ndarray:
    """A boolean array: bool dtype, or numbers/objects that are all exactly 0/1 or True/False."""
    arr = _values(churned, "churned")
    if len(arr) != n:
        raise ValueError(f"churned has {len(arr)} values but tenure has {n}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError("churned has missing values (NaN): every customer needs True or False")
        if np.isin(arr, (0, 1)).all():
            return arr.astype(bool)
    elif arr.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in arr):
        return arr.astype(bool)
    examples = pd.unique(pd.Series(arr, dtype=object).astype(str))[:3].tolist()
    raise ValueError(
        "churned must be boolean (True: churned at the end of its tenure, False: still active; "
        f"0/1 accepted); got dtype {arr.dtype} with values such as {examples}: map the label "
        "column to booleans first (e.g. churn == 'Yes')"
    )


def _check_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _values(weights, "weights").astype(float)
    if len(w) != n:
        raise ValueError(f"weights has {len(w)} values but tenure has {n}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    return w


def _segment_codes(segment: Any, n: int, fitting: bool = True) -> tuple[np.ndarray, list[str]]:
    """Integer codes per row and the unique labels as strings (hash-based: fast on 1M rows).

    Labels that differ but print the same (``1`` and ``"1"``) are one segment: segments are
    compared as ``str(label)``.
    """
    arr = _values(segment, "segment")
    if len(arr) == 1 and n != 1 and not fitting:
        arr = np.repeat(arr, n)
    if len(arr) != n:
        raise ValueError(f"segment has {len(arr)} values but tenure has {n}")
    codes, uniques = pd.factorize(arr)
    if (codes < 0).any():
        raise ValueError("segment has missing values: fill them (e.g. 'unknown') before fitting/scoring")
    str_codes, labels = pd.factorize(np.asarray([str(u) for u in uniques], dtype=object))
    return str_codes[codes], [str(v) for v in labels]


def _check_discount(discount_rate: float) -> float:
    d = float(discount_rate)
    if not np.isfinite(d) or d <= 0:
        raise ValueError(
            f"discount_rate must be a positive rate per period (got {discount_rate!r}); e.g. "
            "10 % a year on monthly periods is 1.1 ** (1 / 12) - 1"
        )
    return d


# -- likelihood ----------------------------------------------------------------------------


def sbg_log_likelihood(alpha: float, beta: float, tenure: Any, churned: Any) -> np.ndarray:
    """Per-customer sBG log-likelihood: ``log P(T = t)`` if churned, else ``log S(t)``.

    Parameters
    ----------
    alpha, beta : float
        Beta-distribution parameters of the per-period churn probability.
    tenure : array_like
        Whole periods, ``>= 1``.
    churned : array_like of bool
        True: churned at the end of period ``tenure``; False: still active after it.

    Returns
    -------
    numpy.ndarray
        The log-likelihood of each customer.
    """
    t = _check_tenure(tenure)
    c = _check_churned(churned, len(t)).astype(float)
    return betaln(alpha + c, beta + t - c) - betaln(alpha, beta)


def _unique_rows(t: np.ndarray, c: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (tenure, churned) tuples with summed weights (zero-weight tuples dropped)."""
    key = t.astype(np.int64) * 2 + c.astype(np.int64)
    if len(key) and key.max() <= 4 * len(key) + 1_000_000:  # tenures are bounded: one bincount
        uw = np.bincount(key, weights=w)
        uk = np.flatnonzero(uw > 0)
        uw = uw[uk]
    else:
        uk, inv = np.unique(key, return_inverse=True)
        uw = np.bincount(inv, weights=w, minlength=len(uk))
        keep = uw > 0
        uk, uw = uk[keep], uw[keep]
    return (uk // 2).astype(float), (uk % 2).astype(float), uw


def _nll_grad_hess(
    log_params: np.ndarray, t: np.ndarray, c: np.ndarray, w: np.ndarray, hess: bool = False
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Negative log-likelihood, gradient and (optionally) Hessian in (log alpha, log beta).

    Each row contributes ``betaln(alpha + c, beta + t - c) - betaln(alpha, beta)``; with
    ``a = alpha + c``, ``b = beta + t - c``, ``d/d alpha betaln(a, b) = psi(a) - psi(a + b)`` and
    ``d/d beta betaln(a, b) = psi(b) - psi(a + b)`` (second derivatives with ``psi_1``).
    """
    alpha, beta = np.exp(log_params)
    a, b = alpha + c, beta + t - c
    W = w.sum()
    ll = float(w @ betaln(a, b) - W * betaln(alpha, beta))
    pab, p0 = digamma(a + b), digamma(alpha + beta)
    g_a = float(w @ (digamma(a) - pab) - W * (digamma(alpha) - p0))
    g_b = float(w @ (digamma(b) - pab) - W * (digamma(beta) - p0))
    grad = -np.array([alpha * g_a, beta * g_b])
    if not hess:
        return -ll, grad, None
    qab, q0 = polygamma(1, a + b), polygamma(1, alpha + beta)
    h_aa = float(w @ (polygamma(1, a) - qab) - W * (polygamma(1, alpha) - q0))
    h_bb = float(w @ (polygamma(1, b) - qab) - W * (polygamma(1, beta) - q0))
    h_ab = float(-(w @ qab) + W * q0)
    H = -np.array(
        [
            [alpha**2 * h_aa + alpha * g_a, alpha * beta * h_ab],
            [alpha * beta * h_ab, beta**2 * h_bb + beta * g_b],
        ]
    )
    return -ll, grad, H


def _fit_one(t: np.ndarray, c: np.ndarray, w: np.ndarray, tol: float, label: str) -> dict[str, Any]:
    """Maximum-likelihood fit on unique rows; returns params, standard errors and diagnostics."""
    if not (w[c == 1].sum() > 0):
        raise ValueError(
            f"{label}: no churned customers, so alpha and beta are not identified (the fitted "
            "churn rate would be 0): fit on data with observed churn"
        )
    if not (w[c == 0].sum() > 0 or len(np.unique(t)) > 1):
        raise ValueError(
            f"{label}: every customer churned at the same tenure, so alpha and beta are not "
            "identified: fit on a longer history"
        )

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g, _ = _nll_grad_hess(x, t, c, w)
        return f, g

    res = minimize(
        fun,
        np.zeros(2),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 2,
        options={"gtol": tol, "ftol": 1e-15, "maxiter": 1000},
    )
    x = res.x
    # Newton polish (the problem is two-dimensional and smooth; L-BFGS-B stops at gtol)
    for _ in range(5):
        _, g, H = _nll_grad_hess(x, t, c, w, hess=True)
        if H is None or not np.all(np.linalg.eigvalsh(H) > 0):
            break
        step = np.linalg.solve(H, g)
        x_new = np.clip(x - step, -_LOG_BOUND, _LOG_BOUND)
        if _nll_grad_hess(x_new, t, c, w)[0] > _nll_grad_hess(x, t, c, w)[0]:
            break
        x = x_new
        if np.max(np.abs(step)) < 1e-12:
            break
    nll, g, H = _nll_grad_hess(x, t, c, w, hess=True)
    grad_ok = bool(np.max(np.abs(g)) <= 1e-6 * max(1.0, float(w.sum())))
    at_bound = bool(np.any(np.abs(x) >= _LOG_BOUND - 1e-6))
    if at_bound:
        logger.warning(
            "%s: sBG fit at a parameter bound (log alpha=%.2f, log beta=%.2f): churn looks "
            "homogeneous or degenerate; standard errors are unreliable",
            label,
            x[0],
            x[1],
        )
    try:
        log_cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        log_cov = np.full((2, 2), np.nan)
    alpha, beta = (float(v) for v in np.exp(x))
    J = np.diag([alpha, beta])
    cov = J @ log_cov @ J
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.isfinite(cov).all() else np.full(2, np.nan)
    return {
        "alpha": alpha,
        "beta": beta,
        "se": {"alpha": float(se[0]), "beta": float(se[1])},
        "cov": cov.tolist(),
        "log_cov": log_cov.tolist(),
        "log_likelihood": float(-nll),
        "converged": grad_ok and not at_bound,
        "message": f"L-BFGS-B: {res.message}; after Newton polish max |gradient| {np.max(np.abs(g)):.1e}",
        "n_iter": int(res.nit),
        "n_customers": float(w.sum()),
        "n_churned": float(w[c == 1].sum()),
        "n_unique": len(t),
    }


def derl_closed_form(alpha: float, beta: float, tenure: Any, discount_rate: float) -> np.ndarray:
    """FH 2010's closed form ``(beta+t)/(alpha+beta+t) * 2F1(1, beta+t+1; alpha+beta+t+1; 1/(1+d))``.

    Reference only: scipy's ``hyp2f1`` returns NaN or inf near ``z = 1`` for large
    ``beta + t`` or ``alpha`` (e.g. ``beta + t = 500``, ``d = 0.001``), so
    :meth:`SbgModel.derl` integrates the posterior instead (same value where both are finite).
    """
    t = _check_tenure(tenure, minimum=0)
    d = _check_discount(discount_rate)
    bt = beta + t
    return bt / (alpha + bt) * hyp2f1(1.0, bt + 1.0, alpha + bt + 1.0, 1.0 / (1.0 + d))


def _derl_posterior(alpha: float, beta_t: float, d: float) -> float:
    """DERL as ``E[(1 - theta)(1 + d) / (d + theta)]``, ``theta ~ Beta(alpha, beta + t)``.

    The individual DERL given ``theta`` is ``sum_{k>=0} (1-theta)^(k+1) / (1+d)^k =
    (1-theta)(1+d)/(d+theta)``; averaging it over the posterior of ``theta`` after ``t``
    renewals gives the 2F1 closed form term by term. The integral is taken on the logit scale
    (log-concave density, mode ``log(alpha / (beta + t))``) in pieces around the mode and around
    ``log d`` (where the integrand turns), with ``quad`` at relative tolerance 1e-12: accurate
    where ``hyp2f1`` fails (checked against the direct sum in the tests).
    """
    lb = betaln(alpha, beta_t)

    def integrand(u: float) -> float:
        logp = alpha * log_expit(u) + beta_t * log_expit(-u) - lb
        return float(np.exp(logp) * expit(-u) * (1.0 + d) / (d + expit(u)))

    mode, sd = np.log(alpha / beta_t), np.sqrt(1.0 / alpha + 1.0 / beta_t)
    pts = sorted({mode - 8 * sd, mode, mode + 8 * sd, float(np.log(d))})
    lo, hi = pts[0] - 1.0, pts[-1] + 1.0
    pieces = [(-np.inf, lo), *zip([lo, *pts], [*pts, hi], strict=True), (hi, np.inf)]
    return float(
        sum(quad(integrand, x, y, epsabs=0.0, epsrel=1e-12, limit=200)[0] for x, y in pieces if y > x)
    )


# -- the estimator -------------------------------------------------------------------------


class SbgModel(BaseEstimator):
    """Shifted-beta-geometric contractual retention and lifetime value (Fader & Hardie 2007, 2010).

    Parameters
    ----------
    min_segment_customers : float, default 500
        A segment with fewer customers (sum of weights) uses the pooled fit.
    min_segment_churned : float, default 30
        A segment with fewer churn events uses the pooled fit.
    tol : float, default 1e-10
        Gradient tolerance of the optimiser (then up to five Newton steps polish the optimum).

    Attributes
    ----------
    alpha_, beta_ : float
        The pooled fit (all customers).
    se_ : dict
        Standard errors of the pooled ``alpha`` and ``beta`` (delta method).
    cov_, log_cov_ : numpy.ndarray
        Covariance of (alpha, beta) and of (log alpha, log beta), pooled fit.
    log_likelihood_ : float
        Pooled maximised log-likelihood.
    segments_ : dict
        Per segment label (``str``): ``alpha``, ``beta``, ``se``, ``n_customers``, ``n_churned``,
        ``fallback`` (True: too small, uses the pooled parameters) and the fit's diagnostics.
        Empty without ``segment``.
    n_customers_ : float
        Customers in the fit (sum of weights).
    n_unique_ : int
        Unique (segment, tenure, churned) tuples the likelihood was evaluated on (without
        segments: unique (tenure, churned) tuples), at most ``2 * max(tenure) * n_segments``.
    diagnostics_ : dict
        The pooled fit's convergence flag, message, iterations, counts.
    """

    def __init__(
        self, min_segment_customers: float = 500, min_segment_churned: float = 30, tol: float = 1e-10
    ) -> None:
        self.min_segment_customers = min_segment_customers
        self.min_segment_churned = min_segment_churned
        self.tol = tol

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, tenure: Any, churned: Any, segment: Any = None, weights: Any = None) -> SbgModel:
        """Fit by maximum likelihood on right-censored tenures.

        Parameters
        ----------
        tenure : array_like
            Whole periods, ``>= 1``, one per customer.
        churned : array_like of bool
            True: churned at the end of period ``tenure``; False: still active after it.
        segment : array_like, optional
            A label per customer (contract type, plan): one ``(alpha, beta)`` per segment.
        weights : array_like, optional
            Non-negative counts per row (a row with weight k is k identical customers).

        Returns
        -------
        SbgModel
            ``self``.

        Raises
        ------
        ValueError
            Bad input (tenure below 1, missing or fractional; non-boolean ``churned``; negative
            weights; mismatched lengths) or data without churn events.
        """
        t = _check_tenure(tenure)
        c = _check_churned(churned, len(t)).astype(float)
        w = _check_weights(weights, len(t))
        if len(t) == 0 or w.sum() <= 0:
            raise ValueError("no customers to fit the sBG model on (empty input or all weights 0)")
        ut, uc, uw = _unique_rows(t, c, w)
        pooled = _fit_one(ut, uc, uw, self.tol, "sBG pooled fit")
        self.alpha_, self.beta_ = pooled["alpha"], pooled["beta"]
        self.se_ = dict(pooled["se"])
        self.cov_ = np.asarray(pooled["cov"])
        self.log_cov_ = np.asarray(pooled["log_cov"])
        self.log_likelihood_ = pooled["log_likelihood"]
        self.diagnostics_ = {
            k: pooled[k] for k in ("converged", "message", "n_iter", "n_churned", "n_unique")
        }
        self.n_customers_ = float(w.sum())
        self.segments_: dict[str, dict[str, Any]] = {}
        self.n_unique_ = len(ut)
        if segment is not None:
            inverse, codes = _segment_codes(segment, len(t))
            n_unique = 0
            for i in np.argsort(codes):  # segments_ in label order
                label, m = codes[i], inverse == i
                st, sc, sw = _unique_rows(t[m], c[m], w[m])
                n_unique += len(st)
                n_seg, n_churn = float(sw.sum()), float(sw[sc == 1].sum())
                entry: dict[str, Any]
                if n_seg < self.min_segment_customers or n_churn < self.min_segment_churned:
                    entry = {k: pooled[k] for k in ("alpha", "beta", "se", "cov", "log_cov")}
                    entry.update(fallback=True, n_customers=n_seg, n_churned=n_churn)
                    logger.info(
                        "sBG segment %r: %g customers, %g churned (< %g / %g): uses the pooled fit",
                        label,
                        n_seg,
                        n_churn,
                        self.min_segment_customers,
                        self.min_segment_churned,
                    )
                else:
                    entry = _fit_one(st, sc, sw, self.tol, f"sBG segment {label!r}")
                    entry["fallback"] = False
                self.segments_[str(label)] = entry
            self.n_unique_ = n_unique
        logger.info(
            "sBG fit: alpha=%.4g (se %.2g), beta=%.4g (se %.2g), %d unique tuples, %d segments",
            self.alpha_,
            self.se_["alpha"],
            self.beta_,
            self.se_["beta"],
            self.n_unique_,
            len(self.segments_),
        )
        return self

    # -- prediction ------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise NotFittedModelError("this SbgModel is not fitted yet: call fit() or load a bundle")

    def _params(self, segment: Any, n: int) -> tuple[np.ndarray | float, np.ndarray | float]:
        """alpha, beta per row (pooled without ``segment``; unseen labels get the pooled fit)."""
        self._check_fitted()
        if segment is None:
            return self.alpha_, self.beta_
        inv, uniq = _segment_codes(segment, n, fitting=False)
        unseen = [u for u in uniq if u not in self.segments_]
        if unseen:
            logger.info("sBG: segment(s) %s unseen at fit time use the pooled fit", unseen[:5])
        a = np.array([self.segments_.get(u, {"alpha": self.alpha_})["alpha"] for u in uniq], dtype=float)
        b = np.array([self.segments_.get(u, {"beta": self.beta_})["beta"] for u in uniq], dtype=float)
        return a[inv], b[inv]

    def survival(self, t: Any, segment: Any = None) -> np.ndarray:
        """``S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta)`` (``t >= 0`` whole periods)."""
        tt = _check_tenure(t, "t", minimum=0)
        a, b = self._params(segment, len(tt))
        return np.exp(betaln(a, b + tt) - betaln(a, b))

    def retention_rate(self, t: Any, segment: Any = None) -> np.ndarray:
        """``r(t) = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1)`` (``t >= 1``)."""
        tt = _check_tenure(t, "t", minimum=1)
        a, b = self._params(segment, len(tt))
        return (b + tt - 1) / (a + b + tt - 1)

    def churn_probability(self, tenure: Any, horizon: int = 1, segment: Any = None) -> np.ndarray:
        """P(churn within the next ``horizon`` periods | active at ``tenure``): ``1 - S(t+h)/S(t)``.

        Parameters
        ----------
        tenure : array_like
            Renewals made so far (``T > tenure``), ``>= 0``.
        horizon : int, default 1
            Periods ahead, ``>= 1``.
        segment : array_like, optional
            Segment labels (per row, or one for all).

        Returns
        -------
        numpy.ndarray
            The conditional churn probability per customer.
        """
        tt = _check_tenure(tenure, minimum=0)
        h = _check_tenure([horizon], "horizon", minimum=1)[0]
        a, b = self._params(segment, len(tt))
        return -np.expm1(betaln(a, b + tt + h) - betaln(a, b + tt))

    def derl(self, tenure: Any, discount_rate: float, segment: Any = None) -> np.ndarray:
        """Discounted expected residual lifetime of a customer active at ``tenure`` (FH 2010).

        ``(beta + t) / (alpha + beta + t) * 2F1(1, beta + t + 1; alpha + beta + t + 1; 1/(1+d))``
        ``= sum_{s > t} S(s) / S(t) / (1 + d) ** (s - t - 1)``: expected future payments, the
        next renewal undiscounted (FH 2010's "n - 1 renewals" with ``n - 1 = tenure``; see the
        module docstring), evaluated as the posterior integral (robust where ``hyp2f1`` is not),
        once per unique ``(alpha, beta + tenure)``.

        Parameters
        ----------
        tenure : array_like
            Renewals made so far (the customer is active: ``T > tenure``), ``>= 0``.
        discount_rate : float
            Discount rate per period, ``> 0``.
        segment : array_like, optional
            Segment labels.

        Returns
        -------
        numpy.ndarray
            DERL in periods (payments).
        """
        tt = _check_tenure(tenure, minimum=0)
        d = _check_discount(discount_rate)
        a, b = self._params(segment, len(tt))
        a_row = np.broadcast_to(np.asarray(a, dtype=float), tt.shape)
        bt_row = np.broadcast_to(np.asarray(b, dtype=float), tt.shape) + tt
        # one integral per unique (alpha, beta + tenure): factorised as complex numbers (hashing)
        inverse, pairs = pd.factorize(a_row + 1j * bt_row)
        values = np.array([_derl_posterior(z.real, z.imag, d) for z in pairs], dtype=float)
        return values[inverse] if len(tt) else np.zeros(0)

    def clv(
        self, tenure: Any, recurring_revenue: Any, discount_rate: float, segment: Any = None
    ) -> np.ndarray:
        """Contractual CLV: :meth:`derl` × revenue per period (future renewals only).

        Parameters
        ----------
        tenure : array_like
            Renewals made so far, ``>= 0``.
        recurring_revenue : array_like or float
            Revenue per period (same currency as the result); must be finite.
        discount_rate : float
            Discount rate per period, ``> 0``.
        segment : array_like, optional
            Segment labels.

        Returns
        -------
        numpy.ndarray
            Discounted expected future revenue per customer.
        """
        value = self.derl(tenure, discount_rate, segment)
        rev = np.asarray(recurring_revenue, dtype=float)
        if not np.isfinite(rev).all():
            raise ValueError("recurring_revenue has missing or infinite values: fill or drop them first")
        return value * rev

    # -- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-data representation (JSON-safe): pooled and per-segment fits, diagnostics, versions."""
        self._check_fitted()
        return {
            "format": SBG_FORMAT,
            "init_params": self.get_params(),
            "pooled": {
                "alpha": self.alpha_,
                "beta": self.beta_,
                "se": dict(self.se_),
                "cov": self.cov_.tolist(),
                "log_cov": self.log_cov_.tolist(),
                "log_likelihood": self.log_likelihood_,
            },
            "segments": self.segments_,
            "diagnostics": self.diagnostics_,
            "n_customers": self.n_customers_,
            "n_unique": self.n_unique_,
            "versions": package_versions(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SbgModel:
        """Rebuild a fitted model from :meth:`to_dict` output (nothing is refitted)."""
        if data.get("format") != SBG_FORMAT:
            raise ValueError(
                f"not a crmscore sBG model (format {data.get('format')!r}, expected {SBG_FORMAT!r})"
            )
        model = cls(**data["init_params"])
        p = data["pooled"]
        model.alpha_, model.beta_ = float(p["alpha"]), float(p["beta"])
        model.se_ = {k: float(v) for k, v in p["se"].items()}
        model.cov_ = np.asarray(p["cov"], dtype=float)
        model.log_cov_ = np.asarray(p["log_cov"], dtype=float)
        model.log_likelihood_ = float(p["log_likelihood"])
        model.segments_ = {str(k): dict(v) for k, v in data["segments"].items()}
        model.diagnostics_ = dict(data["diagnostics"])
        model.n_customers_ = float(data["n_customers"])
        model.n_unique_ = int(data["n_unique"])
        return model

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (floats round-trip exactly); returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True), encoding="utf-8")
        return p

    @classmethod
    def from_json(cls, path: str | Path) -> SbgModel:
        """Load a model written by :meth:`to_json` (no pickle involved)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
