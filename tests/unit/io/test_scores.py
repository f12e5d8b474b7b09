"""Score write-back (crmscore.io.scores) into SQLite and PostgreSQL for real.

Proves: round trip of every column; one transaction per run (an exception after the first
table, or a SIGKILLed writer, leaves the previous scores intact); idempotent replay; a later
run updates the latest rows and appends history; an older backfill never overwrites the
latest; invalid or shrunken score sets write nothing; bad table names are refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import crmscore.io.scores as scores_io
from crmscore.config import ConfigError, ScoringConfig, config_from_mapping
from crmscore.core.score_contract import LockTimeoutError
from crmscore.io.crm import create_engine
from crmscore.io.scores import (
    ScoreTableError,
    ScoreValidationError,
    read_previous_scores,
    read_scores,
    write_scores,
)
from helpers import as_read, make_customer_scores, make_lead_scores
from helpers import assert_same_scores as assert_same
from helpers import score_snapshot as snapshot

CFG = ScoringConfig()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """``(engine, schema)`` of an empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
        yield engine, None
        engine.dispose()
    else:
        yield request.getfixturevalue("pg_engine"), request.getfixturevalue("pg_schema")


def by_id(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("customer_id").reset_index(drop=True)


def test_round_trip_every_column(store):
    engine, schema = store
    cust, leads = make_customer_scores(300), make_lead_scores(50)
    res = write_scores(
        engine, cust, leads, cfg=CFG, schema=schema,
        expected_customer_ids=cust["customer_id"], expected_lead_ids=leads["lead_id"],
    )  # fmt: skip
    assert res.latest_updated == {"customer_scores": 300, "lead_scores": 50}
    assert res.history_inserted == {"customer_score_history": 300, "lead_score_history": 50}
    got = snapshot(engine, schema)
    # exact floats, NULLs, quotes
    pd.testing.assert_frame_equal(got["customer_scores"], as_read(cust, latest=True))
    pd.testing.assert_frame_equal(got["customer_history"], as_read(cust))
    pd.testing.assert_frame_equal(got["lead_scores"], as_read(leads, latest=True))
    stored = json.loads(got["customer_scores"]["top_reasons"].dropna().iloc[0])
    assert stored[1]["value"] == "a,b\nc" and stored[1]["label"] == 'Note "q"'  # CSV/JSON escaping intact
    # primary keys exist
    insp = sa.inspect(engine)
    assert insp.get_pk_constraint("customer_scores", schema=schema)["constrained_columns"] == ["customer_id"]
    assert set(insp.get_pk_constraint("customer_score_history", schema=schema)["constrained_columns"]) == {
        "customer_id", "as_of", "run_id",
    }  # fmt: skip


def test_replay_changes_nothing_and_next_run_updates(store):
    engine, schema = store
    run1 = make_customer_scores(200)
    write_scores(engine, run1, make_lead_scores(20), cfg=CFG, schema=schema)
    first = snapshot(engine, schema)
    # replay: same run_id + as_of, even re-scored later -> nothing changes
    replay = make_customer_scores(200, scored_at=datetime(2026, 2, 2, tzinfo=UTC))
    res = write_scores(engine, replay, make_lead_scores(20), cfg=CFG, schema=schema)
    assert res.latest_updated == {"customer_scores": 0, "lead_scores": 0}
    assert res.history_inserted == {"customer_score_history": 0, "lead_score_history": 0}
    assert_same(first, snapshot(engine, schema))
    # next run: previous scores give the trend; latest updated, history appended
    prev = read_previous_scores(engine, CFG, as_of="2026-02-28", schema=schema)
    assert prev is not None and len(prev) == 200
    run2 = make_customer_scores(
        210, run_id="run-2", as_of="2026-02-28", seed=5, previous=prev,
        scored_at=datetime(2026, 3, 1, tzinfo=UTC),
    )  # fmt: skip
    assert set(run2["trend"]) == {"improving", "steady", "declining", "new"}
    res = write_scores(engine, run2, None, cfg=CFG, schema=schema)
    assert res.latest_updated == {"customer_scores": 210}
    after = snapshot(engine, schema)
    pd.testing.assert_frame_equal(after["customer_scores"], as_read(run2, latest=True))
    assert len(after["customer_history"]) == 410
    assert after["customer_history"].groupby("run_id").size().to_dict() == {"run-1": 200, "run-2": 210}
    pd.testing.assert_frame_equal(after["lead_scores"], first["lead_scores"])
    # replaying run 2 computes the same trend (only earlier days count) and changes nothing
    prev_again = read_previous_scores(engine, CFG, as_of="2026-02-28", schema=schema)
    # (prev came from the latest table, prev_again from the history: run 2 is the latest)
    pd.testing.assert_frame_equal(by_id(prev_again), by_id(prev))
    write_scores(engine, run2, None, cfg=CFG, schema=schema)
    assert_same(after, snapshot(engine, schema))


def test_previous_scores_from_the_latest_table_are_the_newest_history_rows(store, monkeypatch):
    """The latest-table path gives what the window over the whole history gives."""
    engine, schema = store
    windows: list[str] = []
    window = scores_io._previous_from_history
    monkeypatch.setattr(
        scores_io,
        "_previous_from_history",
        lambda e, h, day: windows.append(str(day)[:10]) or window(e, h, day),
    )
    history = scores_io.score_tables(CFG, schema)[CFG.customer_history_table]

    def from_history(as_of: str) -> pd.DataFrame:
        day = scores_io._day_param(as_of, engine.dialect.name)
        got = scores_io._previous_from_history(engine, history, day)
        return scores_io._normalise(got, scores_io._PREVIOUS_COLUMNS)

    write_scores(
        engine, make_customer_scores(100, run_id="r1", as_of="2026-01-31", seed=1), cfg=CFG, schema=schema
    )
    # February scores customers 40-149 only: 0-39 keep their January row as the latest
    feb = make_customer_scores(
        150, run_id="r2", as_of="2026-02-28", seed=2, scored_at=datetime(2026, 3, 1, tzinfo=UTC)
    ).iloc[40:]
    write_scores(engine, feb, cfg=CFG, schema=schema)
    prev = read_previous_scores(engine, CFG, as_of="2026-03-31", schema=schema)
    assert windows == []  # read from the latest table
    pd.testing.assert_frame_equal(by_id(prev), by_id(from_history("2026-03-31")))
    assert len(prev) == 150
    assert pd.Series(prev["as_of"]).astype(str).value_counts().to_dict() == {
        "2026-02-28": 110,
        "2026-01-31": 40,
    }
    febs = prev.set_index("customer_id").loc[feb["customer_id"], "churn_probability"]
    np.testing.assert_array_equal(febs.to_numpy(), feb["churn_probability"].to_numpy())
    # a backfill of mid-February: the February rows are later, so the history decides
    back = read_previous_scores(engine, CFG, as_of="2026-02-15", schema=schema)
    assert windows[-1] == "2026-02-15"  # read from the history
    pd.testing.assert_frame_equal(by_id(back), by_id(from_history("2026-02-15")))
    assert len(back) == 100 and set(pd.Series(back["as_of"]).astype(str)) == {"2026-01-31"}


def test_previous_scores_are_of_an_earlier_day_never_a_run_of_the_same_day(store):
    """A re-run of a day (another run id: other data or settings) is not its trend's reference:
    the trend of every run of a day is against the nearest earlier day."""
    engine, schema = store
    jan = make_customer_scores(100, run_id="r1", as_of="2026-01-31", seed=1)
    write_scores(engine, jan, cfg=CFG, schema=schema)
    feb = make_customer_scores(
        100, run_id="r2", as_of="2026-02-28", seed=2, scored_at=datetime(2026, 3, 1, tzinfo=UTC)
    )
    write_scores(engine, feb, cfg=CFG, schema=schema)
    rerun = make_customer_scores(
        100, run_id="r2b", as_of="2026-02-28", seed=3, scored_at=datetime(2026, 3, 2, tzinfo=UTC)
    )
    assert not np.array_equal(rerun["churn_probability"], feb["churn_probability"])  # (else: proves nothing)
    write_scores(engine, rerun, cfg=CFG, schema=schema)
    expected = jan.set_index("customer_id")["churn_probability"]
    for day in ("2026-02-28", "2026-02-15"):  # a re-run of the day, a backfill before it
        prev = read_previous_scores(engine, CFG, as_of=day, schema=schema)
        assert set(pd.Series(prev["as_of"]).astype(str)) == {"2026-01-31"}, day
        np.testing.assert_array_equal(
            prev.set_index("customer_id")["churn_probability"].loc[expected.index].to_numpy(),
            expected.to_numpy(),
        )
    assert read_previous_scores(engine, CFG, as_of="2026-01-31", schema=schema) is None  # nothing earlier
    # the next day's reference is the newest run of the day before it: the re-run (latest table)
    march = read_previous_scores(engine, CFG, as_of="2026-03-31", schema=schema)
    got = march.set_index("customer_id")["churn_probability"].loc[expected.index].to_numpy()
    np.testing.assert_array_equal(
        got, rerun.set_index("customer_id")["churn_probability"].loc[expected.index]
    )


@pytest.mark.postgres
def test_postgres_latest_tables_leave_room_for_heap_only_updates(pg_engine, pg_schema):
    """The latest tables are created with a fillfactor (the next run's update stays on the page)."""
    write_scores(
        engine := pg_engine, make_customer_scores(50), make_lead_scores(5), cfg=CFG, schema=pg_schema
    )
    with engine.connect() as conn:
        options = dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, c.reloptions FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"
                ),
                {"s": pg_schema},
            ).all()
        )
    fill = [f"fillfactor={scores_io.LATEST_FILLFACTOR}"]
    assert options == {
        "customer_scores": fill, "lead_scores": fill,
        "customer_score_history": None, "lead_score_history": None, "score_runs": None,
    }  # fmt: skip


