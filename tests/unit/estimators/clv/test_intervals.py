"""Prediction intervals (crmscore.estimators.clv.intervals) of the CLV model fitted on lifetimes'
CDNOW sample: coverage, width, independent of threads and chunks, quantiles equal to numpy's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.estimators.clv import ClvModel


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
