"""The run log, the input volume guard, the backfill shrink guard and absent rows
(crmscore.io.score_runs through crmscore.io.scores), on SQLite and PostgreSQL.

Proves: each written run gets one run-log row in the scores' transaction (a replay none, a
failed run none); a drop of an input count beyond ``scoring.max_input_drop`` since the run of
the nearest earlier ``as_of`` is refused naming the count and both values, and nothing is
written, unless forced (then a warning and a note); the shrink guard of a backfill compares
with the day before it, not with the newest run; the newest run marks or deletes the latest
rows it did not score, a backfill never; latest tables and run logs from before these columns
are migrated.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

import crmscore.io.scores as scores_io
from crmscore.config import ScoringConfig
from crmscore.core.score_contract import InputGuardError
from crmscore.io.crm import create_engine
from crmscore.io.score_runs import input_drops
from crmscore.io.scores import RunRecord, ScoreValidationError, read_runs, read_scores, write_scores
from helpers import assert_same_scores as assert_same
from helpers import make_customer_scores, make_lead_scores
from helpers import score_snapshot as snapshot

CFG = ScoringConfig()
COUNTS = {
    "tables": {"customers": 4830, "transactions": 20626, "leads": 900},
    "customers_active_365d": 2900,
    "open_leads": 300,
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """``(engine, schema)`` of an empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
        yield engine, None
        engine.dispose()
    else:
        yield request.getfixturevalue("pg_engine"), request.getfixturevalue("pg_schema")


def record(run_id: str, as_of: str, counts=COUNTS, scored_at=None, **kw) -> RunRecord:
    return RunRecord(
        run_id,
        date.fromisoformat(as_of),
        pd.Timestamp(scored_at or datetime(2026, 2, 1, 6, 0, 0, 123456, tzinfo=UTC)),
        model_versions={"churn": {"name": "crmscore-churn", "version": 1}},
        input_counts=counts,
        **kw,
    )


def scored(n: int, run_id: str, as_of: str, *, scored_at=None, seed: int = 0) -> pd.DataFrame:
    return make_customer_scores(n, run_id=run_id, as_of=as_of, scored_at=scored_at, seed=seed)


def with_counts(**changes: int) -> dict:
    """COUNTS with some table rows (``transactions=1``) or counts (``open_leads=0``) changed."""
    out = {"tables": dict(COUNTS["tables"]), **{k: v for k, v in COUNTS.items() if k != "tables"}}
    for key, n in changes.items():
        (out["tables"] if key in out["tables"] else out)[key] = n
    return out


# ------------------------------------------------------------------ the comparison (pure)


def test_input_drops_names_the_count_both_values_and_the_run():
    lines = input_drops(
        with_counts(transactions=1), COUNTS, 0.5, previous_run="abc", previous_as_of="2025-11-30"
    )
    assert lines == ["transactions: 1 rows vs 20,626 in run abc of 2025-11-30 (-100 %, max_input_drop 50 %)"]
    both = input_drops(with_counts(customers_active_365d=1, open_leads=100), COUNTS, 0.5)
    assert [line.split(":")[0] for line in both] == [
        "customers with a transaction in the 365 days to as_of",
        "open leads to score",
    ]
    assert "1 customers vs 2,900" in both[0] and "(-66.7 %, max_input_drop 50 %)" in both[1]


def test_input_drops_passes_a_legitimate_drop_growth_and_new_counts():
    assert input_drops(with_counts(transactions=14_438), COUNTS, 0.5) == []  # -30 %
    assert input_drops(with_counts(transactions=10_313), COUNTS, 0.5) == []  # exactly -50 %: not beyond
    assert input_drops(with_counts(transactions=10_312), COUNTS, 0.5) != []
    grown = with_counts(transactions=90_000)
    grown["tables"]["support_tickets"] = 10  # new table: nothing to compare
    assert input_drops(grown, COUNTS, 0.5) == []
    assert input_drops(with_counts(transactions=0), COUNTS, 1.0) == []  # max_input_drop 1: never
    assert input_drops(with_counts(transactions=20_000), COUNTS, 0.0) != []  # 0: any drop
    previous_zero = with_counts(open_leads=0)
    assert input_drops(with_counts(open_leads=0), previous_zero, 0.5) == []


