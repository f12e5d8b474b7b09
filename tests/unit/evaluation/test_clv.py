"""Holdout metrics of a CLV model (crmscore.evaluation.clv) on lifetimes' CDNOW sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.estimators.clv import ClvModel
from crmscore.evaluation.clv import holdout_metrics, point_metrics


# the CDNOW sample and its fit are session fixtures of tests/conftest.py
@pytest.fixture
def model(cdnow_model: ClvModel) -> ClvModel:
    return cdnow_model


@pytest.fixture
def cal_holdout(cdnow_cal_holdout: pd.DataFrame) -> pd.DataFrame:
    return cdnow_cal_holdout


def test_holdout_evaluation(model: ClvModel, cal_holdout: pd.DataFrame) -> None:
    res = holdout_metrics(model, cal_holdout)
    assert list(res.index) == ["model", "zero", "historical_rate"]
    assert res.loc["model", "mae"] < res.loc["zero", "mae"]
    assert res.loc["model", "rmse"] < res.loc["historical_rate", "rmse"]
    assert abs(res.loc["model", "aggregate_error_pct"]) < abs(
        res.loc["historical_rate", "aggregate_error_pct"]
    )
    assert res.loc["zero", "aggregate_error_pct"] == -100.0
    pm = point_metrics([1, 2, 3], [1, 2, 6])
    assert pm["mae"] == 1.0 and pm["rmse"] == pytest.approx(np.sqrt(3)) and pm["aggregate_error_pct"] == 50.0
