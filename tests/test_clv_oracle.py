"""Oracle and equivalence tests of crmscore.estimators.clv on lifetimes' bundled CDNOW sample.

Published values: Fader, Hardie & Lee (2005a) BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426,
LL=-9582.4; Fader & Hardie (2013) Gamma-Gamma p=6.25, q=3.74, v=15.44 (calibration period to
1997-09-30, daily periods, time in weeks = days / 7).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import calibration_and_holdout_data
from sklearn.base import clone

from crmscore.config import ClvConfig
from crmscore.estimators.clv import (
    DAYS_PER_MONTH,
    ClvFitError,
    ClvModel,
    fit_bgnbd,
    lifetimes_freq,
    load_cdnow_sample,
    monthly_discount_rate,
    to_lifetimes,
)
from crmscore.evaluation.clv import holdout_metrics, point_metrics

CAL_END = "1997-09-30"
OBS_END = "1998-06-30"


def sig3(x: float) -> str:
    return f"{x:.3g}"


@pytest.fixture(scope="module")
def cdnow_tx() -> pd.DataFrame:
    return load_cdnow_sample()


@pytest.fixture(scope="module")
def cal_holdout(cdnow_tx: pd.DataFrame) -> pd.DataFrame:
    """lifetimes' own calibration/holdout frame from the raw transactions, times in weeks."""
    ch = calibration_and_holdout_data(
        cdnow_tx, "customer_id", "date", CAL_END, OBS_END, freq="D", monetary_value_col="amount"
    )
    for c in ("recency_cal", "T_cal", "duration_holdout"):
        ch[c] = ch[c] / 7.0
    return ch


@pytest.fixture(scope="module")
def summary(cal_holdout: pd.DataFrame) -> pd.DataFrame:
    s = cal_holdout[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]]
    return s.set_axis(["frequency", "recency", "T", "monetary_value"], axis=1)


@pytest.fixture(scope="module")
def model(summary: pd.DataFrame) -> ClvModel:
    return ClvModel(time_unit="week").fit(summary)


@pytest.fixture(scope="module")
def lt_fitters(summary: pd.DataFrame) -> tuple[BetaGeoFitter, GammaGammaFitter]:
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


def test_penalizer_matches_lifetimes(summary: pd.DataFrame) -> None:
    m = ClvModel(penalizer=0.01).fit(summary)
    bgf = BetaGeoFitter(penalizer_coef=0.01).fit(summary["frequency"], summary["recency"], summary["T"])
    rep = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.01).fit(rep["frequency"], rep["monetary_value"])
    for k, v in m.bgnbd_params_.items():
        assert v == pytest.approx(bgf.params_[k], rel=1e-4)
    for k, v in m.gg_params_.items():
        assert v == pytest.approx(ggf.params_[k], rel=1e-4)


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


def test_prediction_intervals(model: ClvModel, summary: pd.DataFrame) -> None:
    pi = model.predict_interval(summary, n_bootstrap=200)
    pred = model.predict(summary)
    assert pi.index.equals(summary.index)
    assert (pi["expected_purchases_lower"] <= pi["expected_purchases_upper"]).all()
    assert (pi["predicted_clv_lower"] <= pi["predicted_clv_upper"]).all()
    # the point estimate lies inside the interval for (nearly) everyone
    inside = (pi["predicted_clv_lower"] <= pred["predicted_clv"] * (1 + 1e-9)) & (
        pred["predicted_clv"] <= pi["predicted_clv_upper"] * (1 + 1e-9)
    )
    assert inside.mean() > 0.97
    width = (pi["expected_purchases_upper"] - pi["expected_purchases_lower"]) / pred["expected_purchases"]
    assert 0 < width.median() < 1
    # wider interval level -> wider intervals (same draws)
    pi50 = model.predict_interval(summary, interval=0.5, n_bootstrap=200)
    assert (
        pi50["predicted_clv_upper"] - pi50["predicted_clv_lower"]
        <= pi["predicted_clv_upper"] - pi["predicted_clv_lower"] + 1e-9
    ).all()
    # draws reproduce the covariance
    bg, _ = model.draw_parameters(4000, random_state=3)
    np.testing.assert_allclose(np.cov(np.log(bg).T), model.bgnbd_log_cov_, rtol=0.1, atol=3e-4)


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


def test_fit_failure_raises_actionable_error(summary: pd.DataFrame, monkeypatch) -> None:
    from scipy import optimize

    def failing(fun, x0, **kw):
        return optimize.OptimizeResult(
            x=np.asarray(x0),
            fun=np.nan,
            jac=np.full(len(x0), np.nan),
            success=False,
            message="boom",
            nit=0,
            nfev=1,
        )

    monkeypatch.setattr("crmscore.estimators.clv.optimize.minimize", failing)
    with pytest.raises(ClvFitError, match="penalizer") as exc:
        fit_bgnbd(summary["frequency"], summary["recency"], summary["T"], n_starts=3)
    assert "3 starting points" in str(exc.value) and "time unit" in str(exc.value)


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


