"""Metric and plot functions of crmscore.evaluation.binary, against sklearn and hand-computed values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from crmscore.evaluation import binary as ev


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, 4000)
    y = rng.random(4000) < p
    return y, p


def test_auc_pr_brier_match_sklearn(scored):
    y, p = scored
    assert ev.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert ev.pr_auc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert ev.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert ev.brier_score(y, p) == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)


def test_expected_calibration_error_by_hand():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.55, 0.65, 0.95])
    # uniform bins of 0.5: [0, .5): p=.05,.15 y=0,1 -> |.5-.1|=.4 (2 rows); [.5, 1]: p=.55,.65,.95
    # mean p=.7166.., y rate 2/3 -> |.6666-.7166|=.05 (3 rows)
    expected = (2 * 0.4 + 3 * abs(2 / 3 - (0.55 + 0.65 + 0.95) / 3)) / 5
    assert ev.expected_calibration_error(y, p, n_bins=2) == pytest.approx(expected, abs=1e-12)
    tab = ev.calibration_table(y, p, n_bins=2)
    assert tab["n"].tolist() == [2, 3]
    # a probability of exactly 1 falls in the last bin
    assert ev.calibration_table([1], [1.0], n_bins=10)["bin_upper"].iloc[0] == 1.0


def test_calibration_slope_recovers_known_miscalibration():
    rng = np.random.default_rng(1)
    p = expit(rng.normal(-0.5, 1.2, 60_000))
    y_cal = rng.random(p.size) < p
    slope, intercept = ev.calibration_slope_intercept(y_cal, p)
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)
    # outcomes twice as extreme as the scores: slope 2
    y_steep = rng.random(p.size) < expit(2.0 * logit(p))
    assert ev.calibration_slope_intercept(y_steep, p)[0] == pytest.approx(2.0, abs=0.1)


def test_fit_logistic_1d_matches_sklearn(scored):
    y, p = scored
    x = logit(p)
    slope, intercept = ev.fit_logistic_1d(x, y)
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(x[:, None], y)
    assert slope == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert intercept == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-6)


def test_fit_logistic_1d_does_not_diverge_under_separation():
    x = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    slope, intercept = ev.fit_logistic_1d(x, y)
    assert np.isfinite(slope) and np.isfinite(intercept)


def test_gains_table_lift_and_capture_by_hand():
    # 20 rows, scores descending 20..1; positives at ranks 1, 2, 3, 5, 11
    p = np.arange(20, 0, -1) / 20.0
    y = np.zeros(20, dtype=int)
    y[[0, 1, 2, 4, 10]] = 1
    tab = ev.gains_table(y, p, n_bins=10)
    assert tab["n"].tolist() == [2] * 10
    assert tab["positives"].tolist() == [2, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    base = 5 / 20
    assert tab["lift"].iloc[0] == pytest.approx(1.0 / base)
    assert tab["capture"].iloc[0] == pytest.approx(2 / 5)
    assert tab["capture"].iloc[-1] == pytest.approx(1.0)
    assert tab["cumulative_lift"].iloc[1] == pytest.approx((3 / 4) / base)
    assert ev.lift_at(y, p, 0.1) == pytest.approx(4.0)
    assert ev.capture_at(y, p, 0.1) == pytest.approx(0.4)
    # the decile's rows are those of the highest scores whatever the input order
    perm = np.random.default_rng(3).permutation(20)
    assert ev.gains_table(y[perm], p[perm])["positives"].tolist() == tab["positives"].tolist()


def test_gains_table_uneven_sizes_and_ties_are_deterministic():
    p = np.r_[np.full(7, 0.5), np.linspace(0, 0.4, 16)]
    y = np.r_[np.ones(7, dtype=int), np.zeros(16, dtype=int)]
    tab = ev.gains_table(y, p)
    assert tab["n"].sum() == 23
    assert tab["n"].max() - tab["n"].min() <= 1
    assert tab.equals(ev.gains_table(y, p))


def test_binary_metrics_and_table(scored):
    y, p = scored
    table = ev.metrics_table(y, {"model": p, "random": np.random.default_rng(2).random(p.size)})
    assert list(table.index) == ["model", "random"]
    for col in (
        "roc_auc",
        "pr_auc",
        "brier",
        "ece",
        "lift_top_decile",
        "capture_top_decile",
        "calibration_slope",
    ):
        assert col in table.columns
    assert table.loc["model", "roc_auc"] > table.loc["random", "roc_auc"]
    assert table.loc["model", "calibration_slope"] == pytest.approx(1.0, abs=0.2)
    assert table.loc["model", "lift_top_decile"] == pytest.approx(ev.lift_at(y, p, 0.1))


def test_single_feature_auc_flags_leaks_and_not_ids():
    rng = np.random.default_rng(4)
    n = 3000
    y = rng.random(n) < 0.3
    X = pd.DataFrame(
        {
            "leak": y + rng.normal(0, 0.01, n),
            "noise": rng.normal(size=n),
            "leak_missing": np.where(y, np.nan, rng.normal(size=n)),
            "row_id": pd.Categorical([f"id{i}" for i in range(n)]),
            "leak_category": pd.Categorical(np.where(y, "won", "open")),
        }
    )
    auc = ev.single_feature_auc(X, y)
    assert auc["leak"] > 0.99
    assert auc["leak_missing"] > 0.99
    assert auc["leak_category"] > 0.99
    assert auc["noise"] < 0.6
    assert auc["row_id"] < 0.6


def test_input_checks():
    with pytest.raises(ValueError, match="same length"):
        ev.roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError, match="binary"):
        ev.brier_score([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="missing"):
        ev.brier_score([0, 1], [0.1, np.nan])
    assert np.isnan(ev.roc_auc([1, 1], [0.2, 0.3]))


def test_plots_return_figures_without_pyplot(scored):
    from matplotlib.figure import Figure

    y, p = scored
    scores = {"model": p, "baseline": p**2}
    for fig in (
        ev.plot_roc(y, scores),
        ev.plot_pr(y, scores),
        ev.plot_calibration(y, scores),
        ev.plot_gains(y, scores),
    ):
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 2
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_import_has_no_side_effects():
    code = (
        "import sys, crmscore.evaluation.binary, crmscore.estimators.churn, crmscore.estimators.leads, "
        "crmscore.estimators.reasons; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'; "
        "assert 'lightgbm' not in sys.modules, 'lightgbm imported at import time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rank_auc_equals_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from crmscore.evaluation.binary import _auc_abs

    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.2
    for v in (rng.normal(size=5000), rng.integers(0, 4, 5000).astype(float), y + rng.normal(0, 2, 5000)):
        auc = roc_auc_score(y, v)
        assert _auc_abs(y.astype(np.int64), v) == pytest.approx(max(auc, 1 - auc), abs=1e-12)
