"""Oracle and equivalence tests of crmscore.estimators.clv on lifetimes' bundled CDNOW sample.

Published values: Fader, Hardie & Lee (2005a) BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426,
LL=-9582.4; Fader & Hardie (2013) Gamma-Gamma p=6.25, q=3.74, v=15.44 (calibration period to
1997-09-30, daily periods, time in weeks = days / 7).

The same fit's other properties (predictions, intervals, JSON, errors, plots) are unit tests:
unit/estimators/clv/, unit/evaluation/test_clv.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter

from crmscore.estimators.clv import (
    ClvModel,
    lifetimes_freq,
    monthly_discount_rate,
    to_lifetimes,
)

CAL_END = "1997-09-30"


def sig3(x: float) -> str:
    return f"{x:.3g}"


# the CDNOW sample and its fit are session fixtures of tests/conftest.py
@pytest.fixture
def summary(cdnow_summary: pd.DataFrame) -> pd.DataFrame:
    return cdnow_summary


@pytest.fixture
def model(cdnow_model: ClvModel) -> ClvModel:
    return cdnow_model


@pytest.fixture(scope="module")
def lt_fitters(cdnow_summary: pd.DataFrame) -> tuple[BetaGeoFitter, GammaGammaFitter]:
    summary = cdnow_summary
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    rep = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    return bgf, ggf


def test_cdnow_sample_shape(cdnow_tx: pd.DataFrame, summary: pd.DataFrame) -> None:
    assert cdnow_tx["customer_id"].nunique() == 2357
    assert len(summary) == 2357


def test_bgnbd_oracle(model: ClvModel) -> None:
    p = model.bgnbd_params_
    assert [sig3(p[k]) for k in ("r", "alpha", "a", "b")] == ["0.243", "4.41", "0.793", "2.43"]
    assert round(p["alpha"], 3) == 4.414 and round(p["b"], 3) == 2.426
    d = model.diagnostics_["bgnbd"]
    assert round(d["log_likelihood"], 1) == -9582.4
    assert d["converged"] and d["n"] == 2357 and d["n_unique"] < 2357


def test_gamma_gamma_oracle(model: ClvModel) -> None:
    p = model.gg_params_
    assert [sig3(p[k]) for k in ("p", "q", "v")] == ["6.25", "3.74", "15.4"]
    assert round(p["v"], 2) == 15.44
    assert model.diagnostics_["gamma_gamma"]["n"] == 946
    assert model.diagnostics_["n_nonpositive_spend_set_aside"] == 0


def test_params_and_standard_errors_match_lifetimes(model: ClvModel, lt_fitters) -> None:
    bgf, ggf = lt_fitters
    for ours, theirs in ((model.bgnbd_params_, bgf), (model.gg_params_, ggf)):
        for k, v in ours.items():
            assert v == pytest.approx(theirs.params_[k], rel=1e-4)
    se = {**model.diagnostics_["bgnbd"]["se"], **model.diagnostics_["gamma_gamma"]["se"]}
    for fitter in (bgf, ggf):
        for k, v in fitter.standard_errors_.items():
            assert se[k] == pytest.approx(v, rel=1e-3)
    # diagonal of the covariance = lifetimes' variance_matrix_ diagonal
    assert np.diag(model.bgnbd_cov_) == pytest.approx(np.diag(bgf.variance_matrix_.to_numpy()), rel=2e-3)


@pytest.mark.parametrize("t", [1.0, 4.345, 39.0, 52.0, 520.0])
def test_predictions_match_lifetimes(model: ClvModel, summary: pd.DataFrame, t: float) -> None:
    bgf, ggf = to_lifetimes(model)
    x, tx, T, m = (summary[c] for c in ("frequency", "recency", "T", "monetary_value"))
    np.testing.assert_allclose(
        model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
        bgf.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        model.conditional_probability_alive(x, tx, T), bgf.conditional_probability_alive(x, tx, T), rtol=1e-6
    )
    np.testing.assert_allclose(
        model.conditional_expected_average_profit(x, m),
        ggf.conditional_expected_average_profit(x, m),
        rtol=1e-6,
    )


@pytest.mark.parametrize("time_unit", ["week", "day"])
@pytest.mark.parametrize(("months", "annual"), [(12, 0.10), (3, 0.0), (24, 0.25)])
def test_clv_matches_lifetimes_in_equivalence_mode(
    model: ClvModel, summary: pd.DataFrame, time_unit: str, months: int, annual: float
) -> None:
    k = 7.0 if time_unit == "day" else 1.0
    m = ClvModel.from_dict({**model.to_dict(), "init_params": {**model.get_params(), "time_unit": time_unit}})
    m.set_params(month_convention="lifetimes")
    m.bgnbd_params_ = {**model.bgnbd_params_, "alpha": model.bgnbd_params_["alpha"] * k}
    s = summary.assign(recency=summary["recency"] * k, T=summary["T"] * k)
    bgf, ggf = to_lifetimes(m)
    theirs = ggf.customer_lifetime_value(
        bgf,
        s["frequency"],
        s["recency"],
        s["T"],
        s["monetary_value"],
        time=months,
        discount_rate=monthly_discount_rate(annual),
        freq=lifetimes_freq(time_unit),
    )
    ours = m.customer_lifetime_value(
        s["frequency"], s["recency"], s["T"], s["monetary_value"], months, annual
    )
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-6)
    pred = m.predict(s, horizon_months=months) if annual == m.discount_rate_annual else None
    if pred is not None:
        np.testing.assert_allclose(pred["predicted_clv"], theirs.to_numpy(), rtol=1e-6)


def test_weighted_fit_equals_unweighted(summary: pd.DataFrame, model: ClvModel) -> None:
    grouped = (
        summary.groupby(["frequency", "recency", "T", "monetary_value"]).size().rename("n").reset_index()
    )
    assert len(grouped) < len(summary)
    weighted = ClvModel().fit(grouped, sample_weight=grouped["n"])
    for k, v in model.bgnbd_params_.items():
        assert weighted.bgnbd_params_[k] == pytest.approx(v, rel=1e-6)
    for k, v in model.gg_params_.items():
        assert weighted.gg_params_[k] == pytest.approx(v, rel=1e-6)
    assert weighted.diagnostics_["bgnbd"]["log_likelihood"] == pytest.approx(-9582.43, abs=0.01)
    # lifetimes' weighted fit agrees as well
    bgf = BetaGeoFitter().fit(grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"])
    assert weighted.bgnbd_params_["alpha"] == pytest.approx(bgf.params_["alpha"], rel=1e-4)


def test_penalizer_matches_lifetimes(summary: pd.DataFrame) -> None:
    m = ClvModel(penalizer=0.01).fit(summary)
    bgf = BetaGeoFitter(penalizer_coef=0.01).fit(summary["frequency"], summary["recency"], summary["T"])
    rep = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.01).fit(rep["frequency"], rep["monetary_value"])
    for k, v in m.bgnbd_params_.items():
        assert v == pytest.approx(bgf.params_[k], rel=1e-4)
    for k, v in m.gg_params_.items():
        assert v == pytest.approx(ggf.params_[k], rel=1e-4)


def test_btyd_summary_gives_same_fit(cdnow_tx: pd.DataFrame, model: ClvModel) -> None:
    btyd = pytest.importorskip("crmscore.features.btyd")
    tx = pd.DataFrame(
        {
            "customer_id": cdnow_tx["customer_id"],
            "ts": cdnow_tx["date"].dt.tz_localize("UTC"),
            "amount": cdnow_tx["amount"],
        }
    )
    s = btyd.btyd_summary(tx, CAL_END, period="D", time_unit="week", refunds="include")
    m = ClvModel().fit(s)
    for k, v in model.bgnbd_params_.items():
        assert m.bgnbd_params_[k] == pytest.approx(v, rel=1e-6)
    for k, v in model.gg_params_.items():
        assert m.gg_params_[k] == pytest.approx(v, rel=1e-6)