def test_plots_return_figures(model: ClvModel, cal_holdout: pd.DataFrame, cdnow_tx: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    from crmscore.estimators.clv import plots as plots_clv

    figs = [
        plots_clv.plot_frequency_recency_matrix(model, T=39.0),
        plots_clv.plot_probability_alive_matrix(model, T=39.0),
        plots_clv.plot_calibration_vs_holdout_purchases(model, cal_holdout),
    ]
    days = (cdnow_tx["date"] - pd.Timestamp("1997-01-01")).dt.days.to_numpy() / 7.0
    d = cdnow_tx.assign(t=days).drop_duplicates(["customer_id", "t"]).sort_values(["customer_id", "t"])
    first = d.groupby("customer_id")["t"].transform("min")
    figs.append(
        plots_clv.plot_cumulative_transactions(
            model,
            d.groupby("customer_id")["t"].min(),
            d.loc[d["t"] > first, "t"],
            t_end=78.0,
            t_calibration=39.0,
        )
    )
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
    ax = figs[3].axes[0]
    actual, expected = (line.get_ydata() for line in ax.lines[:2])
    # FHL 2005a fig. 2: the model tracks cumulative repeat transactions closely
    assert abs(expected[-1] - actual[-1]) / actual[-1] < 0.05


def test_bgnbd_analytic_hessian_matches_finite_differences(summary: pd.DataFrame) -> None:
    from crmscore.estimators.clv import optimize as clv

    x, tx, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    data = clv._BgnbdData(x, tx / T.max(), T / T.max(), np.ones(len(x)))
    lp = np.log([0.3, 0.2, 0.9, 2.0])
    for pen in (0.0, 0.05):
        f, g, H = clv._bgnbd_objective(lp, data, pen, hessian=True)
        assert (f, *g) == (clv._bgnbd_objective(lp, data, pen)[0], *clv._bgnbd_objective(lp, data, pen)[1])
        num = clv._numerical_hessian(lambda z, p=pen: clv._bgnbd_objective(z, data, p)[1], lp, 1e-5)
        np.testing.assert_allclose(H, num, rtol=1e-6, atol=1e-8)


def test_bgnbd_subsample_start_then_newton_gives_the_same_fit(summary: pd.DataFrame, monkeypatch) -> None:
    """The large-data path (BFGS on a thinned subsample, Newton on all tuples) = the direct fit."""
    from crmscore.estimators import clv

    args = [summary[c] for c in ("frequency", "recency", "T")]
    direct = fit_bgnbd(*args)
    assert direct["start_sample_fraction"] == 1.0
    monkeypatch.setattr("crmscore.estimators.clv.optimize._BGNBD_START_TUPLES", 200)
    sub = fit_bgnbd(*args)
    assert sub["start_sample_fraction"] < 0.5 and sub["converged"] and sub["newton_iterations"] >= 1
    for k in ("r", "alpha", "a", "b"):
        assert sub["params"][k] == pytest.approx(direct["params"][k], rel=1e-7)
        assert sub["se"][k] == pytest.approx(direct["se"][k], rel=1e-5)
    assert sub["log_likelihood"] == pytest.approx(direct["log_likelihood"], rel=1e-12)
    per_customer = clv.bgnbd_log_likelihood(direct["params"], *args)
    assert direct["log_likelihood"] == pytest.approx(float(per_customer.sum()), rel=1e-12)
    assert sub["max_abs_gradient"] < 1e-8


def test_prediction_intervals_do_not_depend_on_threads(model: ClvModel, summary: pd.DataFrame) -> None:
    one = model.predict_interval(summary, n_bootstrap=50, n_jobs=1, chunk_size=97)
    two = model.predict_interval(summary, n_bootstrap=50, n_jobs=2, chunk_size=97)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert one.equals(model.predict_interval(summary, n_bootstrap=50, n_jobs=2))  # nor on chunks


@pytest.mark.parametrize("n_draws", [1, 2, 7, 200, 201])
def test_quantiles_by_sort_equal_numpy_bit_for_bit(n_draws: int) -> None:
    from crmscore.estimators.clv.intervals import _quantiles

    rng = np.random.default_rng(n_draws)
    for trial in range(12):
        a = rng.gamma(2.0, size=(n_draws, 250)) * 10.0 ** rng.integers(-3, 5)
        if trial % 3 == 0:
            a[rng.random(a.shape) < 0.01] = np.nan
        if trial % 4 == 0:
            a[rng.random(a.shape) < 0.01] = np.inf
        if trial % 5 == 0:
            a = np.round(a, 1)  # ties
        for qs in ([0.05, 0.95], [0.5], [0.0, 1.0], [0.025, 0.975], [1 / 3]):
            with np.errstate(invalid="ignore"):
                want = np.quantile(a, np.array(qs), axis=0)
            np.testing.assert_array_equal(_quantiles(a, np.array(qs)), want)


def test_prediction_intervals_equal_those_of_np_quantile(
    model: ClvModel, summary: pd.DataFrame, monkeypatch
) -> None:
    import crmscore.estimators.clv.intervals as clv

    fast = model.predict_interval(summary, n_bootstrap=60)
    monkeypatch.setattr(clv, "_quantiles", lambda a, qs: np.quantile(a, qs, axis=0))
    pd.testing.assert_frame_equal(fast, model.predict_interval(summary, n_bootstrap=60), check_exact=True)
