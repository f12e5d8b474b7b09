"""The CDNOW sample, its calibration/holdout split and its fit (session fixtures of tests/conftest.py)
under the short names the CLV estimator tests use."""

from __future__ import annotations

import pandas as pd
import pytest

from crmscore.estimators.clv import ClvModel


@pytest.fixture
def summary(cdnow_summary: pd.DataFrame) -> pd.DataFrame:
    return cdnow_summary


@pytest.fixture
def model(cdnow_model: ClvModel) -> ClvModel:
    return cdnow_model


@pytest.fixture
def cal_holdout(cdnow_cal_holdout: pd.DataFrame) -> pd.DataFrame:
    return cdnow_cal_holdout
