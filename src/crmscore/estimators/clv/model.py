"""Probabilistic customer lifetime value: the :class:`ClvModel` estimator (BG/NBD × Gamma-Gamma).

:class:`ClvModel` fits BG/NBD on all customers and Gamma-Gamma on repeat buyers with positive
spend, predicts P(alive), expected purchases, expected spend and discounted CLV, gives
parametric-bootstrap intervals and saves itself as JSON. The package splits the work:

* :mod:`.bgnbd` and :mod:`.gamma_gamma`: the closed forms (Fader, Hardie & Lee 2005a;
  Fader & Hardie 2013, note 025);
* :mod:`.optimize`: the maximum-likelihood fits (:func:`~.optimize.fit_bgnbd`,
  :func:`~.optimize.fit_gamma_gamma`);
* :mod:`.intervals`: the parametric bootstrap behind :meth:`ClvModel.predict_interval`;
* :mod:`.lifetimes_ref`: ``lifetimes`` as the reference implementation (the only module that
  imports it, lazily).

Customers with ``frequency > 0`` but ``monetary_value <= 0`` (refunds exceeding purchases, free
orders) are set aside from the Gamma-Gamma fit and counted in ``diagnostics_``; at prediction
they get the population mean spend and ``spend_imputed = True``.

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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crmscore.core.serial import package_versions
from crmscore.core.time import DAYS_PER_UNIT
from crmscore.estimators.clv.bgnbd import (
    BGNBD_PARAMS,
    _as_float,
    _discounted_sums,
    bgnbd_conditional_expected_purchases,
    bgnbd_probability_alive,
)
from crmscore.estimators.clv.gamma_gamma import GG_PARAMS, gg_conditional_expected_average_profit
from crmscore.estimators.clv.intervals import bootstrap_intervals, draw_log_normal
from crmscore.estimators.clv.likelihood import _group_rows
from crmscore.estimators.clv.optimize import fit_bgnbd, fit_gamma_gamma
from crmscore.estimators.gates import NotFittedModelError

__all__ = ["DAYS_PER_MONTH", "LIFETIMES_MONTH_FACTOR", "ClvModel", "monthly_discount_rate"]

logger = logging.getLogger(__name__)

#: An exact average (Julian) month in days.
DAYS_PER_MONTH: float = 365.25 / 12.0
#: lifetimes' month length per time unit in ``_customer_lifetime_value`` (``freq`` "D" → 30, "W" → 4.345).
LIFETIMES_MONTH_FACTOR: dict[str, float] = {"day": 30.0, "week": 4.345}
_FORMAT = "crmscore.clv/1"


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
            raise NotFittedModelError("ClvModel is not fitted: call fit() or from_json() first")

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
        bg = draw_log_normal(self.bgnbd_params_, self.bgnbd_log_cov_, n_draws, rng)
        gg = draw_log_normal(self.gg_params_, self.gg_log_cov_, n_draws, rng)
        return bg, gg

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
        in cache), ``n_jobs`` chunks at a time in threads (the results do not depend on
        ``n_jobs``); the quantiles come from one sort per block (:func:`~.intervals._quantiles`,
        the values of ``np.quantile`` at a fraction of its cost). Measured times:
        docs/scoring.md ("Speed").

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
        res = bootstrap_intervals(
            bg_draws,
            gg_draws,
            x,
            tx,
            T,
            m,
            qs,
            H,
            self.month_length(),
            self.discount_rate_annual,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
        )
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
