"""Oracle tests of the shifted-beta-geometric model (crmscore.estimators.sbg).

Published values: Fader & Hardie (2007), "How to project customer retention", the two cohorts of
1,000 customers observed for seven years: "regular" alpha = 0.704, beta = 1.182 and "high end"
alpha = 0.668, beta = 3.806. Recovery of known parameters on simulated tenures (and calibration
of the delta-method standard errors over repeated simulations), DERL (Fader & Hardie 2010)
against its closed form and the direct discounted sum, and per-segment recovery.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import betaln

from crmscore.estimators.sbg import SbgModel, derl_closed_form

REGULAR = (1000, 631, 468, 382, 326, 289, 262, 241)
HIGH_END = (1000, 869, 743, 653, 593, 551, 517, 491)


def cohort_tuples(survivors: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Survivor counts in years 0..n -> (tenure, churned, weights): those lost in year t churned
    at tenure t; the survivors of year n are censored at tenure n."""
    s = np.asarray(survivors)
    n = len(s) - 1
    tenure = np.r_[np.arange(1, n + 1), n]
    churned = np.r_[np.ones(n, dtype=bool), False]
    weights = np.r_[-np.diff(s), s[-1]].astype(float)
    return tenure, churned, weights


def simulate(alpha: float, beta: float, n: int, horizon: int, rng: np.random.Generator):
    """theta ~ Beta(alpha, beta), lifetime T ~ Geometric(theta) on {1, 2, ...}, censored at ``horizon``."""
    theta = rng.beta(alpha, beta, size=n)
    lifetime = rng.geometric(theta)
    churned = lifetime <= horizon
    return np.minimum(lifetime, horizon), churned


def sig3(x: float) -> str:
    return f"{x:.3g}"


@pytest.mark.parametrize(
    ("survivors", "alpha", "beta"),
    [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)],
    ids=["regular", "high_end"],
)
def test_published_fits_to_three_significant_figures(survivors, alpha, beta):
    tenure, churned, weights = cohort_tuples(survivors)
    model = SbgModel().fit(tenure, churned, weights=weights)
    assert (sig3(model.alpha_), sig3(model.beta_)) == (sig3(alpha), sig3(beta))
    assert model.diagnostics_["converged"]
    assert model.n_customers_ == 1000
    # the fitted curve reproduces the survivors it was fitted on within a few percent
    fitted = 1000 * model.survival(np.arange(8))
    np.testing.assert_allclose(fitted, survivors, rtol=0.06)


def test_recovers_true_parameters_on_simulated_tenures():
    rng = np.random.default_rng(18)
    alpha, beta = 0.9, 2.5
    tenure, churned = simulate(alpha, beta, 20_000, horizon=24, rng=rng)
    model = SbgModel().fit(tenure, churned)
    z_alpha = (model.alpha_ - alpha) / model.se_["alpha"]
    z_beta = (model.beta_ - beta) / model.se_["beta"]
    assert abs(z_alpha) < 4 and abs(z_beta) < 4, (model.alpha_, model.beta_, model.se_)
    assert model.se_["alpha"] < 0.1 * alpha and model.se_["beta"] < 0.1 * beta


def test_standard_errors_are_calibrated_over_repeated_simulations():
    """Over 200 simulated data sets the spread of the estimates matches the mean delta-method
    standard error and the Wald 95 % intervals cover the truth about 95 % of the time."""
    rng = np.random.default_rng(7)
    alpha, beta, reps = 0.7, 1.5, 200
    est, se = np.empty((reps, 2)), np.empty((reps, 2))
    for i in range(reps):
        tenure, churned = simulate(alpha, beta, 4000, horizon=12, rng=rng)
        m = SbgModel().fit(tenure, churned)
        est[i] = m.alpha_, m.beta_
        se[i] = m.se_["alpha"], m.se_["beta"]
    ratio = est.std(axis=0, ddof=1) / se.mean(axis=0)
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio
    coverage = (np.abs(est - [alpha, beta]) <= 1.96 * se).mean(axis=0)
    assert np.all((coverage > 0.88) & (coverage < 0.99)), coverage


