"""Pickle-free model bundles (crmscore.estimators.bundles, through crmscore.estimators.specs):
the loaded model reproduces the fitted one bit for bit.

The validated CRM and its CLV model are session fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig, Config
from crmscore.estimators.specs import SPECS, load_model
from crmscore.tracking import prepare_input

FAST = {"n_estimators": 30, "num_leaves": 7, "n_jobs": 1, "min_rows": 200, "min_positives": 30}


@pytest.fixture(scope="module")
def churn_frame(bundle_data):
    from crmscore.features.tables import build_churn_training_set

    return build_churn_training_set(bundle_data, "2025-10-02", Config(), observed_until="2025-12-31")


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_classifier_bundle_reproduces_the_fitted_model(churn_frame, tmp_path, calibration):
    from crmscore.estimators.churn import CalibratedChurnModel

    X = churn_frame.drop(columns=["churn"])
    model = CalibratedChurnModel.from_config(ChurnConfig(calibration=calibration, **FAST))
    model.fit(X, churn_frame["churn"])
    spec = SPECS["churn"]
    path = spec.save(model, tmp_path / "b")
    assert {p.name for p in path.iterdir()} == {"booster.txt", "model.json"}
    loaded_spec, loaded = load_model(path)
    assert loaded_spec is spec and type(loaded) is CalibratedChurnModel
    assert loaded.get_params() == model.get_params()
    # one prediction path: the loaded estimator is the fitted one, bit for bit
    np.testing.assert_array_equal(loaded.raw_score(X), model.raw_score(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))
    frame = spec.predict(loaded, prepare_input(spec, loaded, X))
    np.testing.assert_array_equal(frame["churn_probability"], model.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(frame["churn_risk"], model.predict_risk(X))
    contrib = loaded.contributions(X.head(20))
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_score(X.head(20)), atol=1e-9)
    with pytest.raises(ValueError, match="missing"):
        loaded.predict_frame(X.drop(columns=[loaded.features[0]]))


def test_classifier_bundle_of_the_first_format_still_loads(churn_frame, tmp_path):
    from crmscore.estimators.churn import CalibratedChurnModel

    X = churn_frame.drop(columns=["churn"])
    model = CalibratedChurnModel.from_config(ChurnConfig(**FAST)).fit(X, churn_frame["churn"])
    path = SPECS["churn"].save(model, tmp_path / "b")
    spec = json.loads((path / "model.json").read_text())
    spec["format"] = "crmscore.classifier/1"
    del spec["params"]
    (path / "model.json").write_text(json.dumps(spec))
    _, loaded = load_model(path)
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))


def test_clv_bundle_is_json_only(bundle_clv_model, tmp_path):
    model, summary = bundle_clv_model
    spec = SPECS["clv"]
    path = spec.save(model, tmp_path / "clv")
    json.loads((path / "clv.json").read_text())
    _, loaded = load_model(path)
    pd.testing.assert_frame_equal(spec.predict(loaded, summary), model.predict(summary))
