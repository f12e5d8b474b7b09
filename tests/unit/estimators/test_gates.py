"""Model gates (crmscore.estimators.gates): too few positives, a leaking feature, an evaluation
AUC too good to be true, the same record in overlapping label windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.estimators.churn import CalibratedChurnModel, evaluate_churn
from crmscore.estimators.gates import (
    LeakageError,
    ModelGateError,
    TooFewPositivesError,
    check_no_overlap,
)
from helpers import CHURN_FAST as FAST
from helpers import churn_cfg as _cfg


def test_gate_too_few_positives(inactivity):
    frame, _ = inactivity
    X, y = frame.drop(columns=["churn"]), frame["churn"].to_numpy()
    dated = {**FAST, "label_horizon_days": 90}
    with pytest.raises(TooFewPositivesError, match=r"at least 100000 \(min_rows\)"):
        CalibratedChurnModel(**dated, min_rows=100_000).fit(X, y)
    # a rare outcome: 30 positives where 100 are needed
    rare = np.zeros(len(y), dtype=bool)
    rare[np.flatnonzero(y)[:30]] = True
    with pytest.raises(TooFewPositivesError, match="needs at least 100 of each") as err:
        CalibratedChurnModel(**dated, min_rows=10, min_positives=100, min_calibration_positives=1).fit(
            X, rare
        )
    assert isinstance(err.value, ModelGateError)


def test_gate_single_feature_leak_is_named(inactivity):
    frame, _ = inactivity
    rng = np.random.default_rng(0)
    leaky = frame.assign(days_until_churn=np.where(frame["churn"], 1.0, 100.0) + rng.normal(0, 1, len(frame)))
    with pytest.raises(LeakageError, match="'days_until_churn'"):
        evaluate_churn(leaky, _cfg())


def test_gate_evaluation_auc_ceiling_names_features(inactivity):
    frame, _ = inactivity
    rng = np.random.default_rng(1)
    # a strong but imperfect leak: the single-feature canary is raised out of the way
    leaky = frame.assign(leak=frame["churn"] * 2.0 + rng.normal(0, 0.3, len(frame)))
    with pytest.raises(LeakageError, match=r"max_eval_auc=0\.98.*'leak'"):
        evaluate_churn(leaky, _cfg(max_single_feature_auc=1.0))


def test_overlap_check_on_coded_ids_names_the_record() -> None:
    cut_a = [pd.Timestamp("2025-01-01", tz="UTC")] * 2
    cut_b = [pd.Timestamp("2025-02-01", tz="UTC")] * 2
    with pytest.raises(ValueError, match="'C2'"):
        check_no_overlap(["C1", "C2"], ["C2", "C3"], train_cutoffs=cut_a, eval_cutoffs=cut_b, horizon_days=90)
    check_no_overlap(["C1", "C2"], ["C3"], train_cutoffs=cut_a, eval_cutoffs=cut_b[:1], horizon_days=90)
    far = [pd.Timestamp("2025-06-01", tz="UTC")] * 2
    check_no_overlap(["C1", "C2"], ["C2", "C3"], train_cutoffs=cut_a, eval_cutoffs=far, horizon_days=90)
