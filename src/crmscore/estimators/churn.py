"""Churn: the risk-band head of the calibrated classifier, its baselines and its evaluation.

The estimator is :class:`crmscore.estimators.classifier.CalibratedModel` (LightGBM with native
categoricals, calibrated on a later window, with the gates of
:mod:`crmscore.estimators.gates`); this module adds only what is churn's own:

* the head: ``churn_probability`` and ``churn_risk`` (``high`` / ``medium`` / ``low`` from
  ``churn.risk_thresholds``: :func:`risk_band`);
* the baselines: a logistic regression on RFM (or on every attribute for snapshot data), and
  BG/NBD's ``1 - P(alive)`` and ``P(no purchase in H)`` (:func:`clv_baselines`);
* :func:`evaluate_churn`: the out-of-time evaluation (:mod:`crmscore.estimators.backtest`) of
  the ``churn`` config block beside those baselines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from crmscore.estimators.backtest import Baseline, EvaluationReport, evaluate_classifier, simple_baseline
from crmscore.estimators.classifier import CalibratedModel, model_params

if TYPE_CHECKING:
    from crmscore.config import ChurnConfig

__all__ = [
    "RISK_BANDS",
    "CalibratedChurnModel",
    "bgnbd_probability_no_purchase",
    "clv_baselines",
    "evaluate_churn",
    "risk_band",
]

logger = logging.getLogger(__name__)

#: Churn risk bands, highest first.
RISK_BANDS: tuple[str, ...] = ("high", "medium", "low")


def risk_band(probability: Any, thresholds: Mapping[str, float]) -> np.ndarray:
    """Churn risk band per probability: ``high`` if ``p >= thresholds["high"]``, ``medium`` if
    ``p >= thresholds["medium"]``, else ``low``.

    Raises
    ------
    ValueError
        Thresholds missing, outside [0, 1] or with ``medium > high``.
    """
    try:
        high, medium = float(thresholds["high"]), float(thresholds["medium"])
    except KeyError as exc:
        raise ValueError(f"risk thresholds need 'high' and 'medium', got {dict(thresholds)}") from exc
    if not 0.0 <= medium <= high <= 1.0:
        raise ValueError(f"risk thresholds must satisfy 0 <= medium <= high <= 1, got {dict(thresholds)}")
    p = np.asarray(probability, dtype=np.float64)
    return np.where(p >= high, "high", np.where(p >= medium, "medium", "low")).astype(object)


class CalibratedChurnModel(CalibratedModel):
    """Churn probability (calibrated on a later window) and risk band.

    The parameters are those of :class:`~crmscore.estimators.classifier.CalibratedModel`;
    ``thresholds`` are the risk thresholds ``{"high": ..., "medium": ...}`` on the calibrated
    probability (:func:`risk_band`; default 0.5 / 0.25). Build it from the ``churn`` block
    with :meth:`from_config`.
    """

    OUTPUTS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("churn_probability", "double"),
        ("churn_risk", "string"),
    )
    DEFAULT_THRESHOLDS: ClassVar[Mapping[str, float]] = {"high": 0.5, "medium": 0.25}

    @classmethod
    def from_config(cls, cfg: ChurnConfig, **overrides: Any) -> CalibratedChurnModel:
        """Build from the ``churn`` config block (``overrides`` win).

        The overlap gate's label horizon is ``horizon_days`` for the dated definitions and
        None (any shared customer refused) for ``definition="label"``.
        """
        params = model_params(cfg)
        params["label_horizon_days"] = None if cfg.definition == "label" else cfg.horizon_days
        params["thresholds"] = dict(cfg.risk_thresholds)
        params.update(overrides)
        return cls(**params)

    def head(self, probability: np.ndarray) -> dict[str, Any]:
        """``churn_probability`` and ``churn_risk`` (:func:`risk_band`)."""
        return {"churn_probability": probability, "churn_risk": risk_band(probability, self._thresholds())}

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Risk band (``high``/``medium``/``low``) of each row from the calibrated probability."""
        return risk_band(self.predict_proba(X)[:, 1], self._thresholds())


