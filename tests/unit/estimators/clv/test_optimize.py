"""The BG/NBD fit (crmscore.estimators.clv.optimize) on lifetimes' CDNOW sample: an actionable
error when it fails, the analytic Hessian, the large-data path (subsample start, then Newton)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.estimators.clv import ClvFitError, fit_bgnbd


# the CDNOW sample is a session fixture of tests/conftest.py
@pytest.fixture
def summary(cdnow_summary: pd.DataFrame) -> pd.DataFrame:
    return cdnow_summary


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
