"""The training record of a classifier's inputs (crmscore.estimators.preparer.FramePreparer
``missing_share_`` / ``profile``) through the bundle (crmscore.estimators.bundles): recorded at
fit on the training rows, saved, loaded; bundles older than the record still load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmscore.config import InputChecksConfig
from crmscore.core.score_contract import InputGuardError
from crmscore.estimators.bundles import CLASSIFIER_FORMAT
from crmscore.estimators.churn import CalibratedChurnModel
from crmscore.estimators.preparer import FeatureProfile
from crmscore.estimators.specs import SPECS, load_model
from crmscore.scoring.input_checks import check_inputs, profile_of

SMALL = {"n_estimators": 10, "num_leaves": 7, "n_jobs": 1, "min_rows": 100, "min_positives": 20}


def _rows(n: int, seed: int, spend_missing: float, plan_missing: float) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, n)
    plan = rng.choice(np.array(["basic", "pro", "team"], dtype=object), n)
    y = rng.random(n) < 1 / (1 + np.exp(-(spend - 100) / 60))
    spend[rng.random(n) < spend_missing] = np.nan
    plan[rng.random(n) < plan_missing] = None
    X = pd.DataFrame({"spend": spend, "plan": plan, "age": rng.integers(18, 80, n).astype(float)})
    X.index = pd.Index([f"C{seed}-{i}" for i in range(n)], name="customer_id")
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """A churn model trained on 2,000 rows (``spend`` 10 %, ``plan`` 25 % missing), calibrated on
    1,000 other rows with ``spend`` half missing."""
    X, y = _rows(2000, 3, 0.10, 0.25)
    X_cal, y_cal = _rows(1000, 4, 0.5, 0.0)
    model = CalibratedChurnModel(**SMALL, time_column=None).fit(X, y, X_calib=X_cal, y_calib=y_cal)
    return model, X


def test_the_record_is_the_missing_share_of_the_training_rows(fitted):
    model, X = fitted
    prep = model.preparer_
    assert prep.missing_share_ == {
        "spend": float(X["spend"].isna().mean()),  # the training rows' share, not the calibration's
        "plan": float(X["plan"].isna().mean()),
        "age": 0.0,
    }
    assert 0.07 < prep.missing_share_["spend"] < 0.13
    assert [(p.name, p.kind) for p in prep.profile()] == [
        ("spend", "numeric"),
        ("plan", "categorical"),
        ("age", "numeric"),
    ]


def test_bundle_round_trip_of_the_record(fitted, tmp_path):
    model, X = fitted
    path = SPECS["churn"].save(model, tmp_path / "b")
    saved = json.loads((path / "model.json").read_text())
    assert saved["format"] == CLASSIFIER_FORMAT == "crmscore.classifier/3"
    assert saved["training_inputs"] == {"missing_share": model.preparer_.missing_share_}
    spec, loaded = load_model(path)
    assert profile_of(spec, loaded) == profile_of(spec, model)
    plan = next(p for p in profile_of(spec, loaded) if p.name == "plan")
    assert plan == FeatureProfile("plan", "categorical", model.preparer_.missing_share_["plan"],
                                  ("basic", "pro", "team"))  # fmt: skip
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))


def test_a_bundle_without_the_record_loads_and_is_checked_as_far_as_it_can_be(fitted, tmp_path):
    model, X = fitted
    path = SPECS["churn"].save(model, tmp_path / "old")
    doc = json.loads((path / "model.json").read_text())
    doc["format"] = "crmscore.classifier/2"
    del doc["training_inputs"]
    (path / "model.json").write_text(json.dumps(doc))
    spec, loaded = load_model(path)
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))
    profile = profile_of(spec, loaded)
    assert [p.missing_share for p in profile] == [None, None, None]
    assert next(p for p in profile if p.name == "plan").levels == ("basic", "pro", "team")
    limits = InputChecksConfig()
    assert check_inputs("churn", profile, X, limits).findings == ()
    with pytest.raises(InputGuardError, match="'plan'"):
        check_inputs("churn", profile, X.assign(plan="enterprise"), limits)
    with pytest.raises(InputGuardError, match="'age' was numeric at training but arrives as text"):
        check_inputs("churn", profile, X.assign(age="x12"), limits)


def test_the_clv_inputs_are_numeric_and_never_missing_at_training():
    profile = SPECS["clv"].profile(None)
    assert profile == [
        FeatureProfile(c, "numeric", 0.0) for c in ("frequency", "recency", "T", "monetary_value")
    ]
