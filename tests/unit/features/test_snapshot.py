"""Snapshot churn data (crmscore.features.snapshot, ``definition="label"``): stated stratified splits.

The customers and labels are drawn here from a known logistic model of the attributes, so the
true probability is that model's: the churn model should reach its AUC within 0.02 and be
calibrated (slope 0.8–1.2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from crmscore.estimators.churn import evaluate_churn
from crmscore.evaluation.binary import binary_metrics
from crmscore.features.snapshot import snapshot_churn_set
from helpers import churn_cfg as _cfg


def _snapshot_customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro", "enterprise"], n, p=[0.4, 0.3, 0.2, 0.1])
    region = rng.choice(["north", "south", "east", "west"], n)
    usage = rng.gamma(2.0, 2.0, n)
    nps = rng.normal(0, 1, n)
    eff = {"basic": 0.6, "plus": 0.0, "pro": -0.5, "enterprise": -1.2}
    p = expit(-0.4 + np.vectorize(eff.get)(plan) - 0.35 * (usage - 4.0) - 0.8 * nps)
    label = rng.random(n) < p
    customers = pd.DataFrame(
        {
            "customer_id": [f"S{i:06d}" for i in range(n)],
            "plan": plan,
            "region": region,
            "usage_hours": usage,
            "nps": nps,
            "churn": label,
        }
    )
    return customers, p


def test_snapshot_label_data_uses_stated_stratified_splits():
    customers, p_true = _snapshot_customers(12_000, seed=5)
    cfg = _cfg(definition="label")
    frame = snapshot_churn_set(customers, cfg)
    assert "churn" in frame and "plan" in frame and isinstance(frame["plan"].dtype, pd.CategoricalDtype)
    report = evaluate_churn(frame, cfg)
    assert (
        report.split.startswith("stratified holdout (no dates)") and "NOT an out-of-time test" in report.split
    )
    assert report.model.calibration_split_.startswith("stratified split (no dates)")
    assert "logistic regression (all attributes)" in report.metrics.index
    truth = binary_metrics(
        report.predictions["churn"], pd.Series(p_true, index=frame.index)[report.predictions.index]
    )
    m = report.metrics.loc["LightGBM (calibrated)"]
    assert abs(m["roc_auc"] - truth["roc_auc"]) <= 0.02, (m["roc_auc"], truth["roc_auc"])
    assert 0.8 <= m["calibration_slope"] <= 1.2