@pytest.mark.postgres
def test_postgres_score_writers_wait_for_each_other_per_schema(pg_engine, pg_schema):
    """The writers' advisory lock is per schema: another schema's writer does not wait."""
    other = f"{pg_schema}_b"
    lock = sa.text("SELECT pg_advisory_xact_lock(hashtext('crmscore.scores:' || :s))")
    impatient = ScoringConfig(lock_timeout_s=1)  # (the lock waits: crmscore.io.score_lock)
    try:
        with pg_engine.connect() as holder:  # as a writer of pg_schema inside its transaction
            holder.execute(lock, {"s": pg_schema})
            res = write_scores(pg_engine, make_customer_scores(20), cfg=impatient, schema=other)
            assert res.latest_updated == {"customer_scores": 20}
            with pytest.raises(LockTimeoutError, match="still held by"):
                write_scores(pg_engine, make_customer_scores(20), cfg=impatient, schema=pg_schema)
            holder.rollback()
        assert not sa.inspect(pg_engine).has_table("customer_scores", schema=pg_schema)  # nothing left
        write_scores(pg_engine, make_customer_scores(20), cfg=impatient, schema=pg_schema)  # free again
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{other}" CASCADE'))


def test_backfill_of_an_older_as_of_keeps_latest(store):
    engine, schema = store
    write_scores(engine, make_customer_scores(100, run_id="new", as_of="2026-02-28"), cfg=CFG, schema=schema)
    latest = read_scores(engine, CFG, schema=schema)
    old = make_customer_scores(
        100, run_id="old", as_of="2026-01-31", seed=9, scored_at=datetime(2026, 3, 5, tzinfo=UTC)
    )
    write_scores(engine, old, cfg=CFG, schema=schema)
    pd.testing.assert_frame_equal(read_scores(engine, CFG, schema=schema), latest)
    assert len(read_scores(engine, CFG, "customer_history", schema=schema)) == 200


