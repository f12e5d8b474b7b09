"""Cost of the scoring run id's digest, before (bytes as read) and after (logical content), one process.

The run id digests the inputs (``crmscore.pipelines.score._run_id``). Before issue #17 the
validation hashed the raw tables as read, in read order (``tables_digest``, SHA-256 of the
bytes: what ``ValidationReport.input_digest`` was) and the run id reused it; now the
validation digests the logical content of each table it keeps
(``crmscore.core.digest.table_content_digest`` on its Arrow columns: order-independent, rows
after ``as_of`` left out). Printed, best of ``--repeat`` (wall and CPU seconds; on a shared host
CPU is the steadier of the two):

* **before**: ``tables_digest`` of the raw tables (the old ``input_digest`` of validation);
* **after**: the content digests computed inside ``validate_tables`` (every table);
* the run-id step itself (``_run_id`` + the settings digest) with the validation's digests;
* without a validation report (``run_score`` on data alone): the old ``data_digest`` and the new
  ``content_digests`` of the validated tables (Python string objects: slower);

for every table of a synthetic CRM (``crmscore.ingest.synth``) and for the tables as a PostgreSQL
scoring run reads them (leads in the scoring scope and their activities only, as
``score_lead_scope`` selects them).

Usage::

    .venv/bin/python benchmarks/bench_digest.py                      # 1,000,000 customers
    .venv/bin/python benchmarks/bench_digest.py --customers 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd

import crmscore.ingest.validation as validation
from crmscore.config import Config
from crmscore.core.digest import content_digests, data_digest, settings_digest, tables_digest
from crmscore.core.time import cutoff_end
from crmscore.ingest import synth
from crmscore.pipelines.score import ChampionModel, _run_id, _scoring_settings

log = logging.getLogger("bench_digest")


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(wall s, CPU s, result) of the fastest of ``repeat`` calls."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_wall, best_cpu = (
            min(best_wall, time.perf_counter() - wall),
            min(best_cpu, time.process_time() - cpu),
        )
    return best_wall, best_cpu, out


def _scoring_scope(raw: dict[str, pd.DataFrame], cfg: Config, as_of: date) -> dict[str, pd.DataFrame]:
    """The raw tables as a PostgreSQL scoring run reads them (``score_lead_scope``)."""
    scope = validation.score_lead_scope(cfg, as_of)
    leads = raw["leads"]
    created_since = pd.Timestamp(scope.created_since).tz_convert("UTC")
    open_since = pd.Timestamp(scope.open_since).tz_convert("UTC")
    keep = (leads["created_at"] >= created_since) & ~(leads["converted_at"] < open_since).fillna(False)
    leads = leads[keep.to_numpy(dtype=bool)]
    acts = raw["lead_activities"]
    return {**raw, "leads": leads, "lead_activities": acts[acts["lead_id"].isin(leads["lead_id"])]}


def _measure(label: str, raw: dict[str, pd.DataFrame], cfg: Config, as_of: date, repeat: int) -> None:
    rows = sum(len(df) for df in raw.values())
    log.info(
        "--- %s: %s rows (%s)", label, f"{rows:,}", ", ".join(f"{t} {len(df):,}" for t, df in raw.items())
    )
    extra = {
        "as_of": as_of.isoformat(),
        "data": cfg.data.model_dump(mode="json", exclude={"crm_url", "folder", "quarantine"}),
    }
    wall, cpu, _ = _best(lambda: tables_digest(raw, extra=extra), repeat)
    log.info(
        "before: bytes as read (tables_digest, the old input_digest)   wall %6.2f s  cpu %6.2f s", wall, cpu
    )

    real = validation._table_digest
    spent: list[tuple[float, float]] = []

    def timed(*args: Any) -> str:
        w, c = time.perf_counter(), time.process_time()
        out = real(*args)
        spent.append((time.perf_counter() - w, time.process_time() - c))
        return out

    best = (float("inf"), float("inf"))
    now = cutoff_end(as_of) + pd.Timedelta(hours=1)
    validation._table_digest = timed
    try:
        for _ in range(repeat):
            spent.clear()
            gc.collect()
            data, report = validation.validate_tables(dict(raw), cfg, as_of=as_of, now=now)
            best = min(best, (sum(w for w, _ in spent), sum(c for _, c in spent)))
    finally:
        validation._table_digest = real
    log.info("after:  content digests inside validate_tables               wall %6.2f s  cpu %6.2f s", *best)

    models = {"churn": ChampionModel("churn", "crmscore-churn", 1, None)}

    def run_id() -> str:
        return _run_id(as_of, models, data, settings_digest(_scoring_settings(cfg)), report.input_digest)

    wall, cpu, _ = _best(run_id, repeat)
    log.info(
        "after:  the run-id step with the validation's digests         wall %6.3f s  cpu %6.3f s", wall, cpu
    )
    wall, cpu, _ = _best(lambda: data_digest(data), repeat)
    log.info(
        "without a report, before: data_digest of the validated tables wall %6.2f s  cpu %6.2f s", wall, cpu
    )
    wall, cpu, got = _best(lambda: content_digests(data, as_of), repeat)
    log.info(
        "without a report, after: content_digests of the validated    wall %6.2f s  cpu %6.2f s", wall, cpu
    )
    assert got == {t: report.input_digest[t] for t in data.tables()}, "validation and data disagree"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 12, 31))
    parser.add_argument("--repeat", type=int, default=2, help="best of N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("crmscore", "crmscore.ingest"):
        logging.getLogger(name).setLevel(logging.WARNING)
    raw = dict(synth.generate(args.customers, seed=args.seed).tables)
    cfg = Config()
    _measure("every table", raw, cfg, args.as_of, args.repeat)
    _measure("PostgreSQL scoring scope", _scoring_scope(raw, cfg, args.as_of), cfg, args.as_of, args.repeat)


if __name__ == "__main__":
    main()
