"""The score writer's lock (crmscore.io.score_lock, ScoreWriter._begin) on SQLite and PostgreSQL.

Proves: a writer that finds the lock held by another run waits at most ``scoring.lock_timeout_s``,
logs what it waits for at once, then fails with :class:`LockTimeoutError` naming the holder
(application name, pid) and writes nothing; a lock released within the timeout lets it write;
SQLite names the holder from the sidecar a real writer leaves beside the database (stale when its
process is gone, "did not record itself" without one); the previous scores are read while another
run holds the lock (SQLite: its changes stay in memory, no exclusive lock); the PostgreSQL
writer's session is named and has an ``idle_in_transaction_session_timeout``, and a writer idle
beyond it is ended by the server with nothing committed; an abandoned wait stops at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from crmscore.config import ScoringConfig
from crmscore.core.score_contract import LockTimeoutError
from crmscore.io.crm import create_engine
from crmscore.io.score_lock import (
    WriterSessionTimeoutError,
    acquire_pg_lock,
    application_name,
    sidecar_path,
    sqlite_file,
)
from crmscore.io.scores import ScoreWriter, read_previous_scores, write_scores
from helpers import assert_same_scores, make_customer_scores, score_snapshot

CFG = ScoringConfig()
#: a writer that gives up quickly
IMPATIENT = ScoringConfig(lock_timeout_s=1)
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('crmscore.scores:' || :s))"


@dataclass
class Store:
    engine: sa.Engine
    schema: str | None
    backend: str


@dataclass
class Held:
    """The write lock held by another run until :meth:`release`."""

    application: str  #: the holder's application name, as the message must give it
    pid: int  #: the pid the message must give (PostgreSQL: server pid; SQLite: process id)
    release: Callable[[], None]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Iterator[Store]:
    """An empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
        yield Store(engine, None, "sqlite")
        engine.dispose()
    else:
        yield Store(request.getfixturevalue("pg_engine"), request.getfixturevalue("pg_schema"), "postgres")


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    done = threading.Lock()

    def call() -> None:
        if done.acquire(blocking=False):
            fn()

    return call


@contextmanager
def held_by_another_run(store: Store) -> Iterator[Held]:
    """The write lock of ``store``'s score tables held by another session in an open transaction.

    SQLite: a real :class:`ScoreWriter` on its own engine, entered and left open (it records
    itself beside the database). PostgreSQL: a session with its own ``application_name``
    holding the writers' advisory lock of the schema.
    """
    if store.backend == "sqlite":
        other = create_engine(str(store.engine.url))
        writer = ScoreWriter(other, CFG)
        writer.__enter__()
        exc = RuntimeError("released")  # leaving with an exception rolls back
        held = Held(application_name(), os.getpid(), _once(lambda: writer.__exit__(RuntimeError, exc, None)))
        try:
            yield held
        finally:
            held.release()
            other.dispose()
    else:
        conn = store.engine.connect()
        conn.execute(sa.text("SELECT set_config('application_name', 'nightly crm import', false)"))
        conn.execute(sa.text(LOCK_SQL), {"s": store.schema})
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        held = Held("nightly crm import", pid, _once(conn.rollback))
        try:
            yield held
        finally:
            held.release()
            conn.exec_driver_sql("RESET application_name")
            conn.close()


