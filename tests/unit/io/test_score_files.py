"""The folder score store (crmscore.io.score_files) follows the SQL store's rules, atomically.

Proves: a sequence of runs (first run, replay, newer run with absent customers, backfill of an
older day, a same-day re-run scored later) leaves exactly the tables the SQLite store
(crmscore.io.scores) leaves, in both ``absent_rows`` modes, and the same run log rows; a replay
writes no file; the shrink guard and the input volume guard refuse (``force`` overrides the
latter, noted); a write that fails, or a writer SIGKILLed, at each step leaves the previous
state readable and exactly equal, and the next run succeeds and cleans the leftovers; a second
writer waits for the lock and gives up naming the holder; a killed holder never blocks.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import crmscore.io.score_files as sf
from crmscore.config import ScoringConfig
from crmscore.core.score_contract import InputGuardError, LockTimeoutError, ScoreValidationError
from crmscore.io.crm import create_engine
from crmscore.io.score_files import (
    FileScoreWriter,
    read_previous_score_files,
    read_score_files,
    read_score_runs,
    write_score_files,
)
from crmscore.io.score_runs import RunRecord
from crmscore.io.scores import read_previous_scores, read_runs, read_scores, write_scores
from helpers import SCORE_TABLES, make_customer_scores, make_lead_scores

CFG = ScoringConfig()
STEPS = ("history", "latest", "runs", "manifest", "switched")


def snapshot(folder: Path) -> dict[str, pd.DataFrame]:
    return {w: read_score_files(folder, w) for w in SCORE_TABLES}  # type: ignore[arg-type]


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for k in SCORE_TABLES:
        pd.testing.assert_frame_equal(a[k], b[k], obj=k)


def by_id(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("customer_id").reset_index(drop=True)


def runs_sequence() -> list[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """First run, its replay, a newer run without 10 customers and 2 leads, an older backfill,
    a re-run of the newest day scored later with 5 customers fewer."""
    first = make_customer_scores(100), make_lead_scores(20)
    later = datetime(2026, 3, 1, 6, tzinfo=UTC)
    newer = make_customer_scores(100, run_id="run-2", as_of="2026-02-28", seed=2, scored_at=later).iloc[10:]
    newer_leads = make_lead_scores(20, run_id="run-2", as_of="2026-02-28").iloc[2:]
    backfill = make_customer_scores(100, run_id="run-0", as_of="2026-01-15", seed=3)
    rerun_at = datetime(2026, 3, 1, 9, tzinfo=UTC)
    rerun = make_customer_scores(100, run_id="run-2b", as_of="2026-02-28", seed=4, scored_at=rerun_at).iloc[
        15:
    ]
    return [first, first, (newer, newer_leads), (backfill, None), (rerun, None)]


@pytest.mark.parametrize("absent", ["mark", "delete"])
def test_sequence_of_runs_leaves_what_the_sql_store_leaves(tmp_path, absent):
    cfg = ScoringConfig(absent_rows=absent)
    engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    folder = tmp_path / "scores"
    try:
        for i, (customers, leads) in enumerate(runs_sequence()):
            a = write_scores(engine, customers, leads, cfg=cfg)
            b = write_score_files(folder, customers, leads, cfg=cfg)
            for attr in ("rows", "latest_updated", "history_inserted", "absent", "runs_logged"):
                assert getattr(a, attr) == getattr(b, attr), (i, attr)
            for w in SCORE_TABLES:
                pd.testing.assert_frame_equal(
                    read_scores(engine, cfg, w), read_score_files(folder, w), obj=f"{i} {w}"
                )
            for day in ("2026-01-31", "2026-02-28", "2026-03-31"):  # the trend's previous scores
                sql_prev = read_previous_scores(engine, cfg, as_of=day)
                file_prev = read_previous_score_files(folder, as_of=day)
                assert (sql_prev is None) == (file_prev is None), (i, day)
                if sql_prev is not None:
                    pd.testing.assert_frame_equal(by_id(sql_prev), by_id(file_prev), obj=f"{i} {day}")
        sql_runs, file_runs = read_runs(engine, cfg), read_score_runs(folder)
        cols = ["run_id", "as_of", "rows", "notes"]
        pd.testing.assert_frame_equal(sql_runs[cols], file_runs[cols])
        assert file_runs["scored_at"].dt.tz is not None
    finally:
        engine.dispose()
    latest = read_score_files(folder)
    # the backfill never replaced a newer row; the same-day re-run scored later replaced run-2's
    assert set(latest["run_id"]) <= {"run-2", "run-2b", "run-1"}
    assert "run-0" not in set(latest["run_id"])
    assert (latest["run_id"] == "run-2b").sum() == 85
    if absent == "mark":
        assert latest["absent_since"].notna().sum() == 15
    else:
        assert len(latest) == 85


def test_replay_writes_no_file(tmp_path):
    folder = tmp_path / "scores"
    write_score_files(folder, make_customer_scores(50), make_lead_scores(5), cfg=CFG)
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    res = write_score_files(folder, make_customer_scores(50), make_lead_scores(5), cfg=CFG)
    assert res.history_inserted == {"customer_score_history": 0, "lead_score_history": 0}
    assert res.runs_logged == []
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == files


def test_shrunken_score_set_is_refused_and_writes_nothing(tmp_path):
    folder = tmp_path / "scores"
    write_score_files(folder, make_customer_scores(100), cfg=CFG)
    before = snapshot(folder)
    small = make_customer_scores(100, run_id="run-2", as_of="2026-02-28").iloc[:40]
    with pytest.raises(
        ScoreValidationError, match=r"40 rows is fewer than 50% of the previous run's 100 rows"
    ):
        write_score_files(folder, small, cfg=CFG)
    assert_same(before, snapshot(folder))


def _record(run_id: str, as_of: str, transactions: int) -> RunRecord:
    return RunRecord(
        run_id, pd.Timestamp(as_of).date(), pd.Timestamp("2026-03-01", tz="UTC"),
        input_counts={"tables": {"transactions": transactions}},
    )  # fmt: skip


def test_input_volume_guard_refuses_and_force_overrides_with_a_note(tmp_path):
    folder = tmp_path / "scores"
    write_score_files(folder, make_customer_scores(100), cfg=CFG, run=_record("run-1", "2026-01-31", 1000))
    before = snapshot(folder)
    scores = make_customer_scores(100, run_id="run-2", as_of="2026-02-28")
    rec = _record("run-2", "2026-02-28", 100)
    with pytest.raises(InputGuardError, match=r"transactions: 100 rows vs 1,000 in run run-1 of 2026-01-31"):
        write_score_files(folder, scores, cfg=CFG, run=rec)
    assert_same(before, snapshot(folder))
    res = write_score_files(folder, scores, cfg=CFG, run=rec, force=True)
    assert res.notes and "overridden" in res.notes[0]
    runs = read_score_runs(folder)
    assert runs["input_counts"].iloc[-1] == {"tables": {"transactions": 100}}
    assert "overridden" in runs["notes"].iloc[-1][0]


def test_held_back_reasons_are_written_with_the_rows(tmp_path):
    folder = tmp_path / "scores"
    scores = make_customer_scores(30)
    held = scores["top_reasons"].notna().to_numpy()
    reasons = scores.loc[held, "top_reasons"].to_numpy(dtype=object)
    with FileScoreWriter(folder, CFG) as w:
        w.write("customer", scores.assign(top_reasons=None), scores["customer_id"], defer_reasons=held)
        w.complete_reasons("customer", reasons)
    ref = tmp_path / "ref"
    write_score_files(ref, scores, cfg=CFG)
    assert_same(snapshot(ref), snapshot(folder))
    with pytest.raises(RuntimeError, match="never completed"), FileScoreWriter(tmp_path / "x", CFG) as w:
        w.write("customer", scores, defer_reasons=held)
    assert read_score_files(tmp_path / "x").empty


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_leaves_the_previous_state(tmp_path, monkeypatch, step):
    folder = tmp_path / "scores"
    write_score_files(folder, make_customer_scores(100), make_lead_scores(10), cfg=CFG)
    before = snapshot(folder)

    def hook(name: str) -> None:
        if name == step:
            raise RuntimeError(f"boom at {name}")

    monkeypatch.setattr(sf, "_STEP_HOOK", hook)
    nxt = (
        make_customer_scores(100, run_id="run-2", as_of="2026-02-28"),
        make_lead_scores(10, run_id="run-2", as_of="2026-02-28"),
    )
    with pytest.raises(RuntimeError, match="boom"):
        write_score_files(folder, *nxt, cfg=CFG)
    after = snapshot(folder)
    if step == "switched":  # the manifest was switched: the new run is complete
        assert set(after["customer_scores"]["run_id"]) == {"run-2"}
    else:
        assert_same(before, after)
    monkeypatch.setattr(sf, "_STEP_HOOK", None)
    write_score_files(folder, *nxt, cfg=CFG)  # the next run succeeds (or is a replay) and cleans up
    assert set(read_score_files(folder)["run_id"]) == {"run-2"}
    named = {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
    assert len(named) == 3 + 4  # latest x2, run log, history parts of two runs x2
    assert not list(folder.rglob(".tmp-*"))


def _killed_child(folder: str, step: str, marker: str) -> None:
    def hook(name: str) -> None:
        if name == step:
            Path(marker).write_text(name)
            time.sleep(60)

    sf._STEP_HOOK = hook
    nxt = make_customer_scores(2000, run_id="run-2", as_of="2026-02-28")
    write_score_files(folder, nxt, make_lead_scores(10, run_id="run-2", as_of="2026-02-28"), cfg=CFG)


@pytest.mark.parametrize("step", ["history", "runs", "manifest"])
def test_sigkilled_writer_leaves_the_previous_state_and_no_lock(tmp_path, step):
    folder = tmp_path / "scores"
    write_score_files(folder, make_customer_scores(2000), make_lead_scores(10), cfg=CFG)
    before = snapshot(folder)
    marker = tmp_path / "at-step"
    proc = multiprocessing.get_context("fork").Process(
        target=_killed_child, args=(str(folder), step, str(marker))
    )
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert proc.is_alive(), "the writer ended before the step"
            assert time.monotonic() < deadline, "the writer never reached the step"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    assert_same(before, snapshot(folder))
    t0 = time.monotonic()
    res = write_score_files(folder, make_customer_scores(2000, run_id="run-3", as_of="2026-03-31"), cfg=CFG)
    assert res.timings["lock"] < 1.0 and time.monotonic() - t0 < 10  # the kernel released the lock
    assert set(read_score_files(folder)["run_id"]) == {"run-3"}
    assert not list(folder.rglob(".tmp-*"))


def test_second_writer_waits_then_names_the_holder(tmp_path):
    folder = tmp_path / "scores"
    folder.mkdir()
    fd = sf._acquire(folder, 1.0)  # another writer (its own open file: flock conflicts)
    try:
        cfg = ScoringConfig(lock_timeout_s=0.3)
        with pytest.raises(
            LockTimeoutError, match=rf"still locked for writing by .*pid {os.getpid()}.*nothing was written"
        ):
            write_score_files(folder, make_customer_scores(10), cfg=cfg)
    finally:
        sf._release(fd)
    assert read_score_files(folder).empty
    write_score_files(folder, make_customer_scores(10), cfg=ScoringConfig(lock_timeout_s=0.3))
    assert len(read_score_files(folder)) == 10
