"""Benchmark: the sBG contractual-CLV fit on unique (tenure, churned) tuples against a naive per-row fit.

Simulates subscription customers (``theta ~ Beta(alpha, beta)``, geometric monthly tenures,
censored at a 72-month horizon, three contract segments), then times in the same run:

* ``SbgModel.fit`` (pooled + per-segment fits on unique (segment, tenure, churned) tuples);
* a naive pooled fit: the same optimiser and gradients, the likelihood summed over every row;
* scoring every customer: churn probability over 12 months, DERL and CLV.

It asserts that both pooled fits find the same parameters and prints the seconds and the speed-up.

Usage::

    python benchmarks/bench_sbg.py --customers 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from crmscore.estimators.sbg import SbgModel, _nll_grad_hess

SEGMENTS = {"month-to-month": (0.6, 1.4), "one-year": (1.2, 8.0), "two-year": (2.0, 25.0)}


def simulate(n: int, horizon: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tenure (months, censored at ``horizon``), churned, segment and monthly revenue per customer."""
    rng = np.random.default_rng(seed)
    names = np.array(list(SEGMENTS))
    seg = rng.integers(0, len(names), size=n)
    a = np.array([SEGMENTS[k][0] for k in names])[seg]
    b = np.array([SEGMENTS[k][1] for k in names])[seg]
    lifetime = rng.geometric(rng.beta(a, b))
    churned = lifetime <= horizon
    revenue = np.round(rng.gamma(4.0, 16.0, size=n), 2)
    return np.minimum(lifetime, horizon), churned, names[seg], revenue


def naive_fit(tenure: np.ndarray, churned: np.ndarray) -> tuple[float, float]:
    """The pooled fit with the likelihood evaluated on every row (no aggregation)."""
    t, c, w = tenure.astype(float), churned.astype(float), np.ones(len(tenure))

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g, _ = _nll_grad_hess(x, t, c, w)
        return f, g

    res = minimize(
        fun, np.zeros(2), jac=True, method="L-BFGS-B", bounds=[(-15, 15)] * 2, options={"gtol": 1e-10}
    )
    alpha, beta = np.exp(res.x)
    return float(alpha), float(beta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--horizon", type=int, default=72, help="months observed (censoring)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tenure, churned, segment, revenue = simulate(args.customers, args.horizon, args.seed)
    print(f"simulated {args.customers:,} subscription customers, {churned.mean():.1%} churned")

    t0 = time.perf_counter()
    model = SbgModel().fit(tenure, churned, segment=segment)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pooled_only = SbgModel().fit(tenure, churned)
    pooled_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_alpha, naive_beta = naive_fit(tenure, churned)
    naive_s = time.perf_counter() - t0
    np.testing.assert_allclose([naive_alpha, naive_beta], [pooled_only.alpha_, pooled_only.beta_], rtol=1e-4)

    d = 1.1 ** (1 / 12) - 1
    t0 = time.perf_counter()
    p12 = model.churn_probability(tenure, horizon=12, segment=segment)
    clv = model.clv(tenure, revenue, d, segment=segment)
    score_s = time.perf_counter() - t0

    print(
        f"sBG fit, pooled + {len(model.segments_)} segments on {model.n_unique_} unique tuples: {fit_s:.2f} s"
    )
    print(
        f"sBG pooled fit on {pooled_only.n_unique_} unique tuples: {pooled_s:.2f} s  |  naive per-row "
        f"likelihood ({args.customers:,} rows): {naive_s:.2f} s  ({naive_s / pooled_s:.0f}x)"
    )
    print(
        f"scoring {args.customers:,} customers (12-month churn probability + DERL x revenue): "
        f"{score_s:.2f} s; mean P(churn 12m) {p12.mean():.3f}, mean CLV {clv.mean():.2f}"
    )
    for name, s in model.segments_.items():
        print(
            f"  {name}: alpha {s['alpha']:.3f} ± {s['se']['alpha']:.3f} (true {SEGMENTS[name][0]}), "
            f"beta {s['beta']:.3f} ± {s['se']['beta']:.3f} (true {SEGMENTS[name][1]})"
        )


if __name__ == "__main__":
    main()
