"""Unit tests of crmscore.estimators.sbg.SbgModel: input validation, weights, identities between
the predictions, the JSON bundle and the fit on unique (tenure, churned) tuples.

The published fits, parameter recovery and DERL against the direct sum are oracle tests:
tests/oracle/test_sbg_oracle.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln
from sklearn.base import clone

from crmscore.estimators.bundles import bundle_kind, load_sbg, save_sbg
from crmscore.estimators.gates import NotFittedModelError
from crmscore.estimators.sbg import SBG_FORMAT, SbgModel, sbg_log_likelihood


def simulate(alpha: float, beta: float, n: int, horizon: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lifetime = rng.geometric(rng.beta(alpha, beta, size=n))
    churned = lifetime <= horizon
    return np.minimum(lifetime, horizon), churned


@pytest.fixture(scope="module")
def data():
    tenure, churned = simulate(0.8, 2.0, 3000, horizon=18, seed=1)
    segment = np.where(np.arange(3000) % 3 == 0, "annual", "monthly")
    return tenure, churned, segment


@pytest.fixture(scope="module")
def fitted(data):
    tenure, churned, segment = data
    return SbgModel(min_segment_customers=100, min_segment_churned=10).fit(tenure, churned, segment=segment)


# -- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenure", "churned", "match"),
    [
        ([0, 2, 3], [True, False, True], r"tenure must be >= 1"),
        ([-1, 2, 3], [True, False, True], r"tenure must be >= 1"),
        ([1.0, np.nan, 3.0], [True, False, True], r"tenure has 1 missing"),
        ([1.5, 2, 3], [True, False, True], r"whole periods"),
        (["a", "b", "c"], [True, False, True], r"tenure must be numeric"),
        ([1, 2, 3], ["Yes", "No", "Yes"], r"churned must be boolean.*'Yes'"),
        ([1, 2, 3], [1.0, np.nan, 0.0], r"churned has missing values"),
        ([1, 2, 3], [0, 2, 1], r"churned must be boolean"),
        ([1, 2, 3], [True, False], r"churned has 2 values but tenure has 3"),
        ([1, 2, 3], [False, False, False], r"no churned customers"),
    ],
)
def test_bad_input_is_a_clear_value_error(tenure, churned, match):
    with pytest.raises(ValueError, match=match):
        SbgModel().fit(tenure, churned)


def test_pandas_nullable_boolean_with_na_is_refused():
    with pytest.raises(ValueError, match="churned"):
        SbgModel().fit(pd.Series([1, 2, 3]), pd.Series([True, None, False], dtype="boolean"))


def test_zero_one_integers_and_pandas_input_are_accepted(data):
    tenure, churned, _ = data
    a = SbgModel().fit(tenure, churned)
    b = SbgModel().fit(pd.Series(tenure), pd.Series(churned.astype(int)))
    assert (a.alpha_, a.beta_) == (b.alpha_, b.beta_)


@pytest.mark.parametrize(
    ("weights", "match"),
    [([1, -1, 1], "non-negative"), ([1, np.nan, 1], "finite"), ([1, 1], "weights has 2")],
)
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        SbgModel().fit([1, 2, 3], [True, False, True], weights=weights)


def test_segment_with_missing_labels_is_refused():
    with pytest.raises(ValueError, match="segment has missing values"):
        SbgModel().fit([1, 2, 3], [True, False, True], segment=["a", None, "b"])


def test_prediction_argument_checks(fitted):
    with pytest.raises(ValueError, match="discount_rate must be a positive rate"):
        fitted.derl([1], 0.0)
    with pytest.raises(ValueError, match="t must be >= 1"):
        fitted.retention_rate([0])
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        fitted.churn_probability([3], horizon=0)
    with pytest.raises(ValueError, match="recurring_revenue has missing"):
        fitted.clv([1, 2], [10.0, np.nan], 0.01)
    with pytest.raises(NotFittedModelError):
        SbgModel().survival([1])


# -- fitting -----------------------------------------------------------------------------


def test_weights_equal_repeated_rows():
    tenure = np.array([1, 1, 2, 3, 4, 4, 5])
    churned = np.array([True, False, True, True, False, True, False])
    weights = np.array([3, 1, 2, 5, 4, 1, 7])
    a = SbgModel().fit(tenure, churned, weights=weights)
    b = SbgModel().fit(np.repeat(tenure, weights), np.repeat(churned, weights))
    np.testing.assert_allclose([a.alpha_, a.beta_], [b.alpha_, b.beta_], rtol=1e-9)
    np.testing.assert_allclose([a.se_["alpha"], a.se_["beta"]], [b.se_["alpha"], b.se_["beta"]], rtol=1e-6)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
    assert a.n_customers_ == b.n_customers_ == weights.sum()


def test_log_likelihood_is_the_per_customer_sum(data):
    tenure, churned, _ = data
    m = SbgModel().fit(tenure, churned)
    assert m.log_likelihood_ == pytest.approx(sbg_log_likelihood(m.alpha_, m.beta_, tenure, churned).sum())
    # and it is the maximum: nudging either parameter lowers it
    for da, db in [(1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99)]:
        assert sbg_log_likelihood(m.alpha_ * da, m.beta_ * db, tenure, churned).sum() < m.log_likelihood_


def test_sklearn_contract(fitted):
    params = fitted.get_params()
    assert params == {"min_segment_customers": 100, "min_segment_churned": 10, "tol": 1e-10}
    assert not hasattr(clone(fitted), "alpha_")


def test_one_million_customers_fit_on_unique_tuples():
    n, horizon = 1_000_000, 60
    tenure, churned = simulate(0.7, 1.2, n, horizon=horizon, seed=5)
    segment = np.array(["monthly", "one_year", "two_year"])[np.arange(n) % 3]
    model = SbgModel().fit(tenure, churned, segment=segment)
    assert model.n_customers_ == n
    assert model.n_unique_ <= horizon * 2 * 3
    assert model.diagnostics_["n_unique"] <= horizon * 2
    assert all(not s["fallback"] and s["n_unique"] <= horizon * 2 for s in model.segments_.values())


# -- predictions -------------------------------------------------------------------------


def test_prediction_identities(fitted):
    a, b = fitted.alpha_, fitted.beta_
    t = np.arange(0, 30)
    s = fitted.survival(t)
    assert s[0] == 1.0 and np.all(np.diff(s) < 0)
    np.testing.assert_allclose(fitted.retention_rate(t[1:]), s[1:] / s[:-1], rtol=1e-12)
    np.testing.assert_allclose(fitted.retention_rate(t[1:]), (b + t[1:] - 1) / (a + b + t[1:] - 1))
    # P(churn within h | active at t) = sum_{s=t+1}^{t+h} P(T = s) / S(t)
    pmf = np.exp(betaln(a + 1, b + np.arange(1, 40) - 1) - betaln(a, b))
    for tt, h in [(0, 1), (3, 1), (3, 6), (12, 12)]:
        expected = pmf[tt : tt + h].sum() / s[tt]
        assert fitted.churn_probability([tt], horizon=h)[0] == pytest.approx(expected, rel=1e-10)
    assert fitted.churn_probability([5])[0] == pytest.approx(1 - fitted.retention_rate([6])[0])


def test_clv_is_derl_times_revenue_and_grows_with_tenure(fitted):
    d = 1.1 ** (1 / 12) - 1
    tenure = np.array([0, 3, 12, 48])
    derl = fitted.derl(tenure, d)
    assert np.all(np.diff(derl) > 0)  # survivors are the better customers (heterogeneity)
    np.testing.assert_allclose(fitted.clv(tenure, [10, 20, 30, 40], d), derl * [10, 20, 30, 40])


def test_segments_and_unseen_labels(fitted):
    assert set(fitted.segments_) == {"annual", "monthly"}
    s = fitted.survival([6, 6, 6], segment=["annual", "monthly", "never-seen"])
    pooled = fitted.survival([6])[0]
    assert s[2] == pooled
    for value, name in [(s[0], "annual"), (s[1], "monthly")]:
        seg = fitted.segments_[name]
        assert value == pytest.approx(
            np.exp(betaln(seg["alpha"], seg["beta"] + 6) - betaln(seg["alpha"], seg["beta"]))
        )
    # one label broadcasts to all rows
    np.testing.assert_array_equal(
        fitted.derl([1, 2], 0.01, segment="annual"), fitted.derl([1, 2], 0.01, segment=["annual"] * 2)
    )


def test_small_segment_falls_back_to_the_pooled_fit(data):
    tenure, churned, segment = data
    m = SbgModel(min_segment_customers=1500).fit(tenure, churned, segment=segment)
    assert m.segments_["annual"]["fallback"] and not m.segments_["monthly"]["fallback"]
    assert m.segments_["annual"]["alpha"] == m.alpha_


# -- persistence -------------------------------------------------------------------------


def test_json_round_trip_reproduces_predictions(fitted, tmp_path):
    path = save_sbg(fitted, "clv_contractual", tmp_path / "bundle")
    assert {p.name for p in path.iterdir()} == {"sbg.json", "model.json"}
    assert bundle_kind(path) == "clv_contractual"
    assert json.loads((path / "sbg.json").read_text())["format"] == SBG_FORMAT
    loaded = load_sbg(path)
    assert type(loaded) is SbgModel and loaded.get_params() == fitted.get_params()
    assert (loaded.alpha_, loaded.beta_, loaded.se_) == (fitted.alpha_, fitted.beta_, fitted.se_)
    assert loaded.segments_ == json.loads(json.dumps(fitted.segments_))
    assert loaded.n_unique_ == fitted.n_unique_
    t, seg = np.array([1, 5, 20]), ["annual", "monthly", "x"]
    for method in ("survival", "retention_rate"):
        np.testing.assert_array_equal(
            getattr(loaded, method)(t, segment=seg), getattr(fitted, method)(t, segment=seg)
        )
    np.testing.assert_array_equal(loaded.derl(t, 0.01, segment=seg), fitted.derl(t, 0.01, segment=seg))
    np.testing.assert_array_equal(loaded.churn_probability(t, 3, seg), fitted.churn_probability(t, 3, seg))


def test_from_dict_refuses_another_format(fitted):
    data = fitted.to_dict() | {"format": "crmscore.clv/1"}
    with pytest.raises(ValueError, match="not a crmscore sBG model"):
        SbgModel.from_dict(data)