def test_input_drops_counts_a_vanished_table_or_count_as_zero():
    gone = with_counts()
    del gone["tables"]["leads"]
    del gone["open_leads"]
    lines = input_drops(gone, COUNTS, 0.5)
    assert lines[0].startswith("leads: 0 rows vs 900") and lines[1].startswith("open leads to score: 0 leads")


# ------------------------------------------------------------------------------ run log


def test_run_log_row_per_run_none_on_replay_or_failure(store, monkeypatch):
    engine, schema = store
    rec = record("r1", "2026-01-31", settings_digest="sha256:abc", notes=("leads: not scored",))
    res = write_scores(
        engine,
        scored(100, "r1", "2026-01-31"),
        make_lead_scores(20, run_id="r1"),
        cfg=CFG,
        schema=schema,
        run=rec,
    )
    assert res.runs_logged == [("r1", "2026-01-31")]
    runs = read_runs(engine, CFG, schema)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["run_id"], row["as_of"]) == ("r1", date(2026, 1, 31))
    assert row["scored_at"] == pd.Timestamp(rec.scored_at).as_unit("us")
    assert row["model_versions"] == {"churn": {"name": "crmscore-churn", "version": 1}}
    assert row["input_counts"] == COUNTS and row["settings_digest"] == "sha256:abc"
    assert row["rows"] == {"customer_scores": 100, "lead_scores": 20}
    assert row["notes"] == ["leads: not scored"]
    # a replay writes nothing, the run log included
    again = write_scores(
        engine,
        scored(100, "r1", "2026-01-31"),
        make_lead_scores(20, run_id="r1"),
        cfg=CFG,
        schema=schema,
        run=rec,
    )
    assert again.runs_logged == [] and again.history_inserted["customer_score_history"] == 0
    pd.testing.assert_frame_equal(read_runs(engine, CFG, schema), runs)
    # a run that fails after its rows were sent leaves no run row
    real = scores_io._upsert_latest

    def failing(conn, kind, hist, latest, params, ids=None):
        if kind.name == "lead":
            raise RuntimeError("injected failure")
        return real(conn, kind, hist, latest, params, ids)

    monkeypatch.setattr(scores_io, "_upsert_latest", failing)
    with pytest.raises(RuntimeError, match="injected"):
        write_scores(
            engine, scored(100, "r2", "2026-02-28"), make_lead_scores(20, run_id="r2", as_of="2026-02-28"),
            cfg=CFG, schema=schema, run=record("r2", "2026-02-28"),
        )  # fmt: skip
    pd.testing.assert_frame_equal(read_runs(engine, CFG, schema), runs)
    # without a record (write_scores alone) the run is logged from its rows, without counts
    monkeypatch.undo()
    write_scores(engine, scored(100, "r3", "2026-03-31"), cfg=CFG, schema=schema)
    last = read_runs(engine, CFG, schema).iloc[-1]
    assert (
        last["run_id"] == "r3" and last["input_counts"] is None and last["rows"] == {"customer_scores": 100}
    )


def test_run_record_must_match_the_frames(store):
    engine, schema = store
    with pytest.raises(ValueError, match="writer's run"):
        write_scores(engine, scored(10, "r1", "2026-01-31"), cfg=CFG, schema=schema,
                     run=record("other", "2026-01-31"))  # fmt: skip
    assert read_runs(engine, CFG, schema).empty


# -------------------------------------------------------------------- input volume guard


