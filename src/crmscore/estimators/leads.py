"""Lead scoring: calibrated conversion probability, score 0–100 and grade A–D.

The head of the calibrated classifier (:class:`crmscore.estimators.classifier.CalibratedModel`):
LightGBM on the lead features with native categoricals, calibrated on the latest training
cutoff (or a stated stratified split without dates), the same gates and exact per-row
reasons; this module adds the score, the grade, the engagement baseline and :func:`evaluate_leads`.

Score and grade
---------------
``lead_score = round(100 * P(convert within leads.conversion_window_days))``: the calibrated
probability in percent, so a score means the same thing across retrains and segments.
``lead_grade`` is ``A`` if ``score >= grade_thresholds["A"]``, else ``B`` if ``>= "B"``,
``C`` if ``>= "C"``, else ``D``. Set the thresholds from the business's conversion rates:
with a 5 % base rate the default 75/50/25 leaves most leads at ``D``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from crmscore.estimators.backtest import EvaluationReport, evaluate_classifier, simple_baseline
from crmscore.estimators.classifier import CalibratedModel, model_params

if TYPE_CHECKING:
    from crmscore.config import LeadsConfig

__all__ = ["GRADES", "LeadScoringModel", "evaluate_leads", "lead_grade", "lead_score"]

logger = logging.getLogger(__name__)

#: Lead grades, best first.
GRADES: tuple[str, ...] = ("A", "B", "C", "D")


def lead_score(probability: Any) -> np.ndarray:
    """Score 0–100: the probability in percent, rounded half up to an integer."""
    p = np.asarray(probability, dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or np.isnan(p).any():
        raise ValueError("probabilities must be in [0, 1]")
    return np.floor(100.0 * p + 0.5).astype(np.int64)


def lead_grade(score: Any, thresholds: Mapping[str, float]) -> np.ndarray:
    """Grade A–D of each score (0–100): the best grade whose threshold the score reaches.

    Raises
    ------
    ValueError
        A threshold missing or the thresholds not decreasing from A to C.
    """
    try:
        a, b, c = (float(thresholds[g]) for g in ("A", "B", "C"))
    except KeyError as exc:
        raise ValueError(f"grade thresholds need A, B and C, got {dict(thresholds)}") from exc
    if not 0.0 <= c <= b <= a <= 100.0:
        raise ValueError(f"grade thresholds must satisfy 0 <= C <= B <= A <= 100, got {dict(thresholds)}")
    s = np.asarray(score, dtype=np.float64)
    return np.select([s >= a, s >= b, s >= c], ["A", "B", "C"], default="D").astype(object)


class LeadScoringModel(CalibratedModel):
    """Conversion probability (calibrated on a later window), score 0–100 and grade A–D.

    The parameters are those of :class:`~crmscore.estimators.classifier.CalibratedModel`;
    ``thresholds`` are the grade thresholds ``{"A": ..., "B": ..., "C": ...}`` on the score
    (:func:`lead_grade`; default 75 / 50 / 25). Build it from the ``leads`` block with
    :meth:`from_config`. The overlap gate refuses a lead present in both training and
    calibration/evaluation rows (its conversion window is one fixed period, whatever the cutoff).
    """

    OUTPUTS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("conversion_probability", "double"),
        ("lead_score", "long"),
        ("lead_grade", "string"),
    )
    DEFAULT_THRESHOLDS: ClassVar[Mapping[str, float]] = {"A": 75.0, "B": 50.0, "C": 25.0}

    @classmethod
    def from_config(cls, cfg: LeadsConfig, **overrides: Any) -> LeadScoringModel:
        """Build from the ``leads`` config block (``overrides`` win)."""
        params = model_params(cfg)
        params["label_horizon_days"] = None
        params["thresholds"] = dict(cfg.grade_thresholds)
        params.update(overrides)
        return cls(**params)

    def head(self, probability: np.ndarray) -> dict[str, Any]:
        """``conversion_probability``, ``lead_score`` (:func:`lead_score`), ``lead_grade``."""
        score = lead_score(probability)
        return {
            "conversion_probability": probability,
            "lead_score": score,
            "lead_grade": lead_grade(score, self._thresholds()),
        }

    def predict_score(self, X: pd.DataFrame) -> np.ndarray:
        """Lead score 0–100 (calibrated probability in percent)."""
        return lead_score(self.predict_proba(X)[:, 1])

    def predict_grade(self, X: pd.DataFrame) -> np.ndarray:
        """Lead grade A–D from the score and the grade thresholds."""
        return lead_grade(self.predict_score(X), self._thresholds())


#: Engagement "RFM" of a lead: recency, frequency of activities, and age.
_ENGAGEMENT_COLUMNS: tuple[str, ...] = ("days_since_last_activity", "n_activities", "lead_age_days")


def evaluate_leads(
    frame: pd.DataFrame,
    cfg: LeadsConfig,
    *,
    label: str = "converted",
    time_column: str = "cutoff",
    **overrides: Any,
) -> EvaluationReport:
    """Out-of-time evaluation of the lead model of ``cfg`` beside a logistic baseline.

    The baseline is a logistic regression on the lead's engagement recency/frequency
    (``days_since_last_activity``, ``n_activities``, ``lead_age_days``: the lead analogue of
    RFM), or on all attributes when there are no activities. ``frame`` is a stacked set such
    as ``crmscore.features.tables.build_lead_training_set`` (index ``lead_id``).
    """
    model = LeadScoringModel.from_config(cfg, time_column=time_column, **overrides)
    cols = [c for c in _ENGAGEMENT_COLUMNS if c in frame.columns]
    if not {"days_since_last_activity", "n_activities"} <= set(cols):
        cols = []  # no activities: the baseline uses every attribute
    exclude = (time_column, *cfg.exclude_features)
    baselines = simple_baseline(frame, label, cols, "engagement RFM", exclude=exclude)
    return evaluate_classifier(frame, label, model, cfg, baselines, time_column=time_column)
