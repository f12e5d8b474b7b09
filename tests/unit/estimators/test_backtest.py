"""Out-of-time backtests (crmscore.estimators.backtest): overlapping label windows are refused."""

from __future__ import annotations

import pytest

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.estimators.backtest import out_of_time_split
from crmscore.estimators.churn import CalibratedChurnModel
from crmscore.estimators.gates import WindowOverlapError, check_no_overlap
from crmscore.features.tables import build_churn_training_set
from helpers import CHURN_FAST as FAST

LAST_CUTOFF = "2025-09-30"


def test_gate_same_customer_in_overlapping_label_windows(churn_synth):
    data = CRMData(
        customers=churn_synth.tables["customers"][["customer_id", "created_at"]],
        transactions=churn_synth.tables["transactions"],
    )
    # cutoffs 30 days apart with a 90-day horizon: label windows overlap
    frame = build_churn_training_set(data, LAST_CUTOFF, Config(), n_cutoffs=2, step_days=30)
    with pytest.raises(WindowOverlapError, match="same label period"):
        out_of_time_split(frame, "churn", horizon_days=90)
    with pytest.raises(WindowOverlapError, match="calibration"):
        CalibratedChurnModel(**FAST, min_rows=10, min_positives=10, label_horizon_days=90).fit(
            frame.drop(columns=["churn"]), frame["churn"]
        )
    # 90 days apart is fine
    check_no_overlap(
        ["c1"], ["c1"], train_cutoffs=["2025-01-01"], eval_cutoffs=["2025-04-01"], horizon_days=90
    )
    # without dates any shared record is refused
    with pytest.raises(WindowOverlapError):
        check_no_overlap(["c1", "c2"], ["c2", "c3"])