def test_exception_after_first_table_leaves_previous_scores(store, monkeypatch):
    engine, schema = store
    write_scores(engine, make_customer_scores(150), make_lead_scores(30), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    calls = []
    real = scores_io._append_history

    def failing(conn, df, kind, hist, chunksize):
        calls.append(kind.name)
        if kind.name == "lead":  # customer history + latest are written by now
            raise RuntimeError("injected failure")
        return real(conn, df, kind, hist, chunksize)

    monkeypatch.setattr(scores_io, "_append_history", failing)
    run2 = make_customer_scores(150, run_id="run-2", as_of="2026-02-28", seed=3)
    with pytest.raises(RuntimeError, match="injected"):
        write_scores(
            engine, run2, make_lead_scores(30, run_id="run-2", as_of="2026-02-28"), cfg=CFG, schema=schema
        )
    assert calls == ["customer", "lead"]
    assert_same(before, snapshot(engine, schema))


def test_first_run_failure_leaves_no_tables(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(scores_io, "_upsert_latest", boom)
    with pytest.raises(RuntimeError):
        write_scores(engine, make_customer_scores(10), cfg=CFG)
    assert sa.inspect(engine).get_table_names() == []  # the DDL was part of the transaction


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import crmscore.io.scores as scores_io
    from crmscore.config import ScoringConfig
    from crmscore.io.crm import create_engine
    from helpers import make_customer_scores, make_lead_scores

    url = os.environ["CRMSCORE_TEST_WRITER_URL"]  # not on the command line: it may hold a password
    schema, ready = (sys.argv[1] or None), Path(sys.argv[2])
    real = scores_io._upsert_latest

    def slow(conn, kind, hist, latest, params, ids=None):
        n = real(conn, kind, hist, latest, params, ids)
        if kind.name == "customer":  # customer history + latest written, leads not yet
            tmp = ready.with_suffix(".tmp")  # written whole, then renamed: never seen half-written
            tmp.write_text(str(n))
            tmp.replace(ready)
            time.sleep(120)
        return n

    scores_io._upsert_latest = slow
    cust = make_customer_scores({n}, run_id="run-2", as_of="2026-02-28", seed=7)
    leads = make_lead_scores(500, run_id="run-2", as_of="2026-02-28")
    scores_io.write_scores(create_engine(url), cust, leads, cfg=ScoringConfig(), schema=schema)
    """
)


def test_killed_writer_leaves_previous_scores(store, tmp_path):
    engine, schema = store
    write_scores(engine, make_customer_scores(2000), make_lead_scores(500), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    ready = tmp_path / "ready"
    script = tmp_path / "writer.py"
    n = 20_000
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parents[2]), n=n))
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "CRMSCORE_TEST_WRITER_URL": url}
    proc = subprocess.Popen([sys.executable, str(script), schema or "", str(ready)], env=env)
    try:
        deadline = time.monotonic() + 40
        while not ready.exists():
            assert proc.poll() is None, "writer exited before reaching the pause"
            assert time.monotonic() < deadline, "writer never reached the pause"
            time.sleep(0.05)
        assert ready.read_text() == str(n)  # latest rows were replaced inside the open transaction
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert_same(before, snapshot(engine, schema))
    # and the store still takes the next run
    write_scores(
        engine, make_customer_scores(2000, run_id="run-3", as_of="2026-03-31"), cfg=CFG, schema=schema
    )
    assert read_scores(engine, CFG, schema=schema)["run_id"].unique().tolist() == ["run-3"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.assign(churn_probability=d["churn_probability"].where(d.index != 3)),
            "churn_probability: 1 NaN",
        ),
        (lambda d: d.assign(p_alive=d["p_alive"] + 1.5), r"p_alive: \d+ values outside \[0.0, 1.0\]"),
        (lambda d: d.assign(predicted_clv=-d["predicted_clv"]), r"predicted_clv: \d+ values outside >= 0"),
        (lambda d: d.iloc[1:], r"customer_scores: 99 rows for 100 expected ids"),
        (lambda d: d.iloc[:0], "empty"),
    ],
)
def test_invalid_scores_write_nothing(store, mutate, message):
    engine, schema = store
    good = make_customer_scores(100)
    write_scores(engine, good, cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    bad = mutate(make_customer_scores(100, run_id="run-2", as_of="2026-02-28"))
    with pytest.raises(ScoreValidationError, match=message):
        write_scores(engine, bad, cfg=CFG, schema=schema, expected_customer_ids=good["customer_id"])
    assert_same(before, snapshot(engine, schema))


def test_shrunken_score_set_is_refused(store):
    engine, schema = store
    write_scores(engine, make_customer_scores(1000), make_lead_scores(100), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    small = make_customer_scores(400, run_id="run-2", as_of="2026-02-28")
    with pytest.raises(
        ScoreValidationError, match=r"400 rows is fewer than 50% of the previous run's 1000 rows"
    ):
        write_scores(engine, small, make_lead_scores(100, run_id="run-2"), cfg=CFG, schema=schema)
    assert_same(before, snapshot(engine, schema))
    # a knowingly lowered ratio lets it through
    lax = CFG.model_copy(update={"min_rows_ratio": 0.3})
    write_scores(engine, small, cfg=lax, schema=schema)
    assert len(read_scores(engine, CFG, "customer_history", schema=schema)) == 1400


def test_bad_table_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"scoring\.customer_scores_table"):
        config_from_mapping({"scoring": {"customer_scores_table": 'x"; drop table customers; --'}})
    with pytest.raises(ConfigError, match="distinct"):
        config_from_mapping({"scoring": {"lead_scores_table": "customer_scores"}})
    # a config built around validation is still refused before any SQL
    sneaky = ScoringConfig.model_construct(**{**CFG.model_dump(), "lead_history_table": "a b"})
    engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    with pytest.raises(ConfigError, match=r"scoring\.lead_history_table"):
        write_scores(engine, make_customer_scores(10), cfg=sneaky)
    assert sa.inspect(engine).get_table_names() == []


def test_custom_table_names_and_foreign_table(store):
    engine, schema = store
    cfg = CFG.model_copy(update={"customer_scores_table": "cs_latest", "customer_history_table": "cs_hist"})
    cfg_foreign = cfg.model_copy(update={"lead_scores_table": "foreign_table"})
    write_scores(engine, make_customer_scores(20), cfg=cfg, schema=schema)
    assert len(read_scores(engine, cfg, schema=schema)) == 20
    assert {"cs_latest", "cs_hist"} <= set(sa.inspect(engine).get_table_names(schema=schema))
    # an unrelated table already using a configured name is not written into
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {'' if schema is None else schema + '.'}foreign_table (x integer)")
        )
    before = read_scores(engine, cfg, "customer_history", schema=schema)
    with pytest.raises(ScoreTableError, match="foreign_table"):
        write_scores(
            engine, make_customer_scores(20, run_id="r2"), make_lead_scores(5), cfg=cfg_foreign, schema=schema
        )
    pd.testing.assert_frame_equal(read_scores(engine, cfg, "customer_history", schema=schema), before)


@pytest.mark.postgres
def test_copy_in_batches_round_trips_and_a_failing_batch_writes_nothing(pg_engine, pg_schema, monkeypatch):
    """The PostgreSQL COPY formats and sends the rows batch by batch (formatting in a thread)."""
    monkeypatch.setattr(scores_io, "_COPY_BATCH_ROWS", 7)  # 300 rows: 43 batches, a short last one
    cust, leads = make_customer_scores(300), make_lead_scores(50)
    write_scores(pg_engine, cust, leads, cfg=CFG, schema=pg_schema, expected_customer_ids=cust["customer_id"])
    got = snapshot(pg_engine, pg_schema)
    pd.testing.assert_frame_equal(got["customer_history"], as_read(cust))
    pd.testing.assert_frame_equal(got["lead_scores"], as_read(leads, latest=True))

    real, sent = scores_io._csv_bytes, []

    def failing(batch):
        sent.append(batch.num_rows)
        if len(sent) == 20:
            raise RuntimeError("injected failure while formatting a batch")
        return real(batch)

    monkeypatch.setattr(scores_io, "_csv_bytes", failing)
    run2 = make_customer_scores(300, run_id="run-2", as_of="2026-02-28", seed=3)
    with pytest.raises(RuntimeError, match="injected"):
        write_scores(pg_engine, run2, cfg=CFG, schema=pg_schema)
    assert_same(got, snapshot(pg_engine, pg_schema))


# ScoreWriter: the transaction crmscore score feeds while it computes (background on PostgreSQL)


def _held_write(engine, schema, cust, leads, held, *, background=True, before_leads=None):
    """Customer rows with ``held`` ones deferred, their reasons, then the leads, as run_score does."""
    with scores_io.ScoreWriter(engine, CFG, schema=schema, background=background) as w:
        blank = cust.assign(top_reasons=np.where(held, None, cust["top_reasons"]))
        w.write("customer", blank, cust["customer_id"], defer_reasons=held)
        w.complete_reasons("customer", cust.loc[held, "top_reasons"].to_numpy(dtype=object))
        if before_leads is not None:
            before_leads()
        w.write("lead", leads, leads["lead_id"])
    return w.result


@pytest.mark.parametrize("background", [True, False])
def test_writer_with_held_back_rows_writes_what_write_scores_writes(store, tmp_path, background):
    engine, schema = store
    cust, leads = make_customer_scores(300), make_lead_scores(40)
    held = (cust["churn_risk"] != "low").to_numpy()  # the rows with reasons come last
    res = _held_write(engine, schema, cust, leads, held, background=background)
    assert res.history_inserted == {"customer_score_history": 300, "lead_score_history": 40}
    assert res.latest_updated == {"customer_scores": 300, "lead_scores": 40}
    assert ("wait" in res.timings) == background
    got = snapshot(engine, schema)
    ref_engine = create_engine(f"sqlite:///{tmp_path / 'ref.sqlite'}")
    write_scores(ref_engine, cust, leads, cfg=CFG)
    ref = snapshot(ref_engine, None)
    ref_engine.dispose()
    assert_same(got, ref)
    # a replay through the writer changes nothing
    again = _held_write(engine, schema, cust, leads, held, background=background)
    assert again.history_inserted == {"customer_score_history": 0, "lead_score_history": 0}
    assert_same(snapshot(engine, schema), got)
    # the next run replaces every latest row, the held ones (upserted apart on PostgreSQL) too
    cust2 = make_customer_scores(300, run_id="run-2", as_of="2026-02-28", seed=4)
    leads2 = make_lead_scores(40, run_id="run-2", as_of="2026-02-28")
    held2 = (cust2["churn_risk"] != "low").to_numpy()
    assert 0 < held2.sum() < len(held2)
    res2 = _held_write(engine, schema, cust2, leads2, held2, background=background)
    assert res2.latest_updated == {"customer_scores": 300, "lead_scores": 40}
    ref_engine = create_engine(f"sqlite:///{tmp_path / 'ref.sqlite'}")
    write_scores(ref_engine, cust2, leads2, cfg=CFG)
    ref2 = snapshot(ref_engine, None)
    ref_engine.dispose()
    assert_same(snapshot(engine, schema), ref2)
    assert (ref2["customer_scores"]["run_id"] == "run-2").all()


@pytest.mark.parametrize("where", ["caller", "writer"])
def test_writer_failure_while_rows_are_in_flight_leaves_previous_scores(store, monkeypatch, where):
    engine, schema = store
    write_scores(engine, make_customer_scores(150), make_lead_scores(30), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    cust = make_customer_scores(150, run_id="run-2", as_of="2026-02-28", seed=3)
    leads = make_lead_scores(30, run_id="run-2", as_of="2026-02-28")
    held = (cust["churn_risk"] == "high").to_numpy()

    def caller_fails():
        raise RuntimeError("injected failure in the scoring")

    if where == "writer":
        real = scores_io._upsert_latest

        def failing(conn, kind, hist, latest, params, ids=None):
            if kind.name == "lead":  # customer history and latest written by now
                raise RuntimeError("injected failure in the writer")
            return real(conn, kind, hist, latest, params, ids)

        monkeypatch.setattr(scores_io, "_upsert_latest", failing)
    with pytest.raises(
        RuntimeError, match=f"injected failure in the {'scoring' if where == 'caller' else 'writer'}"
    ):
        _held_write(
            engine, schema, cust, leads, held, before_leads=caller_fails if where == "caller" else None
        )
    assert_same(before, snapshot(engine, schema))


def test_writer_refuses_held_rows_never_completed_and_bad_reasons(store):
    engine, schema = store
    cust = make_customer_scores(50)
    held = np.zeros(len(cust), dtype=bool)
    held[:5] = True
    with (
        pytest.raises(RuntimeError, match="never completed"),
        scores_io.ScoreWriter(engine, CFG, schema=schema) as w,
    ):
        w.write("customer", cust, defer_reasons=held)
    with (
        pytest.raises(ScoreValidationError, match="text or None"),
        scores_io.ScoreWriter(engine, CFG, schema=schema) as w,
    ):
        w.write("customer", cust, defer_reasons=held)
        w.complete_reasons("customer", [1, 2, 3, 4, 5])
    with (
        pytest.raises(ValueError, match="4 reasons for 5"),
        scores_io.ScoreWriter(engine, CFG, schema=schema) as w,
    ):
        w.write("customer", cust, defer_reasons=held)
        w.complete_reasons("customer", [None] * 4)
    assert read_scores(engine, CFG, schema=schema).empty


def test_writer_checks_each_frame_before_sending_it(store):
    engine, schema = store
    write_scores(engine, make_customer_scores(100), cfg=CFG, schema=schema)
    before = snapshot(engine, schema)
    bad = make_customer_scores(100, run_id="run-2", as_of="2026-02-28")
    bad.loc[3, "churn_probability"] = 1.5
    with (
        pytest.raises(ScoreValidationError, match="churn_probability"),
        scores_io.ScoreWriter(engine, CFG, schema=schema) as w,
    ):
        w.write("lead", make_lead_scores(20, run_id="run-2", as_of="2026-02-28"))
        w.write("customer", bad)  # refused in the caller's thread; the leads are rolled back
    assert_same(before, snapshot(engine, schema))


def test_writer_that_fails_to_begin_releases_its_connection(store, monkeypatch):
    """A failure while entering (here the table check) rolls back and closes at once: the
    next writer gets the lock instead of waiting for a transaction left open."""
    engine, schema = store

    def refuse(*a, **k):
        raise ScoreTableError("injected: existing table without the columns")

    with monkeypatch.context() as mp:
        mp.setattr(scores_io, "_check_existing", refuse)
        with pytest.raises(ScoreTableError, match="injected"):
            write_scores(engine, make_customer_scores(20), cfg=CFG, schema=schema)
    write_scores(engine, make_customer_scores(20), cfg=CFG, schema=schema)  # would wait forever
    assert len(read_scores(engine, CFG, schema=schema)) == 20
