"""Lead-scoring model against the generator's truth; score, grade, reasons and gates.

True probability
----------------
The generator draws each lead's conversion from a known logistic model of its attributes
(``latent["leads"]["p_convert"]``, the probability of ever converting) and decides the lead a
``Gamma(shape k, scale s)`` delay ``D`` after creation (``truth["params"]``:
``lead_decision_shape``, ``lead_decision_scale_days``), independent of the outcome. A lost lead
gets no date, so at the cutoff a lead is "open" if it has not converted yet. For a lead of age
``a`` days at the end of the cutoff day, open then, the probability of the label (converted
within ``N = 90`` days of creation) is

    P = p (F(N) - F(a)) / (p (1 - F(a)) + 1 - p),    F = CDF of D.

Activities are left out of the test data: the generator gives converting leads more of them,
which would carry information beyond ``p_convert`` and age.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

from crmscore.config import Config, LeadsConfig
from crmscore.core.schema import CRMData
from crmscore.core.time import cutoff_end
from crmscore.estimators.gates import TooFewPositivesError, WindowOverlapError
from crmscore.estimators.leads import LeadScoringModel, evaluate_leads, lead_grade, lead_score
from crmscore.evaluation.binary import binary_metrics
from crmscore.features.tables import build_lead_training_set
from crmscore.ingest.synth import generate

LAST_CUTOFF = "2025-09-30"
FAST = {"n_estimators": 150, "num_leaves": 7, "min_child_samples": 50, "n_jobs": 1}


def _cfg(**kw) -> LeadsConfig:
    base = {"min_rows": 200, "min_positives": 50, **FAST}
    base.update(kw)
    return LeadsConfig(**base)


@pytest.fixture(scope="module")
def synth():
    return generate(30_000, seed=3, leads_per_customer=6)


@pytest.fixture(scope="module")
def leads(synth):
    data = CRMData(leads=synth.tables["leads"])
    frame = build_lead_training_set(
        data, LAST_CUTOFF, Config(), n_cutoffs=5, step_days=90, observed_until="2025-12-31"
    )
    return frame, evaluate_leads(frame, _cfg())


def _true_probability(synth, ids: pd.Index, as_of: str, window_days: int) -> np.ndarray:
    prm = synth.truth["params"]
    p = synth.latent["leads"].set_index("lead_id")["p_convert"].reindex(ids).to_numpy()
    created = synth.tables["leads"].set_index("lead_id")["created_at"].reindex(ids)
    age = ((cutoff_end(as_of) - created) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    delay = stats.gamma(prm["lead_decision_shape"], scale=prm["lead_decision_scale_days"])
    return p * (delay.cdf(window_days) - delay.cdf(age)) / (p * delay.sf(age) + 1.0 - p)


def test_lead_model_matches_truth_out_of_time(synth, leads):
    _frame, report = leads
    assert report.split.startswith("out-of-time") and LAST_CUTOFF in report.split
    assert report.model.calibration_split_.startswith("later window")
    preds = report.predictions
    assert preds["converted"].sum() > 300
    truth = binary_metrics(preds["converted"], _true_probability(synth, preds.index, LAST_CUTOFF, 90))
    m = report.metrics.loc["LightGBM (calibrated)"]
    assert abs(m["roc_auc"] - truth["roc_auc"]) <= 0.02, (m["roc_auc"], truth["roc_auc"])
    assert 0.8 <= m["calibration_slope"] <= 1.2
    assert m["ece"] < 0.02
    assert "logistic regression (all attributes)" in report.metrics.index


def test_score_and_grade():
    assert lead_score([0.0, 0.004, 0.005, 0.5, 1.0]).tolist() == [0, 0, 1, 50, 100]
    grades = lead_grade([100, 75, 74, 50, 25, 24, 0], {"A": 75, "B": 50, "C": 25})
    assert grades.tolist() == ["A", "A", "B", "B", "C", "D", "D"]
    with pytest.raises(ValueError, match="C <= B <= A"):
        lead_grade([1], {"A": 10, "B": 50, "C": 25})
    with pytest.raises(ValueError):
        lead_score([1.5])


def test_predict_frame_scores_grades_and_reasons(leads):
    from crmscore.estimators.reasons import rows_to_explain

    frame, report = leads
    X = frame.drop(columns=["converted"]).sample(1000, random_state=0)
    a_cut = float(np.percentile(report.model.predict_score(X), 95))
    grades = {"A": a_cut, "B": a_cut / 2, "C": a_cut / 4}
    model = clone(report.model).set_params(thresholds=grades)
    model.__dict__.update({k: v for k, v in report.model.__dict__.items() if k.endswith("_")})
    out = model.predict_frame(X)
    assert list(out.columns) == ["conversion_probability", "lead_score", "lead_grade"]
    assert out["lead_score"].between(0, 100).all()
    np.testing.assert_array_equal(out["lead_score"], np.floor(100 * out["conversion_probability"] + 0.5))
    a = (out["lead_grade"] == "A").to_numpy()
    assert a.any()
    mask = rows_to_explain(
        out["conversion_probability"].to_numpy(), groups=out["lead_grade"], explain_groups=("A",)
    )
    np.testing.assert_array_equal(mask, a)
    first = json.loads(model.reasons_json(X[a])[0])
    assert {r["direction"] for r in first} <= {"increases", "decreases"}
    np.testing.assert_allclose(model.contributions(X).sum(axis=1).to_numpy(), model.raw_score(X), atol=1e-6)


def test_lead_in_training_and_evaluation_is_refused(synth):
    data = CRMData(leads=synth.tables["leads"])
    # cutoffs 30 days apart: leads still open at both are in both parts
    frame = build_lead_training_set(data, LAST_CUTOFF, Config(), n_cutoffs=2, step_days=30)
    with pytest.raises(WindowOverlapError):
        evaluate_leads(frame, _cfg())


def test_too_few_conversions_is_refused(leads):
    frame, _ = leads
    with pytest.raises(TooFewPositivesError, match=r"needs at least 100000 of each \(min_positives\)"):
        LeadScoringModel.from_config(_cfg(min_positives=100_000)).fit(
            frame.drop(columns=["converted"]), frame["converted"]
        )


def test_from_config_reads_the_leads_block():
    model = LeadScoringModel.from_config(LeadsConfig(grade_thresholds={"A": 60, "B": 40, "C": 20}))
    params = model.get_params()
    assert params["thresholds"] == {"A": 60, "B": 40, "C": 20}
    assert params["min_positives"] == 120 and params["label_horizon_days"] is None
