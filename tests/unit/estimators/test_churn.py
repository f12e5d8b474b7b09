"""Churn model (crmscore.estimators.churn) against the generator's truth; calibration window; reasons;
risk bands; the contractual definition. Gates: test_gates.py; snapshot data: features/test_snapshot.py.

True probability (inactivity churn, horizon H = 90 days)
--------------------------------------------------------
The test data keep only what BG/NBD describes: transactions and ``customer_id`` (no attributes,
tickets or ``churned_at``, which the generator correlates with the latent rates and dropout).
Then the features are functions of each customer's purchase history, whose sufficient
statistic under the generator is ``(x, t_x, T)`` in exact continuous time, and the best
possible prediction is the posterior probability of no purchase in ``(T, T + H]`` under the
generator's true population parameters ``r, alpha, a, b``:

    P(churn | x, t_x, T) = 1 - P(alive | x, t_x, T) * (1 - ((alpha + T) / (alpha + T + H)) ** (r + x))

(``crmscore.estimators.churn.bgnbd_probability_no_purchase``), with ``x`` = repeat purchases
before the cutoff, ``t_x`` and ``T`` the times from the first purchase to the last purchase
and to the end of the cutoff day, in weeks. The model should reach its AUC within 0.02
and be calibrated (slope 0.8–1.2) on the latest cutoff, never having seen it.

The 6,000 customers and the inactivity model are session fixtures (``conftest.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.core.time import cutoff_end
from crmscore.estimators.backtest import out_of_time_split
from crmscore.estimators.churn import (
    CalibratedChurnModel,
    bgnbd_probability_no_purchase,
    evaluate_churn,
    risk_band,
)
from crmscore.evaluation.binary import binary_metrics
from crmscore.features.tables import build_churn_training_set
from helpers import churn_cfg as _cfg

LAST_CUTOFF = "2025-09-30"


def _true_churn_probability(synth, ids: pd.Index, as_of: str, horizon_days: int) -> np.ndarray:
    tx = synth.tables["transactions"]
    end = cutoff_end(as_of)
    buys = tx[(tx["amount"] > 0) & (tx["ts"] < end)].groupby("customer_id")["ts"]
    first, last, count = buys.min(), buys.max(), buys.size()
    week = pd.Timedelta(days=7)
    x = (count.reindex(ids) - 1).to_numpy(dtype=float)
    t_x = ((last - first).reindex(ids) / week).to_numpy(dtype=float)
    T = ((end - first).reindex(ids) / week).to_numpy(dtype=float)
    return bgnbd_probability_no_purchase(synth.truth["bgnbd"], x, t_x, T, horizon_days / 7.0)


def test_inactivity_model_matches_truth_out_of_time(churn_synth, inactivity):
    _frame, report = inactivity
    assert report.split.startswith("out-of-time")
    assert LAST_CUTOFF in report.split
    assert report.model.calibration_split_.startswith("later window: calibrated on cutoff 2025-07-02")
    preds = report.predictions
    p_true = _true_churn_probability(churn_synth, preds.index, LAST_CUTOFF, 90)
    truth = binary_metrics(preds["churn"], p_true)
    m = report.metrics.loc["LightGBM (calibrated)"]
    assert abs(m["roc_auc"] - truth["roc_auc"]) <= 0.02, (m["roc_auc"], truth["roc_auc"])
    assert 0.8 <= m["calibration_slope"] <= 1.2
    assert m["ece"] < 0.03
    # baselines are reported beside the model, and the model beats the naive ones
    names = set(report.metrics.index)
    assert {"logistic regression (RFM)", "1 - P(alive) (BG/NBD)", "P(no purchase in 90d) (BG/NBD)"} <= names
    assert m["roc_auc"] > report.metrics.loc["1 - P(alive) (BG/NBD)", "roc_auc"] + 0.05
    assert m["roc_auc"] >= report.metrics.loc["logistic regression (RFM)", "roc_auc"] - 0.005
    assert set(report.gains) == names
    assert report.gains["LightGBM (calibrated)"]["capture"].iloc[-1] == pytest.approx(1.0)
    assert set(report.figures()) == {"roc", "pr", "calibration", "gains"}


def test_contributions_add_up_to_raw_score(inactivity):
    frame, report = inactivity
    X = frame.drop(columns=["churn"]).iloc[:300]
    contrib = report.model.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), report.model.raw_score(X), atol=1e-6)
    assert "expected_value" in contrib.columns
    assert "rfm_score" not in contrib.columns  # excluded by default (redundant)


def test_reasons_only_for_actionable_rows(inactivity):
    from crmscore.estimators.reasons import rows_to_explain

    frame, report = inactivity
    X = frame.drop(columns=["churn"]).iloc[:400]
    model = clone(report.model).set_params(thresholds={"high": 0.9, "medium": 0.8})
    model.__dict__.update({k: v for k, v in report.model.__dict__.items() if k.endswith("_")})
    out = model.predict_frame(X)
    assert list(out.columns) == ["churn_probability", "churn_risk"]
    high = (out["churn_risk"] == "high").to_numpy()
    assert high.any() and (~high).any()
    p = out["churn_probability"].to_numpy()
    mask = rows_to_explain(p, groups=out["churn_risk"].to_numpy(), explain_groups=("high",))
    np.testing.assert_array_equal(mask, high)
    texts = model.reasons_json(X[mask], n=3)
    assert len(texts) == int(mask.sum()) and all(t is not None for t in texts)
    reasons = json.loads(texts[0])
    assert 1 <= len(reasons) <= 6
    for r in reasons:
        assert set(r) == {"feature", "label", "value", "direction", "contribution"}
        assert (r["contribution"] > 0) == (r["direction"] == "increases")
    labels = {r["feature"]: r["label"] for r in reasons}
    if "recency_days" in labels:
        assert labels["recency_days"] == "Days since last purchase"
    # top_n explains the N highest probabilities even outside the bands
    top = rows_to_explain(p, groups=out["churn_risk"].to_numpy(), explain_groups=(), top_n=5)
    assert top.sum() == 5 and p[top].min() >= np.sort(p)[-5]


def test_isotonic_calibration_on_the_later_window(inactivity):
    frame, report = inactivity
    train, evaluation, _ = out_of_time_split(frame, "churn", horizon_days=90)
    iso = clone(report.model).set_params(calibration="isotonic")
    iso.fit(train.drop(columns=["churn"]), train["churn"])
    assert iso.n_calibration_ == int((train["cutoff"] == train["cutoff"].max()).sum())
    p = iso.predict_proba(evaluation.drop(columns=["churn"]))[:, 1]
    assert ((p > 0) & (p < 1)).all()
    m = binary_metrics(evaluation["churn"], p)
    assert m["ece"] < 0.03
    assert m["roc_auc"] == pytest.approx(report.metrics.iloc[0]["roc_auc"], abs=0.01)


def test_risk_bands():
    p = np.array([0.05, 0.25, 0.3, 0.5, 0.99])
    assert risk_band(p, {"high": 0.5, "medium": 0.25}).tolist() == ["low", "medium", "medium", "high", "high"]
    with pytest.raises(ValueError, match="medium <= high"):
        risk_band(p, {"high": 0.2, "medium": 0.4})


def test_sklearn_contract():
    model = CalibratedChurnModel.from_config(_cfg(horizon_days=60))
    assert model.get_params()["label_horizon_days"] == 60
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_proba(pd.DataFrame({"x": [1.0]}))


def test_contractual_definition_runs_with_attributes_and_tickets(churn_synth):
    data = CRMData(
        customers=churn_synth.tables["customers"],
        transactions=churn_synth.tables["transactions"],
        support_tickets=churn_synth.tables["support_tickets"],
    )
    # the generator's subscription churn is nearly determined by plan, tickets and recency
    # (measured AUC 0.97): the smoke test keeps the canary ceiling out of its way
    cfg = _cfg(definition="contractual", min_positives=20, min_calibration_positives=5, max_eval_auc=0.995)
    frame = build_churn_training_set(data, LAST_CUTOFF, Config(churn=cfg), n_cutoffs=4, step_days=90)
    report = evaluate_churn(frame, cfg)
    m = report.metrics.loc["LightGBM (calibrated)"]
    assert report.split.startswith("out-of-time")
    assert m["roc_auc"] > 0.7
    assert "P(no purchase in 90d) (BG/NBD)" not in report.metrics.index  # inactivity only
    # categorical attributes reach LightGBM natively
    prep = report.model.pipeline_.named_steps["prepare"]
    assert "plan" in prep.categories_ and "subscription" in prep.categories_["plan"]
