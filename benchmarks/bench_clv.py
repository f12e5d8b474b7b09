"""Benchmark: the lifetimes-equivalent CLV path, crmscore vs lifetimes, in the same run.

summary -> BG/NBD fit -> Gamma-Gamma fit -> 12-month CLV, on random transactions
(crmscore.ingest.synth: ~4.2 purchases per customer over three years), daily periods with time in weeks.
Prints per-stage times, ratios and the agreement of the numbers.

    .venv/bin/python benchmarks/bench_clv.py --customers 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def make_transactions(n: int, seed: int) -> tuple[pd.DataFrame, str]:
    """Purchases (refunds dropped) from crmscore.ingest.synth: a true BG/NBD + Gamma-Gamma process."""
    from crmscore.ingest.synth import generate

    crm = generate(n, seed=seed, leads_per_customer=0.0)
    tx = crm.tables["transactions"]
    tx = tx.loc[tx["amount"] > 0, ["customer_id", "ts", "amount"]]
    return (
        pd.DataFrame(
            {
                "customer_id": tx["customer_id"].astype(object),
                "date": tx["ts"].dt.tz_localize(None),
                "amount": tx["amount"],
            }
        ),
        crm.truth["end"],
    )


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument(
        "--intervals", type=int, default=200, help="bootstrap draws for the interval timing (0: skip)"
    )
    args = ap.parse_args()

    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    from crmscore.estimators.clv import (
        ClvModel,
        fit_bgnbd,
        fit_gamma_gamma,
        monthly_discount_rate,
        to_lifetimes,
    )

    try:
        from crmscore.features.btyd import btyd_summary

        summary_source = "crmscore.features.btyd.btyd_summary"
    except ImportError:  # pragma: no cover
        btyd_summary = None
        summary_source = "local"

    tx, as_of = make_transactions(args.customers, args.seed)
    tx_utc = pd.DataFrame(
        {"customer_id": tx["customer_id"], "ts": tx["date"].dt.tz_localize("UTC"), "amount": tx["amount"]}
    )
    print(
        f"{args.customers:,} customers, {len(tx):,} transactions "
        f"({len(tx) / args.customers:.2f} per customer); "
        f"summary via {summary_source}"
    )
    d_m = monthly_discount_rate(0.10)
    times: dict[str, tuple[float, float]] = {}

    # ---- stage 1: summary
    lt_s, t_lt = timed(
        summary_data_from_transaction_data,
        tx,
        "customer_id",
        "date",
        "amount",
        observation_period_end=as_of,
        freq="D",
    )
    lt_s["recency"] /= 7.0
    lt_s["T"] /= 7.0
    our_s, t_our = timed(btyd_summary, tx_utc, as_of, period="D", time_unit="week", refunds="include")
    times["summary"] = (t_lt, t_our)
    lt_s.index = lt_s.index.astype(str)
    our_s2 = our_s.loc[lt_s.index]
    max_diff = float(
        np.max(
            np.abs(
                our_s2[["frequency", "recency", "T"]].to_numpy()
                - lt_s[["frequency", "recency", "T"]].to_numpy()
            )
        )
    )
    mv_rel = float(
        np.max(
            np.abs(our_s2["monetary_value"].to_numpy() - lt_s["monetary_value"].to_numpy())
            / np.maximum(lt_s["monetary_value"].to_numpy(), 1e-12)
        )
    )
    f, r, T, m = (lt_s[c] for c in ("frequency", "recency", "T", "monetary_value"))

    # ---- stage 2: BG/NBD
    bgf, t_lt = timed(BetaGeoFitter().fit, f, r, T)
    bg, t_our = timed(fit_bgnbd, our_s["frequency"], our_s["recency"], our_s["T"])
    times["BG/NBD fit"] = (t_lt, t_our)

    # ---- stage 3: Gamma-Gamma
    rep = lt_s["frequency"] > 0
    ggf, t_lt = timed(GammaGammaFitter().fit, f[rep], m[rep])
    orep = our_s["frequency"] > 0
    gg, t_our = timed(fit_gamma_gamma, our_s.loc[orep, "frequency"], our_s.loc[orep, "monetary_value"])
    times["Gamma-Gamma fit"] = (t_lt, t_our)

    # ---- stage 4: CLV
    clv_lt, t_lt = timed(
        ggf.customer_lifetime_value, bgf, f, r, T, m, time=args.months, discount_rate=d_m, freq="W"
    )
    model = ClvModel(time_unit="week", month_convention="lifetimes", discount_rate_annual=0.10)
    model.bgnbd_params_, model.gg_params_ = bg["params"], gg["params"]
    model.bgnbd_log_cov_, model.gg_log_cov_ = np.asarray(bg["log_cov"]), np.asarray(gg["log_cov"])
    clv_our, t_our = timed(
        model.customer_lifetime_value,
        our_s["frequency"],
        our_s["recency"],
        our_s["T"],
        our_s["monetary_value"],
        args.months,
    )
    times["CLV 12 months"] = (t_lt, t_our)

    print(f"\n{'stage':<18}{'lifetimes s':>12}{'crmscore s':>12}{'ratio':>9}")
    for k, (a, b) in times.items():
        print(f"{k:<18}{a:>12.3f}{b:>12.3f}{a / b:>8.1f}x")
    tl = sum(a for a, _ in times.values())
    to = sum(b for _, b in times.values())
    print(f"{'end to end':<18}{tl:>12.3f}{to:>12.3f}{tl / to:>8.1f}x")

    print("\nagreement")
    print(f"  summary: max |diff| frequency/recency/T = {max_diff:.2e}; monetary max rel diff = {mv_rel:.2e}")
    for name, ours, theirs in (
        ("BG/NBD", bg["params"], bgf.params_),
        ("Gamma-Gamma", gg["params"], ggf.params_),
    ):
        rel = {k: abs(ours[k] / theirs[k] - 1) for k in ours}
        print(
            f"  {name}: "
            + ", ".join(f"{k}={ours[k]:.6g} (lifetimes {theirs[k]:.6g}, rel {rel[k]:.1e})" for k in ours)
        )
    print(
        f"  objective (mean NLL): crmscore BG/NBD {bg['objective']:.10f} vs lifetimes "
        f"{bgf._negative_log_likelihood_:.10f}; GG {gg['objective'] - np.log(gg['spend_scale']) * 0:.10f}"
    )
    # same parameters -> same CLV (the prediction code itself)
    same = model.__class__(time_unit="week", month_convention="lifetimes")
    same.bgnbd_params_ = dict(bgf.params_)
    same.gg_params_ = dict(ggf.params_)
    clv_same = same.customer_lifetime_value(f, r, T, m, args.months, 0.10)
    rel_same = np.max(np.abs(clv_same / clv_lt.to_numpy() - 1))
    e2e = np.abs(pd.Series(clv_our, index=our_s.index).loc[lt_s.index].to_numpy() / clv_lt.to_numpy() - 1)
    print(f"  CLV with lifetimes' parameters: max rel diff {rel_same:.1e}")
    print(f"  CLV end to end (each its own fit): max rel diff {e2e.max():.1e}, median {np.median(e2e):.1e}")
    _ = to_lifetimes

    if args.intervals:
        _, t_pi = timed(model.predict_interval, our_s, n_bootstrap=args.intervals, horizon_months=args.months)
        print(f"\nprediction intervals ({args.intervals} draws, {len(our_s):,} customers): {t_pi:.2f} s")


if __name__ == "__main__":
    main()
