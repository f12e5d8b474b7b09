"""Benchmark: synthetic CRM generation and writing, against pandas' own writers in the same run.

For each sink (a Parquet folder, SQLite, PostgreSQL) it times ``crmscore``'s writer on all tables
and, as the baseline, ``pandas.DataFrame.to_sql`` / ``to_parquet`` on the transactions table alone
(the baseline on every table would take minutes at 1M customers), printing rows per second and
the ratio on that same table.

    .venv/bin/python benchmarks/bench_generate.py --customers 1000000
    .venv/bin/python benchmarks/bench_generate.py --customers 200000 --sinks folder,sqlite

PostgreSQL: ``--pg-url`` (default the local test database); a throwaway schema is dropped after.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from crmscore.ingest import synth
from crmscore.io.crm import create_engine, write_sql_tables
from crmscore.io.files import write_folder


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--sinks", default="folder,sqlite,postgres")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    sinks = args.sinks.split(",")

    start = time.perf_counter()
    crm = synth.generate(args.customers, seed=args.seed)
    t_gen = time.perf_counter() - start
    rows = sum(len(df) for df in crm.tables.values())
    tx = crm.tables["transactions"]
    print(f"generate: {args.customers:,} customers, {rows:,} rows in {t_gen:.1f} s")
    print(
        f"{'sink':<10} {'all tables s':>12} {'rows/s':>12} {'end-to-end s':>13} "
        f"{'tx ours s':>10} {'tx pandas s':>12} {'ratio':>7}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sink in sinks:
            if sink == "folder":
                t_all = _timed(lambda: write_folder(crm.tables, root / "crm", "parquet"))
                t_ours = _timed(lambda: write_folder({"transactions": tx}, root / "a", "parquet"))
                t_base = _timed(lambda: tx.to_parquet(root / "b.parquet"))
            elif sink == "sqlite":
                engine = create_engine(f"sqlite:///{root / 'crm.sqlite'}")
                t_all = _timed(lambda: write_sql_tables(engine, crm.tables))  # noqa: B023
                t_ours = _timed(lambda: write_sql_tables(engine, {"tx_ours": tx}))  # noqa: B023
                base = create_engine(f"sqlite:///{root / 'base.sqlite'}")

                def _pandas_sqlite(base=base) -> None:
                    with base.begin() as conn:
                        tx.to_sql("tx_pandas", conn, index=False, chunksize=100_000)

                t_base = _timed(_pandas_sqlite)
            elif sink == "postgres":
                engine = sa.create_engine(args.pg_url)
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                try:
                    t_all = _timed(lambda: write_sql_tables(engine, crm.tables, schema=schema))  # noqa: B023
                    t_ours = _timed(lambda: write_sql_tables(engine, {"tx_ours": tx}, schema=schema))  # noqa: B023

                    def _pandas_pg(engine=engine, schema=schema) -> None:
                        with engine.begin() as conn:
                            tx.to_sql(
                                "tx_pandas", conn, schema=schema, index=False, method="multi", chunksize=5_000
                            )

                    t_base = _timed(_pandas_pg)
                finally:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f'drop schema if exists "{schema}" cascade'))
            else:
                raise SystemExit(f"unknown sink {sink!r}")
            print(
                f"{sink:<10} {t_all:>12.1f} {rows / t_all:>12,.0f} {t_gen + t_all:>13.1f} "
                f"{t_ours:>10.2f} {t_base:>12.2f} {t_base / t_ours:>6.1f}x"
            )


if __name__ == "__main__":
    main()
