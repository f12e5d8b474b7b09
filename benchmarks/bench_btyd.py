"""Benchmark: crmscore's BTYD summary and calibration/holdout split against lifetimes' own.

Generates random transactions with numpy (about 4.2 per customer over about three years,
several customers buying more than once on the same day), times
``crmscore.features.btyd.btyd_summary`` against ``lifetimes.utils.summary_data_from_transaction_data``
and ``crmscore.features.btyd.calibration_and_holdout`` against
``lifetimes.utils.calibration_and_holdout_data`` in the same run, asserts identical numbers and
prints the speed-up ratios.

Usage::

    python benchmarks/bench_btyd.py --customers 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

from crmscore.features.btyd import btyd_summary, calibration_and_holdout

START = pd.Timestamp("2023-01-01", tz="UTC")
DAYS = 3 * 365


def make_transactions(n_customers: int, seed: int) -> pd.DataFrame:
    """Random transactions: first purchase uniform over 3 years, ~4.2 rows per customer."""
    rng = np.random.default_rng(seed)
    n_rows = round(4.2 * n_customers)
    # every customer has at least one row; the rest are spread with a heavy tail
    extra = rng.choice(n_customers, size=n_rows - n_customers, p=None)
    cust = np.concatenate([np.arange(n_customers), extra])
    first_day = rng.integers(0, DAYS, size=n_customers)
    offset = rng.exponential(120.0, size=n_rows).astype(np.int64)
    offset[:n_customers] = 0
    day = np.minimum(first_day[cust] + offset, DAYS - 1)
    seconds = rng.integers(0, 86_400, size=n_rows)
    ts = START + pd.to_timedelta(day * 86_400 + seconds, unit="s")
    amount = np.round(rng.gamma(2.0, 25.0, size=n_rows) + 1.0, 2)
    ids = np.char.add("C", np.char.zfill(cust.astype(str), 7))
    order = rng.permutation(n_rows)
    return pd.DataFrame(
        {"customer_id": pd.array(ids[order], dtype="str"), "ts": ts[order], "amount": amount[order]}
    ).reset_index(drop=True)


def timed(fn, repeat: int = 1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def check_equal(ours: pd.DataFrame, theirs: pd.DataFrame, what: str) -> None:
    theirs = theirs.sort_index()
    assert list(ours.index) == list(theirs.index.astype(str)), f"{what}: customer index differs"
    assert list(ours.columns) == list(theirs.columns), f"{what}: columns differ"
    np.testing.assert_allclose(
        ours.to_numpy(), theirs.to_numpy(dtype=float), rtol=1e-9, atol=1e-9, err_msg=what
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="best of N for crmscore's functions")
    args = parser.parse_args()

    t0 = time.perf_counter()
    tx = make_transactions(args.customers, args.seed)
    elapsed = time.perf_counter() - t0
    print(f"generated {len(tx):,} transactions for {args.customers:,} customers in {elapsed:.1f} s")
    as_of = "2025-12-31"
    cal_end = "2025-06-30"
    naive = tx.assign(ts=tx["ts"].dt.tz_convert(None))
    end_cal = pd.Timestamp(cal_end) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    end_obs = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")

    results = []
    for period, unit, mult in (("D", "day", 1), ("D", "week", 7), ("W", "week", 1)):
        label = f"period={period} unit={unit}"
        ours, t_ours = timed(
            lambda p=period, u=unit: btyd_summary(tx, as_of, period=p, time_unit=u), args.repeat
        )
        theirs, t_lt = timed(
            lambda p=period, m=mult: summary_data_from_transaction_data(
                naive,
                "customer_id",
                "ts",
                "amount",
                observation_period_end=pd.Timestamp(as_of),
                freq=p,
                freq_multiplier=m,
            )
        )
        check_equal(ours, theirs, f"summary {label}")
        results.append((f"summary            {label}", t_ours, t_lt))

        ours, t_ours = timed(
            lambda p=period, u=unit: calibration_and_holdout(tx, cal_end, as_of, period=p, time_unit=u),
            args.repeat,
        )
        theirs, t_lt = timed(
            lambda p=period, m=mult: calibration_and_holdout_data(
                naive,
                "customer_id",
                "ts",
                calibration_period_end=end_cal,
                observation_period_end=end_obs,
                freq=p,
                freq_multiplier=m,
                monetary_value_col="amount",
            )
        )
        check_equal(ours, theirs, f"calibration/holdout {label}")
        results.append((f"calibration/holdout {label}", t_ours, t_lt))

    print(f"\n{'function':48s} {'crmscore s':>11s} {'lifetimes s':>12s} {'speed-up':>9s}")
    for name, t_ours, t_lt in results:
        print(f"{name:48s} {t_ours:11.2f} {t_lt:12.2f} {t_lt / t_ours:8.1f}x")
    print("\nall results identical to lifetimes (rtol=atol=1e-9)")
    targets = {"summary": 3.0, "calibration/holdout": 5.0}
    for name, t_ours, t_lt in results:
        need = targets["summary" if name.startswith("summary") else "calibration/holdout"]
        status = "ok" if t_lt / t_ours >= need else "BELOW TARGET"
        print(f"{name:48s} target >= {need:.0f}x: {status}")


if __name__ == "__main__":
    main()