def test_input_drop_is_refused_and_writes_nothing_unless_forced(store, caplog):
    engine, schema = store
    write_scores(
        engine, scored(200, "r1", "2025-11-30"), cfg=CFG, schema=schema, run=record("r1", "2025-11-30")
    )
    before, runs_before = snapshot(engine, schema), read_runs(engine, CFG, schema)
    cut = record("r2", "2025-12-31", with_counts(transactions=1, customers_active_365d=1))
    rows = scored(200, "r2", "2025-12-31")
    with pytest.raises(InputGuardError) as info:
        write_scores(engine, rows, cfg=CFG, schema=schema, run=cut)
    text = str(info.value)
    assert "transactions: 1 rows vs 20,626 in run r1 of 2025-11-30 (-100 %, max_input_drop 50 %)" in text
    assert "customers with a transaction in the 365 days to as_of: 1 customers vs 2,900" in text
    assert "leads" not in text.split("input volume dropped")[1].split("(a truncated")[0]  # unchanged counts
    assert_same(before, snapshot(engine, schema))
    pd.testing.assert_frame_equal(read_runs(engine, CFG, schema), runs_before)
    # --force writes, with a warning and a note in the result and the run log
    with caplog.at_level(logging.WARNING, logger="crmscore.io.score_runs"):
        res = write_scores(engine, rows, cfg=CFG, schema=schema, run=cut, force=True)
    assert res.history_inserted["customer_score_history"] == 200
    assert any("overridden (--force)" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    assert len(res.notes) == 1 and "transactions: 1 rows vs 20,626" in res.notes[0]
    logged = read_runs(engine, CFG, schema).set_index("run_id")
    assert (
        logged.loc["r2", "notes"] == res.notes
        and logged.loc["r2", "input_counts"]["tables"]["transactions"] == 1
    )


def test_no_previous_run_or_a_legitimate_drop_passes(store, caplog):
    engine, schema = store
    with caplog.at_level(logging.INFO, logger="crmscore.io.score_runs"):
        write_scores(engine, scored(100, "r1", "2026-01-31"), cfg=CFG, schema=schema,
                     run=record("r1", "2026-01-31"))  # fmt: skip
    assert "no earlier run at or before 2026-01-31 to compare with" in caplog.text
    res = write_scores(
        engine, scored(100, "r2", "2026-02-28"), cfg=CFG, schema=schema,
        run=record("r2", "2026-02-28", with_counts(transactions=14_438, open_leads=210)),  # -30 %
    )  # fmt: skip
    assert res.notes == [] and res.runs_logged == [("r2", "2026-02-28")]


def test_input_guard_compares_with_the_nearest_earlier_as_of(store):
    """A backfill is compared with the run before its day, a same-day re-run with that day's run."""
    engine, schema = store
    small = with_counts(transactions=8_000)
    write_scores(engine, scored(100, "dec", "2025-12-31"), cfg=CFG, schema=schema,
                 run=record("dec", "2025-12-31", small))  # fmt: skip
    write_scores(engine, scored(100, "mar", "2026-03-31"), cfg=CFG, schema=schema,
                 run=record("mar", "2026-03-31"))  # fmt: skip
    # January had as few transactions as December: fine, though far below March's
    write_scores(engine, scored(100, "jan", "2026-01-31"), cfg=CFG, schema=schema,
                 run=record("jan", "2026-01-31", with_counts(transactions=7_000)))  # fmt: skip
    # a re-run of March (another run id, later) with a truncated extract: compared with March
    with pytest.raises(InputGuardError, match=r"transactions: 7,000 rows vs 20,626 in run mar of 2026-03-31"):
        write_scores(
            engine, scored(100, "mar-2", "2026-03-31", scored_at=datetime(2026, 4, 2, tzinfo=UTC)),
            cfg=CFG, schema=schema,
            run=record("mar-2", "2026-03-31", with_counts(transactions=7_000),
                       scored_at=datetime(2026, 4, 2, tzinfo=UTC)),
        )  # fmt: skip
    assert list(read_runs(engine, CFG, schema)["run_id"]) == ["dec", "jan", "mar"]


# ------------------------------------------------------------------ backfill shrink guard


def test_backfill_shrink_compares_with_the_day_before_not_the_newest_run(store):
    engine, schema = store
    write_scores(engine, scored(1000, "mar", "2026-03-31"), cfg=CFG, schema=schema)
    # a legitimately smaller CRM in January, and no earlier run: accepted
    res = write_scores(engine, scored(600, "jan", "2026-01-31"), cfg=CFG, schema=schema)
    assert res.history_inserted["customer_score_history"] == 600


def test_backfill_shrink_with_an_earlier_run_is_compared_with_it(store):
    engine, schema = store
    write_scores(engine, scored(100, "dec", "2025-12-31"), cfg=CFG, schema=schema)
    write_scores(engine, scored(400, "mar", "2026-03-31"), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    refused = r"40 rows is fewer than 50% of the previous run's 100 rows \(run 'dec', as of 2025-12-31"
    with pytest.raises(ScoreValidationError, match=refused):
        write_scores(engine, scored(40, "jan", "2026-01-31"), cfg=CFG, schema=schema)
    assert_same(before, snapshot(engine, schema))
    # 120 against December's 100 is fine (against March's 400 it would have been refused)
    write_scores(engine, scored(120, "jan", "2026-01-31"), cfg=CFG, schema=schema)
    # and the next scheduled run is compared with March, the newest earlier run
    with pytest.raises(ScoreValidationError, match=r"previous run's 400 rows \(run 'mar'"):
        write_scores(engine, scored(180, "apr", "2026-04-30"), cfg=CFG, schema=schema)


# ------------------------------------------------------------------------------ absent rows


def _latest(engine, schema, cfg=CFG, which="customer_scores") -> pd.DataFrame:
    key = "customer_id" if which.startswith("customer") else "lead_id"
    return read_scores(engine, cfg, which, schema=schema).set_index(key)  # type: ignore[arg-type]


def test_newest_run_marks_absent_rows_and_a_return_clears_them(store):
    engine, schema = store
    write_scores(engine, scored(100, "jan", "2026-01-31"), make_lead_scores(30), cfg=CFG, schema=schema)
    # February: customers 0-19 and leads 20-29 are gone
    feb = scored(100, "feb", "2026-02-28", seed=2).iloc[20:]
    feb_leads = make_lead_scores(30, run_id="feb", as_of="2026-02-28").iloc[:20]
    res = write_scores(engine, feb, feb_leads, cfg=CFG, schema=schema)
    assert res.absent == {"customer_scores": 20, "lead_scores": 10}
    latest = _latest(engine, schema)
    assert len(latest) == 100
    gone = latest["absent_since"].notna()
    assert set(latest.index[gone]) == {f"C{i:07d}" for i in range(20)}
    assert set(latest.loc[gone, "absent_since"]) == {date(2026, 2, 28)}
    assert set(latest.loc[gone, "run_id"]) == {"jan"}  # the row of the run that last scored them
    leads = _latest(engine, schema, which="lead_scores")
    assert set(leads.index[leads["absent_since"].notna()]) == {f"L{i:06d}" for i in range(20, 30)}
    # March: 0-9 are back (cleared), 10-19 still absent (keep February's day)
    mar = scored(100, "mar", "2026-03-31", seed=3).iloc[[*range(10), *range(20, 100)]]
    res = write_scores(engine, mar, cfg=CFG, schema=schema)  # (no lead rows: leads left alone)
    assert res.absent == {"customer_scores": 0}
    latest = _latest(engine, schema)
    assert latest.loc[[f"C{i:07d}" for i in range(10)], "absent_since"].isna().all()
    assert set(latest.loc[[f"C{i:07d}" for i in range(10, 20)], "absent_since"]) == {date(2026, 2, 28)}
    pd.testing.assert_frame_equal(_latest(engine, schema, which="lead_scores"), leads)
    # a backfill of January's middle with only 60 customers marks nothing
    before = snapshot(engine, schema)
    res = write_scores(engine, scored(60, "mid-jan", "2026-01-15"), cfg=CFG, schema=schema)
    assert res.absent == {}
    after = snapshot(engine, schema)
    for name in ("customer_scores", "lead_scores", "lead_history"):
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)
    assert len(after["customer_history"]) == len(before["customer_history"]) + 60
    # a backfill of mid-February replaces the January rows of 10-19 (absent from February on)
    # and adds a customer only it knows: both absent since February's run, nothing else changes
    mid_feb = scored(120, "mid-feb", "2026-02-15", seed=4).iloc[[*range(10, 20), 110]]
    lax = CFG.model_copy(update={"min_rows_ratio": 0.0})  # 11 rows: the shrink guard would refuse
    write_scores(engine, mid_feb, cfg=lax, schema=schema)
    latest = _latest(engine, schema)
    back = [*(f"C{i:07d}" for i in range(10, 20)), "C0000110"]
    assert set(latest.loc[back, "run_id"]) == {"mid-feb"}
    assert set(latest.loc[back, "absent_since"]) == {date(2026, 2, 28)}
    unchanged = after["customer_scores"].set_index("customer_id").drop(index=back[:-1])
    pd.testing.assert_frame_equal(latest.drop(index=back), unchanged)


def test_delete_mode_removes_absent_rows_from_latest_only(store):
    engine, schema = store
    cfg = CFG.model_copy(update={"absent_rows": "delete"})
    write_scores(engine, scored(100, "jan", "2026-01-31"), make_lead_scores(30), cfg=cfg, schema=schema)
    res = write_scores(
        engine, scored(100, "feb", "2026-02-28").iloc[20:],
        make_lead_scores(30, run_id="feb", as_of="2026-02-28").iloc[:25], cfg=cfg, schema=schema,
    )  # fmt: skip
    assert res.absent == {"customer_scores": 20, "lead_scores": 5}
    latest = _latest(engine, schema, cfg)
    assert len(latest) == 80 and (latest["run_id"] == "feb").all()
    assert len(_latest(engine, schema, cfg, "lead_scores")) == 25
    hist = read_scores(engine, cfg, "customer_history", schema=schema)
    assert len(hist) == 180 and (hist["run_id"] == "jan").sum() == 100  # the history keeps them
    # a backfill deletes nothing
    write_scores(engine, scored(50, "mid-jan", "2026-01-15"), cfg=cfg, schema=schema)
    assert len(_latest(engine, schema, cfg)) == 80


def test_same_day_rerun_scored_earlier_does_not_mark(store):
    """A run of the same as_of scored before the newest one is not the newest: it marks nothing."""
    engine, schema = store
    write_scores(engine, scored(100, "a", "2026-01-31", scored_at=datetime(2026, 2, 2, tzinfo=UTC)),
                 cfg=CFG, schema=schema)  # fmt: skip
    early = scored(100, "b", "2026-01-31", scored_at=datetime(2026, 2, 1, tzinfo=UTC)).iloc[30:]
    res = write_scores(engine, early, cfg=CFG, schema=schema)
    assert res.absent == {} and _latest(engine, schema)["absent_since"].isna().all()


# ---------------------------------------------------------------------------- migrations


def test_tables_from_before_the_run_log_and_absent_since_are_migrated(store, caplog):
    engine, schema = store
    write_scores(
        engine,
        scored(200, "old-1", "2026-01-31"),
        make_lead_scores(20, run_id="old-1"),
        cfg=CFG,
        schema=schema,
    )
    prefix = "" if schema is None else f'"{schema}".'
    with engine.begin() as conn:  # as an earlier crmscore left them
        conn.execute(sa.text(f"DROP TABLE {prefix}score_runs"))
        for t in ("customer_scores", "lead_scores"):
            conn.execute(sa.text(f"ALTER TABLE {prefix}{t} DROP COLUMN absent_since"))
    assert read_scores(engine, CFG, schema=schema)["absent_since"].isna().all()  # read as NULL
    # the shrink guard still knows the earlier run (the run log is made from the history)
    with pytest.raises(ScoreValidationError, match=r"previous run's 200 rows \(run 'old-1'"):
        write_scores(engine, scored(90, "new", "2026-02-28"), cfg=CFG, schema=schema)
    with caplog.at_level(logging.INFO, logger="crmscore"):
        write_scores(engine, scored(200, "new", "2026-02-28").iloc[10:], cfg=CFG, schema=schema)
    assert "added the nullable column absent_since" in caplog.text
    assert "created with the 1 runs of the score history" in caplog.text
    runs = read_runs(engine, CFG, schema)
    assert list(runs["run_id"]) == ["old-1", "new"] and runs["input_counts"].isna().all()
    assert runs.loc[0, "notes"] == ["logged from the score history when the run log was created"]
    latest = _latest(engine, schema)
    assert latest["absent_since"].notna().sum() == 10 and len(latest) == 200


@pytest.mark.parametrize("background", [True, False])
def test_writer_raises_a_refusal_at_the_first_write_before_any_row(store, background):
    """The guard runs once the lock is held; the background writer's refusal is raised by the
    first :meth:`write`, so the caller stops before computing the rest of the run."""
    engine, schema = store
    write_scores(
        engine, scored(50, "r1", "2025-11-30"), cfg=CFG, schema=schema, run=record("r1", "2025-11-30")
    )
    before = snapshot(engine, schema)
    cut = record("r2", "2025-12-31", with_counts(open_leads=3))
    writer = scores_io.ScoreWriter(engine, CFG, schema=schema, background=background, run=cut)
    reached = []
    refused = r"open leads to score: 3 leads vs 300 in run r1"
    with pytest.raises(InputGuardError, match=refused), writer:
        writer.write("customer", scored(50, "r2", "2025-12-31"))
        reached.append("after the first write")
    assert reached == []
    assert_same(before, snapshot(engine, schema))
    assert list(read_runs(engine, CFG, schema)["run_id"]) == ["r1"]
