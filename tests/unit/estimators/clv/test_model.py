"""The CLV model (crmscore.estimators.clv.model) fitted on lifetimes' CDNOW sample: month
convention, predictions keep the index, the scikit-learn contract, JSON round trip, spend set
aside, input checks. Agreement with lifetimes and the published values: oracle/test_clv_oracle.py.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crmscore.config import ClvConfig
from crmscore.estimators.clv import DAYS_PER_MONTH, ClvModel


def test_exact_month_convention(model: ClvModel, summary: pd.DataFrame) -> None:
    assert model.month_length() == pytest.approx(DAYS_PER_MONTH / 7)
    assert DAYS_PER_MONTH == 30.4375
    h = model.horizon_in_time_units(12)
    assert h == pytest.approx(365.25 / 7)
    pred = model.predict(summary)
    x, tx, T = summary["frequency"], summary["recency"], summary["T"]
    np.testing.assert_allclose(
        pred["expected_purchases"],
        model.conditional_expected_number_of_purchases_up_to_time(h, x, tx, T),
        rtol=1e-12,
    )
    # no discount: CLV = spend * expected purchases over the horizon
    undiscounted = model.customer_lifetime_value(x, tx, T, summary["monetary_value"], 12, 0.0)
    np.testing.assert_allclose(
        undiscounted, pred["expected_avg_spend"] * pred["expected_purchases"], rtol=1e-10
    )
    assert (pred["predicted_clv"] < undiscounted).all() or (undiscounted == 0).any()


def test_predict_keeps_index_and_columns(model: ClvModel, summary: pd.DataFrame) -> None:
    shuffled = summary.sample(frac=1.0, random_state=1)
    pred = model.predict(shuffled)
    assert pred.index.equals(shuffled.index)
    assert list(pred.columns) == [
        "p_alive",
        "expected_purchases",
        "expected_avg_spend",
        "predicted_clv",
        "spend_imputed",
    ]
    assert pred["p_alive"].between(0, 1).all() and (pred["predicted_clv"] >= 0).all()
    np.testing.assert_allclose(
        pred.loc[summary.index].to_numpy(float), model.predict(summary).to_numpy(float)
    )


def test_sklearn_contract(model: ClvModel) -> None:
    params = model.get_params()
    assert params["time_unit"] == "week" and params["penalizer"] == 0.0
    fresh = clone(model)
    assert not hasattr(fresh, "bgnbd_params_")
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.predict(pd.DataFrame({"frequency": [0], "recency": [0], "T": [1], "monetary_value": [0]}))
    cfg = ClvConfig(penalizer=0.01, horizon_months=6)
    m = ClvModel.from_config(cfg, time_unit="day")
    assert (m.penalizer, m.horizon_months, m.time_unit) == (0.01, 6, "day")


def test_json_round_trip_identical_predictions(model: ClvModel, summary: pd.DataFrame, tmp_path) -> None:
    path = model.to_json(tmp_path / "clv.json")
    raw = json.loads(path.read_text())
    assert raw["units"]["time_unit"] == "week" and raw["versions"]["lifetimes"] == "0.11.3"
    assert raw["diagnostics"]["bgnbd"]["converged"] is True
    loaded = ClvModel.from_json(path)
    pd.testing.assert_frame_equal(loaded.predict(summary), model.predict(summary), check_exact=True)
    pd.testing.assert_frame_equal(
        loaded.predict_interval(summary, n_bootstrap=30),
        model.predict_interval(summary, n_bootstrap=30),
        check_exact=True,
    )
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.bgnbd_cov_, model.bgnbd_cov_)


def test_nonpositive_spend_set_aside(summary: pd.DataFrame, caplog) -> None:
    s = summary.copy()
    idx = s.index[s["frequency"] > 0][:3]
    s.loc[idx, "monetary_value"] = [0.0, -5.0, 0.0]
    with caplog.at_level(logging.WARNING, logger="crmscore.estimators.clv.model"):
        m = ClvModel().fit(s)
    assert m.diagnostics_["n_nonpositive_spend_set_aside"] == 3
    assert "3 repeat buyer(s) with monetary_value <= 0" in caplog.text
    assert m.diagnostics_["gamma_gamma"]["n"] == 943
    pred = m.predict(s)
    assert pred.loc[idx, "spend_imputed"].all() and pred["spend_imputed"].sum() == 3
    pop_mean = m.gg_params_["v"] * m.gg_params_["p"] / (m.gg_params_["q"] - 1)
    np.testing.assert_allclose(pred.loc[idx, "expected_avg_spend"], pop_mean)


def test_input_validation(summary: pd.DataFrame) -> None:
    bad = summary.copy()
    bad.iloc[0, bad.columns.get_loc("recency")] = bad["T"].iloc[0] + 1
    with pytest.raises(ValueError, match="recency > T"):
        ClvModel().fit(bad)
    with pytest.raises(ValueError, match="lacks column"):
        ClvModel().fit(summary.drop(columns="T"))
