"""Ingestion speed: ``crmscore.ingest.validation`` on a Parquet (or CSV) folder, table by table.

For each table it prints the read time, the validation time and rows/s, next to a simple
baseline measured in the same process on the same frames: the minimal dtype conversion a
loader without any rules would do (ids and text to Python strings, numbers to float,
timestamps to UTC). The baseline checks nothing (no quarantine, no duplicates, no parent
keys, no row accounting), so it is a generous lower bound. The total of
:func:`crmscore.ingest.validation.load_validated` (read + validate) and the peak RSS are printed
at the end.

Usage::

    python benchmarks/bench_validate.py --folder data/crm [--as-of 2025-12-31] [--repeat 1]

Generate a folder first, e.g. ``crmscore generate -n 1000000 --to folder --folder data/crm``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

import pandas as pd

from crmscore.config import config_from_mapping
from crmscore.core.schema import SCHEMAS
from crmscore.ingest.validation import load_validated, validate_tables
from crmscore.io.files import read_folder

log = logging.getLogger("bench_validate")


def baseline(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Minimal dtype conversion of one raw table (no rules, nothing set aside)."""
    spec = SCHEMAS[table]
    out = {}
    for col in df.columns:
        s = df[col]
        kind = spec.kind_of(col)
        if kind == "timestamp":
            out[col] = pd.to_datetime(s, utc=True, format="ISO8601")
        elif kind == "number":
            out[col] = pd.to_numeric(s).astype(float)
        elif kind in ("id", "text") or (kind is None and spec.keeps_extra):
            out[col] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out, index=df.index)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", required=True, help="folder with one Parquet/CSV file per table")
    parser.add_argument("--as-of", default=None, help="cutoff day (default: today, UTC)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_mapping({"data": {"source": "folder", "folder": args.folder}})
    names = {t: t for t in SCHEMAS}

    started = time.perf_counter()
    raw, errors = read_folder(args.folder, names)
    read_s = time.perf_counter() - started
    if errors:
        raise SystemExit(f"cannot read: {errors}")
    log.info("read %d tables in %.2f s", len(raw), read_s)

    header = ("table", "rows", "validate s", "rows/s", "baseline s", "rows/s")
    log.info("%-16s %10s %12s %14s %12s %14s", *header)
    total_v = total_b = 0.0
    for table in raw:  # each table alone (parents absent), so the times add up per table
        frame = {table: raw[table]}
        best_v = best_b = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            validate_tables(frame, cfg, as_of=args.as_of)
            t1 = time.perf_counter()
            baseline(raw[table], table)
            t2 = time.perf_counter()
            best_v, best_b = min(best_v, t1 - t0), min(best_b, t2 - t1)
        n = len(raw[table])
        total_v += best_v
        total_b += best_b
        log.info(
            "%-16s %10d %12.2f %14.0f %12.2f %14.0f",
            table,
            n,
            best_v,
            n / best_v if best_v else 0,
            best_b,
            n / best_b if best_b else 0,
        )
    log.info("%-16s %10s %12.2f %14s %12.2f", "all tables", "", total_v, "", total_b)

    del raw
    started = time.perf_counter()
    data, report = load_validated(cfg, as_of=args.as_of)
    total = time.perf_counter() - started
    kept = sum(len(df) for df in data.tables().values())
    log.info(
        "load_validated (read + validate, parents checked): %.2f s, %d rows kept, %d set aside; "
        "peak RSS %.0f MB",
        total,
        kept,
        report.rows_set_aside,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


if __name__ == "__main__":
    main()