def direct_derl(alpha: float, beta: float, tenure: int, d: float) -> float:
    """sum_{s > t} S(s) / S(t) / (1 + d) ** (s - t - 1), truncated where the terms are < 1e-17."""
    k = np.arange(int(40 / np.log1p(d)) + 10)
    return float(
        np.exp(betaln(alpha, beta + tenure + k + 1) - betaln(alpha, beta + tenure) - k * np.log1p(d)).sum()
    )


@pytest.mark.parametrize(("alpha", "beta"), [(0.704, 1.182), (0.668, 3.806), (3.0, 40.0), (0.05, 0.3)])
@pytest.mark.parametrize("d", [0.1, 1.1 ** (1 / 12) - 1, 0.001])
def test_derl_equals_the_direct_discounted_sum(alpha, beta, d):
    model = SbgModel()
    model.alpha_, model.beta_ = alpha, beta  # a fitted state: DERL depends on the parameters only
    tenure = np.array([0, 1, 5, 24, 72, 500])
    ours = model.derl(tenure, d)
    direct = np.array([direct_derl(alpha, beta, t, d) for t in tenure])
    np.testing.assert_allclose(ours, direct, rtol=1e-9)
    closed = derl_closed_form(alpha, beta, tenure, d)
    ok = np.isfinite(closed)  # scipy's hyp2f1 is NaN near z = 1 for large beta + t
    assert ok[:3].all()
    np.testing.assert_allclose(ours[ok], closed[ok], rtol=1e-8)
    # CLV is DERL times the recurring revenue
    np.testing.assert_allclose(model.clv(tenure, 50.0, d), 50.0 * ours)


def test_derl_is_right_where_hyp2f1_fails():
    """At beta + t = 501 and d = 0.001 scipy's hyp2f1 returns NaN (scipy 1.x); the posterior
    integral still equals the direct sum."""
    model = SbgModel()
    model.alpha_, model.beta_ = 0.704, 1.182
    value = model.derl([500], 0.001)[0]
    assert value == pytest.approx(direct_derl(0.704, 1.182, 500, 0.001), rel=1e-9)


def test_derl_at_one_renewal_matches_the_individual_level_formula_for_a_homogeneous_base():
    """With alpha, beta large and theta = alpha / (alpha + beta) fixed, DERL tends to
    FH 2010's (1 - theta)(1 + d) / (d + theta)."""
    model = SbgModel()
    model.alpha_, model.beta_ = 2e5, 8e5
    theta, d = 0.2, 0.1
    assert model.derl([0], d)[0] == pytest.approx((1 - theta) * (1 + d) / (d + theta), rel=1e-4)


def test_per_segment_fit_recovers_two_different_segments():
    rng = np.random.default_rng(3)
    true = {"monthly": (0.5, 1.5), "annual": (2.0, 12.0)}
    parts = [(simulate(a, b, 15_000, horizon=36, rng=rng), name) for name, (a, b) in true.items()]
    tenure = np.concatenate([p[0][0] for p in parts])
    churned = np.concatenate([p[0][1] for p in parts])
    segment = np.concatenate([np.full(15_000, name) for _, name in parts])
    # a third, tiny segment falls back to the pooled fit
    tenure = np.r_[tenure, [3, 5, 7]]
    churned = np.r_[churned, [True, False, True]]
    segment = np.r_[segment, ["trial"] * 3]
    model = SbgModel().fit(tenure, churned, segment=segment)
    for name, (a, b) in true.items():
        seg = model.segments_[name]
        assert not seg["fallback"]
        assert abs(seg["alpha"] - a) < 4 * seg["se"]["alpha"], (name, seg)
        assert abs(seg["beta"] - b) < 4 * seg["se"]["beta"], (name, seg)
    assert model.segments_["trial"]["fallback"]
    assert (model.segments_["trial"]["alpha"], model.segments_["trial"]["beta"]) == (
        model.alpha_,
        model.beta_,
    )
    # predictions use each row's segment
    r = model.retention_rate([2, 2, 2], segment=["monthly", "annual", "trial"])
    for value, name in zip(r, ["monthly", "annual", "trial"], strict=True):
        s = model.segments_[name]
        assert value == pytest.approx((s["beta"] + 1) / (s["alpha"] + s["beta"] + 1))