def bgnbd_probability_no_purchase(
    params: Mapping[str, float], frequency: Any, recency: Any, T: Any, horizon: float
) -> np.ndarray:
    """P(no purchase in ``(T, T + horizon]`` | x, t_x, T) under BG/NBD.

    ``1 - P(alive | x, t_x, T) * (1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x))``: a
    customer alive at ``T`` has posterior rate ``lambda ~ Gamma(r + x, alpha + T)`` and buys
    nothing in ``horizon`` with probability ``E[exp(-lambda horizon)]``; a dead one never buys
    (Fader, Hardie & Lee 2005, eq. 10 and note 021 eq. 2). ``horizon`` is in the unit of ``T``.
    This is the exact inactivity-churn probability when the data follow BG/NBD with
    ``params``.
    """
    from crmscore.estimators.clv import bgnbd_probability_alive

    r, alpha = float(params["r"]), float(params["alpha"])
    x = np.asarray(frequency, dtype=np.float64)
    T_arr = np.asarray(T, dtype=np.float64)
    alive = bgnbd_probability_alive(params, x, recency, T_arr)
    buy_if_alive = -np.expm1((r + x) * (np.log(alpha + T_arr) - np.log(alpha + T_arr + horizon)))
    return 1.0 - alive * buy_if_alive


def clv_baselines(
    *, time_unit: str = "week", horizon_days: int | None = None, penalizer: float = 0.0
) -> dict[str, Baseline]:
    """BG/NBD baselines from the BTYD summary columns (``frequency``, ``recency``, ``T``).

    ``"1 - P(alive) (BG/NBD)"`` and, with ``horizon_days`` (inactivity churn),
    ``"P(no purchase in H) (BG/NBD)"`` (:func:`bgnbd_probability_no_purchase`). The BG/NBD
    model is fitted on the evaluation cutoff's summaries (no labels used; it is what scoring
    at that cutoff would do). Rows without a purchase get the median score.
    """
    from crmscore.core.time import DAYS_PER_UNIT
    from crmscore.estimators.clv import ClvModel

    cache: dict[int, Any] = {}

    def fitted(evaluation: pd.DataFrame) -> tuple[Any, np.ndarray]:
        key = id(evaluation)
        if key not in cache:
            s = evaluation[["frequency", "recency", "T", "monetary_value"]].astype(np.float64)
            ok = s[["frequency", "recency", "T"]].notna().all(axis=1).to_numpy()
            summ = s[ok].fillna({"monetary_value": 0.0})
            model = ClvModel(time_unit=time_unit, penalizer=penalizer).fit(summ)  # type: ignore[arg-type]
            cache.clear()
            cache[key] = (model, ok)
        return cache[key]

    def fill(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        out = np.full(len(ok), np.nan)
        out[ok] = values
        out[~ok] = np.nanmedian(values) if ok.any() else 0.5
        return out

    def one_minus_alive(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
        model, ok = fitted(evaluation)
        s = evaluation[ok]
        return fill(1.0 - model.conditional_probability_alive(s["frequency"], s["recency"], s["T"]), ok)

    out: dict[str, Baseline] = {"1 - P(alive) (BG/NBD)": one_minus_alive}
    if horizon_days is not None:
        h = horizon_days / DAYS_PER_UNIT[time_unit]

        def no_purchase(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
            model, ok = fitted(evaluation)
            s = evaluation[ok]
            p = bgnbd_probability_no_purchase(model.bgnbd_params_, s["frequency"], s["recency"], s["T"], h)
            return fill(p, ok)

        out[f"P(no purchase in {horizon_days}d) (BG/NBD)"] = no_purchase
    return out


_RFM_COLUMNS: tuple[str, ...] = ("recency_days", "n_purchases", "spend_total")


def evaluate_churn(
    frame: pd.DataFrame,
    cfg: ChurnConfig,
    *,
    time_unit: str = "week",
    label: str = "churn",
    time_column: str = "cutoff",
    **overrides: Any,
) -> EvaluationReport:
    """Out-of-time evaluation of the churn model of ``cfg`` beside its baselines.

    Baselines: logistic regression on the RFM features (``recency_days``, ``n_purchases``,
    ``spend_total``; on all attributes when the data have no transactions) and, when the BTYD
    summary is present, ``1 - P(alive)`` of a BG/NBD model (plus ``P(no purchase in H)`` for
    inactivity churn). ``overrides`` are passed to :meth:`CalibratedChurnModel.from_config`.
    """
    model = CalibratedChurnModel.from_config(cfg, time_column=time_column, **overrides)
    rfm = [c for c in _RFM_COLUMNS if c in frame.columns]
    baselines = simple_baseline(frame, label, rfm, "RFM", exclude=(time_column, *cfg.exclude_features))
    if {"frequency", "recency", "T", "monetary_value"} <= set(frame.columns):
        horizon = cfg.horizon_days if cfg.definition == "inactivity" else None
        baselines.update(clv_baselines(time_unit=time_unit, horizon_days=horizon))
    horizon_days = None if cfg.definition == "label" else cfg.horizon_days
    return evaluate_classifier(
        frame, label, model, cfg, baselines, time_column=time_column, horizon_days=horizon_days
    )
