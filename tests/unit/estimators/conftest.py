"""The churn model of 6,000 synthetic customers, fitted once per session (test_churn.py,
test_gates.py, test_backtest.py)."""

from __future__ import annotations

import pytest

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.estimators.churn import evaluate_churn
from crmscore.features.tables import build_churn_training_set
from crmscore.ingest.synth import generate
from helpers import churn_cfg

LAST_CUTOFF = "2025-09-30"


@pytest.fixture(scope="session")
def churn_synth():
    return generate(6000, seed=7, leads_per_customer=1)


@pytest.fixture(scope="session")
def inactivity(churn_synth):
    """``(training frame, EvaluationReport)`` of the inactivity churn model (5 cutoffs, 90 days apart)."""
    tx = churn_synth.tables["transactions"]
    data = CRMData(customers=churn_synth.tables["customers"][["customer_id", "created_at"]], transactions=tx)
    frame = build_churn_training_set(
        data, LAST_CUTOFF, Config(), n_cutoffs=5, step_days=90, observed_until="2025-12-31"
    )
    report = evaluate_churn(frame, churn_cfg())
    return frame, report