class _OnWaiting(logging.Handler):
    """Calls ``action`` once, when the writer logs that it waits for the lock."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self.action = _once(action)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for"):
            self.action()


@contextmanager
def on_waiting(action: Callable[[], None]) -> Iterator[None]:
    logger = logging.getLogger("crmscore.io.score_lock")
    handler, level = _OnWaiting(action), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _waiting_lines(caplog) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "crmscore.io.score_lock" and r.getMessage().startswith("waiting for")
    ]


# ------------------------------------------------------------------------ both backends


def test_held_lock_times_out_naming_the_holder_and_writes_nothing(store, caplog):
    caplog.set_level(logging.INFO, logger="crmscore")
    write_scores(store.engine, make_customer_scores(100), cfg=CFG, schema=store.schema)
    before = score_snapshot(store.engine, store.schema)
    run2 = make_customer_scores(100, run_id="run-2", as_of="2026-02-28", seed=2)
    with held_by_another_run(store) as held:
        with pytest.raises(LockTimeoutError) as info:
            write_scores(store.engine, run2, cfg=IMPATIENT, schema=store.schema)
        msg = str(info.value)
        assert repr(held.application) in msg and f"pid {held.pid}" in msg, msg
        assert "nothing was written" in msg and "scoring.lock_timeout_s" in msg, msg
        stop = f"pg_terminate_backend({held.pid})" if store.backend == "postgres" else f"kill {held.pid}"
        assert stop in msg, msg
        waiting = _waiting_lines(caplog)
        assert waiting and waiting[0].levelno == logging.WARNING, caplog.text
        assert repr(held.application) in waiting[0].getMessage(), waiting[0].getMessage()
        if store.backend == "postgres":  # who and since when, never what it runs
            assert "idle in transaction" in msg and "transaction open since" in msg, msg
    assert_same_scores(before, score_snapshot(store.engine, store.schema))


def test_lock_released_within_the_timeout_lets_the_writer_write(store, caplog):
    caplog.set_level(logging.INFO, logger="crmscore")
    with held_by_another_run(store) as held, on_waiting(held.release):  # released once waited for
        res = write_scores(
            store.engine, make_customer_scores(100), cfg=ScoringConfig(lock_timeout_s=60), schema=store.schema
        )
    assert res.latest_updated == {"customer_scores": 100}
    assert len(score_snapshot(store.engine, store.schema)["customer_scores"]) == 100
    assert _waiting_lines(caplog), "the writer never waited: the test proves nothing"
    assert any(r.getMessage().startswith("got the") for r in caplog.records), caplog.text


def test_previous_scores_are_read_while_another_run_holds_the_write_lock(store):
    """The next run reads the previous scores (and the CRM) while another run is writing:
    SQLite's writer keeps its pages in memory (cache_spill off), so it holds no exclusive lock
    before its commit (measured: with cache_spill on, these 5,000 rows overflow SQLite's default
    2 MB page cache and a reader gets "database is locked")."""
    write_scores(store.engine, make_customer_scores(100), cfg=CFG, schema=store.schema)
    big = make_customer_scores(5_000, run_id="run-2", as_of="2026-02-28", seed=3)
    with ScoreWriter(store.engine, CFG, schema=store.schema) as writer:
        writer.write("customer", big)
        writer._drain()  # PostgreSQL: the background thread has sent them
        prev = read_previous_scores(store.engine, CFG, as_of="2026-03-31", schema=store.schema)
        assert prev is not None and len(prev) == 100  # the committed run, not the one in progress
        assert set(prev["as_of"].astype(str).str[:10]) == {"2026-01-31"}
    assert len(score_snapshot(store.engine, store.schema)["customer_scores"]) == 5_000


# ------------------------------------------------------------------------------- SQLite


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(out.stdout)


@pytest.mark.parametrize("sidecar", ["none", "stale"])
def test_sqlite_lock_of_another_program_is_named_as_such(tmp_path, sidecar, caplog):
    """A write transaction of a program that is not a crmscore writer (no sidecar, or one left
    by a killed writer): the message says so and what to do."""
    caplog.set_level(logging.INFO, logger="crmscore")
    db = tmp_path / "crm.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    if sidecar == "stale":
        record = {"pid": _dead_pid(), "host": socket.gethostname(), "application": "crmscore score pid=1"}
        sidecar_path(db).write_text(json.dumps({**record, "since": "2026-01-01T00:00:00+00:00"}))
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(LockTimeoutError) as info:
            write_scores(engine, make_customer_scores(10), cfg=IMPATIENT)
        other.execute("ROLLBACK")
        assert sa.inspect(engine).get_table_names() == []  # nothing written
    finally:
        other.close()
        engine.dispose()
    msg = str(info.value)
    if sidecar == "none":
        assert "did not record itself (not a crmscore writer" in msg, msg
    else:
        assert f"pid {record['pid']} on this host" in msg and "no longer running" in msg, msg
        assert "stale" in msg, msg
    assert "End the other program's write transaction" in msg, msg
    assert _waiting_lines(caplog), caplog.text


def test_sqlite_sidecar_names_the_writer_while_it_holds_the_lock(tmp_path):
    db = tmp_path / "crm.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    path = sidecar_path(db)
    with ScoreWriter(engine, CFG) as writer:
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["application"] == application_name()
        writer.write("customer", make_customer_scores(10))
    assert not path.exists()  # removed with the transaction
    with pytest.raises(RuntimeError, match="injected"), ScoreWriter(engine, CFG):
        assert path.exists()
        raise RuntimeError("injected")
    assert not path.exists()  # and after a failed run
    # the connection went back to the pool with cache_spill on again
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_spill").scalar_one() > 0
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
    engine.dispose()


def test_in_memory_sqlite_writes_without_a_sidecar(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sqlite_file(sa.make_url("sqlite://")) is None
    assert sqlite_file(sa.make_url("sqlite:///:memory:")) is None
    engine = create_engine("sqlite://")
    res = write_scores(engine, make_customer_scores(10), cfg=CFG)
    assert res.latest_updated == {"customer_scores": 10}
    assert list(tmp_path.iterdir()) == []
    engine.dispose()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_writer_session_is_named_and_has_an_idle_timeout(pg_engine, pg_schema):
    cfg = ScoringConfig(idle_in_transaction_timeout_s=7)
    with ScoreWriter(pg_engine, cfg, schema=pg_schema, background=False) as writer:
        conn = writer._conn
        assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar_one() == "7s"
        assert conn.exec_driver_sql("SHOW application_name").scalar_one() == application_name()
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with pg_engine.connect() as other:  # what the other runs see
            seen = other.execute(
                sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
        assert seen == application_name()
    with pg_engine.connect() as conn:  # set for the writer's transaction only
        assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar_one() == "0"
        assert not conn.exec_driver_sql("SHOW application_name").scalar_one().startswith("crmscore")


@pytest.mark.postgres
def test_postgres_writer_idle_beyond_its_timeout_is_ended_and_commits_nothing(pg_engine, pg_schema):
    write_scores(pg_engine, make_customer_scores(50), cfg=CFG, schema=pg_schema)
    before = score_snapshot(pg_engine, pg_schema)
    cfg = ScoringConfig(idle_in_transaction_timeout_s=0.5)
    with (
        pytest.raises(WriterSessionTimeoutError, match=r"scoring\.idle_in_transaction_timeout_s"),
        ScoreWriter(pg_engine, cfg, schema=pg_schema) as writer,
    ):
        writer.write("customer", make_customer_scores(50, run_id="run-2", as_of="2026-02-28"))
        writer._drain()  # sent: the session is idle in its transaction from here
        time.sleep(1.5)  # the caller "computes" longer than the timeout
    assert_same_scores(before, score_snapshot(pg_engine, pg_schema))


@pytest.mark.postgres
def test_postgres_abandoned_lock_wait_stops_at_once(pg_engine, pg_schema):
    """Ctrl-C while the background thread waits for the lock: the wait is given up at once
    (not after scoring.lock_timeout_s), the interrupt goes on, nothing is left open."""
    store = Store(pg_engine, pg_schema, "postgres")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.main_thread().ident
    try:
        with held_by_another_run(store), on_waiting(lambda: signal.pthread_kill(main, signal.SIGUSR1)):
            writer = ScoreWriter(pg_engine, ScoringConfig(lock_timeout_s=600), schema=pg_schema)
            with pytest.raises(KeyboardInterrupt):
                writer.__enter__()  # waits in the main thread for the background thread's lock
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # the background thread gave up (it would have raised LockTimeoutError after 600 s)
    assert isinstance(writer._error, RuntimeError) and "abandoned" in str(writer._error)
    assert writer._conn is not None and writer._conn.closed


@pytest.mark.postgres
def test_postgres_lock_holder_is_named_from_pg_locks(pg_engine, pg_schema, caplog):
    """acquire_pg_lock alone: the key of the writers' lock, the holder's row of pg_stat_activity."""
    caplog.set_level(logging.INFO, logger="crmscore")
    store = Store(pg_engine, pg_schema, "postgres")
    with held_by_another_run(store) as held, pg_engine.connect() as conn:
        with pytest.raises(LockTimeoutError, match=f"'nightly crm import' \\(server pid {held.pid}, user "):
            acquire_pg_lock(conn, pg_schema, timeout_s=0.3, idle_in_transaction_timeout_s=60)
        conn.rollback()
        held.release()
        acquire_pg_lock(conn, pg_schema, timeout_s=0.3, idle_in_transaction_timeout_s=60)  # free now
        conn.rollback()
