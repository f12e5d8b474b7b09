"""Score write-back speed: ``crmscore.io.scores.write_scores`` vs pandas ``to_sql(method="multi")``.

Synthetic customer scores (assembled by ``crmscore.scoring.rows.assemble_customer_scores``) are
written to PostgreSQL and SQLite. For each store it prints rows/s and the time of each stage
(validate; prepare = DDL, replay and shrink checks; history = bulk load of the run into the
history table, ``COPY`` / ``executemany``; upsert = latest rows from the run's history rows;
commit) for three runs: a first run into empty tables (inserts), a second run (every latest row
replaced, history appended) and a replay of the second run (nothing changes). The baseline,
measured in the same process on the same rows, is pandas ``DataFrame.to_sql(method="multi")``
appending into an empty table — an insert only, without upsert, history or validation, so it
is a generous baseline.

Usage::

    python benchmarks/bench_score_write.py --rows 1000000 [--backends postgres sqlite]
        [--baseline-rows N] [--pg-url URL] [--explained 0.01]

The PostgreSQL URL defaults to ``CRMSCORE_TEST_PG_URL`` or a local ``test`` database; a fresh
schema is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crmscore.config import ScoringConfig
from crmscore.io.crm import create_engine
from crmscore.io.scores import write_scores
from crmscore.scoring.rows import assemble_customer_scores

REASON = (
    '[{"feature": "recency_days", "label": "Days since last purchase", "value": 120, "direction": '
    '"increases", "contribution": 0.512345}, {"feature": "overdue_ratio", "label": "Overdue ratio", '
    '"value": 2.4, "direction": "increases", "contribution": 0.301}, {"feature": "csat_mean", "label": '
    '"CSAT (mean)", "value": 4.5, "direction": "decreases", "contribution": -0.2}]'
)


def make_scores(
    n: int, run_id: str, as_of: str, seed: int, cfg: ScoringConfig, explained: float | None = None
) -> pd.DataFrame:
    """Assembled scores for ``n`` customers (10 % without a purchase).

    Reasons for the medium/high bands (~75 %, the old default) or, with ``explained``, for
    that share of the customers (0.01: the default ``scoring.explain_top_n`` at 1M).
    """
    rng = np.random.default_rng(seed)
    ids = pd.Index(np.char.add("C", np.arange(n).astype(str).astype("U")).astype(object), name="customer_id")
    buyer = np.arange(n) % 10 != 0
    feats = pd.DataFrame(
        {
            "recency_days": np.where(buyer, rng.integers(0, 400, n), np.nan),
            "n_purchases": np.where(buyer, rng.integers(1, 20, n), 0),
            "tenure_days": rng.integers(0, 1500, n).astype(float),
            "purchase_trend": rng.uniform(-1, 1, n),
            "tickets_open": rng.integers(0, 3, n).astype(float),
            "csat_mean": rng.uniform(1, 5, n),
            "rfm_segment": np.where(buyer, "Loyal", "No purchases"),
        },
        index=ids,
    )
    p = rng.uniform(0, 1, n)
    band = np.where(p >= 0.5, "high", np.where(p >= 0.25, "medium", "low"))
    with_reasons = band != "low" if explained is None else rng.random(n) < explained
    churn = pd.DataFrame(
        {"churn_probability": p, "churn_risk": band, "top_reasons": np.where(with_reasons, REASON, None)},
        index=ids,
    )
    b = ids[buyer]
    clv = rng.gamma(2.0, 100.0, len(b))
    ep = rng.uniform(0, 5, len(b))
    out = pd.DataFrame(
        {"p_alive": rng.uniform(0, 1, len(b)), "expected_purchases": ep, "predicted_clv": clv}, index=b
    )
    iv = pd.DataFrame(
        {
            "expected_purchases_lower": ep * 0.8,
            "expected_purchases_upper": ep * 1.3,
            "predicted_clv_lower": clv * 0.7,
            "predicted_clv_upper": clv * 1.5,
        },
        index=b,
    )
    return assemble_customer_scores(
        feats,
        churn,
        out,
        iv,
        as_of=as_of,
        run_id=run_id,
        model_versions={"churn": ("crmscore-churn", "1"), "clv": ("crmscore-clv", "1")},
        scored_at=datetime.now(UTC),
        previous=None,
        cfg=cfg,
    )


def _line(label: str, seconds: float, rows: int) -> str:
    return f"  {label:<34} {seconds:8.2f} s  {rows / seconds:>12,.0f} rows/s"


def bench_store(
    engine: sa.Engine,
    schema: str | None,
    n: int,
    baseline_rows: int,
    cfg: ScoringConfig,
    explained: float | None = None,
) -> None:
    """Three runs of ``write_scores`` and the ``to_sql`` baseline on one store."""
    t0 = time.perf_counter()
    run1 = make_scores(n, "run-1", "2026-01-31", 1, cfg, explained)
    run2 = make_scores(n, "run-2", "2026-02-28", 2, cfg, explained)
    print(f"  assemble 2 x {n:,} rows: {time.perf_counter() - t0:.2f} s")
    results = {}
    for label, df in (
        ("first run (insert)", run1),
        ("second run (update + append)", run2),
        ("replay run 2", run2),
    ):
        t0 = time.perf_counter()
        res = write_scores(engine, df, cfg=cfg, schema=schema, expected_customer_ids=df["customer_id"])
        total = time.perf_counter() - t0
        results[label] = total
        stages = ", ".join(f"{k.replace('customer_', '')} {v:.2f}" for k, v in res.timings.items())
        print(_line(f"write_scores: {label}", total, n))
        print(f"      stages (s): {stages}")
        print(f"      latest changed {res.latest_updated}, history appended {res.history_inserted}")
    base = run1.head(baseline_rows)
    # bound variables per statement: SQLite at most 32766, PostgreSQL's protocol 65535
    limit = 32766 if engine.dialect.name == "sqlite" else 65535
    chunk = max(1, limit // base.shape[1])
    t0 = time.perf_counter()
    with engine.begin() as conn:
        base.to_sql(
            "baseline_to_sql",
            conn,
            schema=schema,
            if_exists="replace",
            index=False,
            method="multi",
            chunksize=chunk,
        )
    bt = time.perf_counter() - t0
    print(_line(f"baseline to_sql(multi) {len(base):,} rows", bt, len(base)))
    per_row_base = bt / len(base)
    for label, total in results.items():
        print(f"  speed-up vs baseline, {label:<30} x{per_row_base / (total / n):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=None, help="rows for the baseline (default: --rows)")
    ap.add_argument("--backends", nargs="+", default=["postgres", "sqlite"], choices=["postgres", "sqlite"])
    ap.add_argument(
        "--explained",
        type=float,
        default=None,
        help="share of rows with JSON reasons (default: the high/medium bands, ~75 %%; 0.01 = "
        "the default scoring.explain_top_n of 10,000 at 1M)",
    )
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("CRMSCORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    args = ap.parse_args()
    n = args.rows
    base_n = min(args.baseline_rows or n, n)
    cfg = ScoringConfig()
    ncols = len(make_scores(1, "r", "2026-01-31", 0, cfg).columns)
    print(f"score write-back benchmark: {n:,} customer rows x {ncols} columns")
    if "postgres" in args.backends:
        engine = create_engine(args.pg_url)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            version = conn.exec_driver_sql("show server_version").scalar()
        print(f"PostgreSQL {version} (schema {schema})")
        try:
            bench_store(engine, schema, n, base_n, cfg, args.explained)
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.sqlite"
            engine = create_engine(f"sqlite:///{path}")
            import sqlite3

            print(f"SQLite {sqlite3.sqlite_version} ({path})")
            bench_store(engine, None, n, base_n, cfg, args.explained)
            engine.dispose()


if __name__ == "__main__":
    main()
