"""``max_train_rows`` (crmscore.estimators.churn): LightGBM fitted on a seeded, label-stratified
sample of the training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig
from crmscore.estimators.churn import CalibratedChurnModel

FAST = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 20, "n_jobs": 1}


def _frame(n_per_cutoff: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two cutoffs a year apart (training, then calibration) with a learnable label."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for cutoff in ("2024-01-01", "2025-01-01"):
        x = rng.normal(size=(n_per_cutoff, 3))
        p = 1.0 / (1.0 + np.exp(-(1.5 * x[:, 0] - x[:, 1] - 1.0)))
        labels.append(rng.random(n_per_cutoff) < p)
        parts.append(
            pd.DataFrame(
                {"cutoff": pd.Timestamp(cutoff, tz="UTC"), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]},
                index=pd.Index([f"C{i:05d}" for i in range(n_per_cutoff)], name="customer_id"),
            )
        )
    return pd.concat(parts), np.concatenate(labels)


def _model(**kw) -> CalibratedChurnModel:
    return CalibratedChurnModel(min_rows=100, min_positives=20, label_horizon_days=90, **FAST, **kw)


def test_cap_fits_on_a_stratified_sample() -> None:
    X, y = _frame()
    model = _model(max_train_rows=1200).fit(X, y)
    y_train = y[:3000]
    assert model.n_train_available_ == 3000
    assert model.n_train_ == 1200
    assert model.n_calibration_ == 3000  # calibration keeps every row
    # the sample keeps the class balance of the training rows
    booster = model.pipeline_.named_steps["model"].booster_
    assert booster.num_trees() == 30
    share = y_train.mean()
    sample = model._training_sample(y_train)
    assert sample is not None and len(sample) == 1200
    assert abs(y_train[sample].mean() - share) < 1.5 / 1200
    # seeded: the same fit twice gives the same probabilities
    again = _model(max_train_rows=1200).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))
    # a different seed draws another sample
    other = _model(max_train_rows=1200, random_state=1)._training_sample(y_train)
    assert not np.array_equal(sample, other)


def test_no_cap_or_small_data_uses_every_row() -> None:
    X, y = _frame(n_per_cutoff=1000)
    for cap in (None, 1000, 5000):
        model = _model(max_train_rows=cap).fit(X, y)
        assert model.n_train_ == model.n_train_available_ == 1000


def test_cap_is_a_config_key() -> None:
    assert ChurnConfig().max_train_rows == 300_000
    model = CalibratedChurnModel.from_config(ChurnConfig(max_train_rows=5000))
    assert model.max_train_rows == 5000
    with pytest.raises(ValueError, match="max_train_rows"):
        ChurnConfig(max_train_rows=10)
