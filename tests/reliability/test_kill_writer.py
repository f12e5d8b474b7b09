"""A score writer killed, stopped, interrupted or cut off at random points loses nothing (SQLite
and PostgreSQL).

Each trial interrupts a writer running in its own process on a store that already holds a
previous run, then asserts **nothing lost**: every table of the store (latest, history, run log)
equals exactly its state before the run or, when the interruption came after the commit, exactly
the state an uninterrupted run leaves (never a mix; compared row for row in SQL); SQLite's
``PRAGMA integrity_check`` is ``ok``; no lock is left behind (the next run takes it within a few
seconds) and the next run succeeds.

The writers
-----------
* **the write-back of** ``crmscore score`` (:func:`_run_writer`): a
  :class:`crmscore.io.scores.ScoreWriter` fed as :func:`crmscore.pipelines.score.run_score`
  feeds it (customer rows with the explained ones held back, their reasons, then the leads;
  sent from a background thread on PostgreSQL), 30,000 customers and 3,000 leads; 14 trials
  (7 per backend: SIGKILL at two random delays and at the four hooks, SIGTERM at a random delay);
* **the real** ``crmscore score`` (:func:`_cli_child`) on the trained project, held at one point
  by a hook, for Ctrl-C (SIGINT: exit 130, "nothing of this run was committed", on SQLite in the
  middle of the write, on PostgreSQL while the command waits for its background writer) and for
  a PostgreSQL session ended by ``pg_terminate_backend`` (exit 1, the error named).

Each writer is a fresh process forked from a forkserver that has imported the libraries once
(:func:`writers`): a process of its own (its own connection, killed for real), started in
milliseconds instead of seconds.

Random points
-------------
Seeded (``CRMSCORE_KILL_SEED``, default :data:`SEED`); the seed and the point are in every
assertion message, so a failure is rerun with the same point. Two kinds:

* ``delay``: SIGKILL (or SIGTERM) a delay drawn uniformly in ``[0, 1.25 D]`` after the writer
  says its transaction is open, ``D`` the duration of an uninterrupted write measured on the
  same backend (one calibration run per backend and worker, which also gives the reference
  state of a complete run); about a fifth of the draws fall after the commit;
* hooks, SIGKILL while the writer waits at: ``history`` (mid bulk load: after a random number
  of COPY batches on PostgreSQL, of ``executemany`` rows on SQLite), ``upsert`` (the history
  rows in, the latest table not yet), ``commit`` (everything sent, COMMIT not yet issued),
  ``committed`` (after the COMMIT).
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from helpers import make_customer_scores, make_lead_scores, run_cli_captured
from projects import logging_restored, write_params

#: base seed of the random points (``CRMSCORE_KILL_SEED`` overrides it to explore others)
SEED = 20260217
#: the interrupted run, and the previous one the store holds before it
N_CUSTOMERS, N_LEADS = 30_000, 3_000
N_BEFORE, N_LEADS_BEFORE = 2_000, 500
#: rows per COPY batch (PostgreSQL) / per mid-load cut (SQLite) of the ``history`` hook
BATCH_ROWS = 2_000
#: the next run after each trial waits at most this long for the lock
NEXT_RUN_LOCK_TIMEOUT_S = 15.0
HOOKS = ("history", "upsert", "commit", "committed")
AS_OF_BEFORE, AS_OF_RUN, AS_OF_NEXT = "2026-01-31", "2026-02-28", "2026-03-31"
#: customers of the next run after a trial
N_NEXT = 200
#: the CLI trials: the project is scored as of CLI_BEFORE, then interrupted scoring CLI_RUN
CLI_BEFORE, CLI_RUN = "2025-11-30", "2025-12-31"


# =========================================================================== the writer process


def _signal(folder: Path, name: str) -> None:
    """``folder/name`` holding ``time.monotonic()`` (system-wide on Linux), written whole then renamed."""
    tmp = folder / f".{name}.tmp"
    tmp.write_text(repr(time.monotonic()))
    tmp.replace(folder / name)


def _pause(folder: Path, name: str = "paused", timeout_s: float = 120.0) -> None:
    """Say ``name`` and wait until the test creates ``folder/release`` (or kills this process)."""
    _signal(folder, name)
    deadline = time.monotonic() + timeout_s
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _install_hook(hook: str, k: int, folder: Path) -> None:
    """Make the writer wait at ``hook`` (``history`` after ``k`` batches, ``upsert``, ``commit``)."""
    import crmscore.io.scores as scores_io

    if hook == "history":
        scores_io._COPY_BATCH_ROWS = BATCH_ROWS
        real_csv, real_many = scores_io._csv_bytes, scores_io._executemany
        formatted = [0]

        def csv_bytes(batch: Any) -> Any:  # PostgreSQL: in the COPY's formatting thread
            formatted[0] += 1
            if formatted[0] == k + 1:  # batches 0 .. k-1 formatted and sent: the COPY is open
                _pause(folder)
            return real_csv(batch)

        def executemany(conn: Any, df: pd.DataFrame, target: str, chunksize: int) -> None:  # SQLite
            if formatted[0] == 0:  # the customer history, cut after k * BATCH_ROWS rows
                formatted[0] = 1
                cut = min(len(df) - 1, k * BATCH_ROWS)
                real_many(conn, df.iloc[:cut], target, chunksize)
                _pause(folder)
                real_many(conn, df.iloc[cut:], target, chunksize)
                return
            real_many(conn, df, target, chunksize)

        scores_io._csv_bytes, scores_io._executemany = csv_bytes, executemany
    elif hook == "upsert":
        real_upsert = scores_io._upsert_latest
        done = [False]

        def upsert(conn: Any, kind: Any, *args: Any, **kwargs: Any) -> int:
            if not done[0]:  # the first upsert: customer history rows in, latest not yet
                done[0] = True
                _pause(folder)
            return real_upsert(conn, kind, *args, **kwargs)

        scores_io._upsert_latest = upsert
    elif hook == "commit":
        real_commit = scores_io.ScoreWriter._commit

        def commit(self: Any) -> None:
            _pause(folder)
            real_commit(self)

        scores_io.ScoreWriter._commit = commit  # type: ignore[method-assign]
    elif hook not in ("", "committed"):
        raise ValueError(f"unknown hook {hook!r}")


def _writer_child(url: str, schema: str | None, folder: Path, hook: str, hold: bool) -> None:
    """The write-back process (a forkserver child): its output to ``folder/output.log``, then
    :func:`_run_writer` held at ``hook`` (``name[:k]``)."""
    log = os.open(folder / "output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    name, _, k = hook.partition(":")
    _install_hook(name, int(k or 1), folder)
    _run_writer(url, schema, folder, name, hold)


def _run_writer(url: str, schema: str | None, folder: Path, hook: str, hold: bool) -> None:
    """One run's write-back as ``crmscore score`` does it (run-2: 30,000 customers, 3,000 leads)."""
    from crmscore.config import ScoringConfig
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import ScoreWriter

    cust = make_customer_scores(N_CUSTOMERS, run_id="run-2", as_of=AS_OF_RUN, seed=7)
    leads = make_lead_scores(N_LEADS, run_id="run-2", as_of=AS_OF_RUN)
    held = (cust["churn_risk"] == "high").to_numpy()  # their reasons "are being computed"
    blank = cust.assign(top_reasons=np.where(held, None, cust["top_reasons"]))
    engine = create_engine(url)
    with ScoreWriter(engine, ScoringConfig(chunksize=BATCH_ROWS), schema=schema) as w:
        _signal(folder, "begun")  # the transaction is open, the lock held
        w.write("customer", blank, cust["customer_id"], defer_reasons=held)
        w.complete_reasons("customer", cust.loc[held, "top_reasons"].to_numpy(dtype=object))
        w.write("lead", leads, leads["lead_id"])
    _signal(folder, "committed")
    if hook == "committed":
        _pause(folder)
    elif hold:
        _pause(folder, "done")


def _cli_child(folder: Path, hook: str, root: Path, cli_args: tuple[str, ...]) -> None:
    """The real ``crmscore`` in a forkserver child, in ``root``, held at ``hook``.

    Also says ``final-wait`` when the command has sent everything and waits for the writer,
    and ``sigint`` when Ctrl-C reaches it (then raises KeyboardInterrupt, as Python's handler).
    Exits with the CLI's code.
    """
    log = os.open(folder / "output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(root)
    for name in ("MLFLOW_TRACKING_URI", "CRMSCORE_CRM_URL"):
        os.environ.pop(name, None)
    name, _, k = hook.partition(":")
    _install_hook(name, int(k or 1), folder)
    from crmscore import cli
    from crmscore.io.scores import ScoreWriter

    real_exit = ScoreWriter.__exit__

    def exit_(self: Any, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:  # the caller's part is done: it waits for the transaction to finish
            _signal(folder, "final-wait")
        real_exit(self, exc_type, exc, tb)

    ScoreWriter.__exit__ = exit_  # type: ignore[method-assign]

    def on_sigint(signum: int, frame: Any) -> None:
        _signal(folder, "sigint")
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    sys.argv = ["crmscore", *cli_args]
    cli.main()


# =========================================================================== the test's side


@dataclass
class Store:
    """A store under test: its engine, schema (PostgreSQL) or file (SQLite), and the URL a writer gets."""

    backend: str
    engine: sa.Engine
    schema: str | None
    url: str
    path: Path | None = None  #: the SQLite file

    @property
    def where(self) -> str:
        """How the store's tables are named from another store's connection (ATTACH / schema)."""
        return "ref" if self.backend == "sqlite" else f'"{self.schema}"'


@contextmanager
def _store(backend: str, tmp: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty store: a new SQLite file, or a new PostgreSQL schema (dropped afterwards)."""
    from crmscore.io.crm import create_engine

    if backend == "sqlite":
        path = tmp / f"crm-{uuid.uuid4().hex[:8]}.sqlite"
        engine = create_engine(f"sqlite:///{path}")
        try:
            yield Store(backend, engine, None, f"sqlite:///{path}", path)
        finally:
            engine.dispose()
        return
    pg = request.getfixturevalue("pg_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield Store(backend, pg, schema, pg.url.render_as_string(hide_password=False))
    finally:
        with pg.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _write_previous_run(store: Store) -> None:
    from crmscore.config import ScoringConfig
    from crmscore.io.scores import write_scores

    write_scores(
        store.engine,
        make_customer_scores(N_BEFORE, run_id="run-1", as_of=AS_OF_BEFORE),
        make_lead_scores(N_LEADS_BEFORE, run_id="run-1", as_of=AS_OF_BEFORE),
        cfg=ScoringConfig(),
        schema=store.schema,
    )


def _columns(store: Store) -> dict[str, list[str]]:
    """Table → its columns (sorted), every table of the store."""
    insp = sa.inspect(store.engine)
    return {
        t: sorted(c["name"] for c in insp.get_columns(t, schema=store.schema))
        for t in sorted(insp.get_table_names(schema=store.schema))
    }


@contextmanager
def _beside(store: Store, other: Store) -> Iterator[sa.Connection]:
    """A connection of ``store`` from which ``other``'s tables are ``other.where``."""
    with store.engine.connect() as conn:
        if store.backend == "sqlite":
            conn.exec_driver_sql("ATTACH DATABASE ? AS ref", (str(other.path),))
        try:
            yield conn
        finally:
            if store.backend == "sqlite":
                conn.rollback()
                conn.exec_driver_sql("DETACH DATABASE ref")


def _own(store: Store, table: str) -> str:
    return f'"{table}"' if store.schema is None else f'"{store.schema}"."{table}"'


def store_difference(store: Store, expected: Store) -> str | None:
    """None if every table of ``store`` holds exactly the rows of ``expected``'s, else what differs.

    Compared in SQL, row for row and column for column (``EXCEPT`` both ways and the row counts:
    exact floats, NULLs equal to NULLs), so a run of 30,000 rows is compared without reading it.
    """
    got, want = _columns(store), _columns(expected)
    if got != want:
        return f"tables and columns {got} instead of {want}"
    problems = []
    with _beside(store, expected) as conn:
        for table, cols in want.items():
            c = ", ".join(f'"{x}"' for x in cols)
            mine, theirs = _own(store, table), f'{expected.where}."{table}"'
            only_here = conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT {c} FROM {mine} EXCEPT SELECT {c} FROM {theirs}) d"
            ).scalar_one()
            only_there = conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT {c} FROM {theirs} EXCEPT SELECT {c} FROM {mine}) d"
            ).scalar_one()
            n_mine = conn.exec_driver_sql(f"SELECT count(*) FROM {mine}").scalar_one()
            n_theirs = conn.exec_driver_sql(f"SELECT count(*) FROM {theirs}").scalar_one()
            if only_here or only_there or n_mine != n_theirs:
                problems.append(
                    f"{table}: {n_mine} rows instead of {n_theirs}, {only_here} not expected, "
                    f"{only_there} expected rows missing"
                )
    return "; ".join(problems) or None


def _rows_per_run(store: Store) -> dict[str, dict[str, int]]:
    """Table → run_id → rows, for the tables with a ``run_id`` (a mix shows at a glance)."""
    out = {}
    with store.engine.connect() as conn:
        for table, cols in _columns(store).items():
            if "run_id" in cols:
                rows = conn.exec_driver_sql(
                    f"SELECT run_id, count(*) FROM {_own(store, table)} GROUP BY run_id ORDER BY run_id"
                ).all()
                out[table] = {str(r): int(n) for r, n in rows}
    return out


def assert_integrity(store: Store, what: str) -> None:
    if store.backend == "sqlite":
        with store.engine.connect() as conn:
            check = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        assert check == "ok", f"{what}: PRAGMA integrity_check says {check!r}"


def assert_nothing_lost(store: Store, before: Store, complete: Store, what: str) -> str:
    """The store is exactly ``before`` or exactly ``complete`` (never a mix); returns which."""
    assert_integrity(store, what)
    not_before, not_complete = store_difference(store, before), store_difference(store, complete)
    assert not_before is None or not_complete is None, (
        f"{what}: the store is neither its state before the run nor the complete run; rows per "
        f"run: {_rows_per_run(store)}; against the state before: {not_before}; against the "
        f"complete run: {not_complete}"
    )
    return "before" if not_before is None else "complete"


def assert_next_run_succeeds(store: Store, what: str) -> None:
    """No lock left behind: the next run takes it within a few seconds and commits."""
    from crmscore.config import ScoringConfig
    from crmscore.io.scores import read_scores, write_scores

    cfg = ScoringConfig(min_rows_ratio=0.0, lock_timeout_s=NEXT_RUN_LOCK_TIMEOUT_S)
    start = time.monotonic()
    try:
        res = write_scores(
            store.engine,
            make_customer_scores(N_NEXT, run_id="run-3", as_of=AS_OF_NEXT, seed=3),
            cfg=cfg,
            schema=store.schema,
        )
    except Exception as exc:
        took = time.monotonic() - start
        raise AssertionError(f"{what}: the next run failed after {took:.1f} s: {exc}") from exc
    assert res.history_inserted == {"customer_score_history": N_NEXT}, (what, res)
    latest = read_scores(store.engine, cfg, schema=store.schema)
    assert (latest["run_id"] == "run-3").sum() == N_NEXT, what


class Child:
    """A writer process (a forkserver child) and the file its output goes to."""

    def __init__(self, proc: BaseProcess, log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        return int(self.proc.pid or 0)

    def poll(self) -> int | None:
        """The exit code (``-N``: ended by signal N), None while it runs."""
        return self.proc.exitcode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def finish(self, what: str, timeout_s: float = 60.0) -> tuple[int, str]:
        """Exit code and output once it has ended (killed, and a failure, after ``timeout_s``)."""
        self.proc.join(timeout_s)
        code = self.proc.exitcode
        if code is None:
            self.reap()
            raise AssertionError(f"{what}: the writer did not end within {timeout_s:g} s:\n{self.output()}")
        return code, self.output()

    def reap(self) -> None:
        if self.proc.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.join()


@contextmanager
def _reaped(child: Child) -> Iterator[Child]:
    """``child``, never left running (a failed assertion kills it)."""
    try:
        yield child
    finally:
        child.reap()


#: what the forkserver imports once, so that each write-back process starts in milliseconds
_PRELOAD = [
    *("numpy", "pandas", "pyarrow", "sqlalchemy", "psycopg", "pytest", "yaml", "crmscore.io.scores"),
    *("crmscore.cli", "crmscore.pipelines.score", "crmscore.tracking", "lightgbm", "sklearn"),
]


@pytest.fixture(scope="module")
def writers() -> BaseContext:
    """Start write-back processes from a forkserver: a fresh, single-threaded process each time,
    forked from a server that has imported the libraries already (a subprocess would spend one
    to four seconds importing them, per trial)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _fork_writer(
    writers: BaseContext,
    store: Store,
    folder: Path,
    hook: str = "",
    hold: bool = False,
) -> Child:
    folder.mkdir(parents=True, exist_ok=True)
    proc = writers.Process(  # type: ignore[attr-defined]
        target=_writer_child, args=(store.url, store.schema, folder, hook, hold), name="score-writer"
    )
    proc.start()
    return Child(proc, folder / "output.log")


def _fork_cli(writers: BaseContext, folder: Path, hook: str, cli_args: tuple[str, ...], root: Path) -> Child:
    """``crmscore CLI_ARGS`` in its own process, in ``root``, held at ``hook``."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = writers.Process(target=_cli_child, args=(folder, hook, root, cli_args), name="crmscore")  # type: ignore[attr-defined]
    proc.start()
    return Child(proc, folder / "output.log")


def _wait_for(child: Child, path: Path, what: str, timeout_s: float = 60.0) -> float:
    """The monotonic time written in ``path``, once it exists (the writer still running)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(
                f"{what}: the writer exited ({child.poll()}) before {path.name!r}:\n{child.output()}"
            )
        assert time.monotonic() < deadline, f"{what}: the writer never reached {path.name!r}"
        time.sleep(0.002)
    return float(path.read_text())


# --------------------------------------------------------------------- calibration, references


@dataclass(frozen=True)
class Reference:
    duration_s: float  #: begun -> committed of an uninterrupted write
    before: Store  #: a store holding the previous run only
    complete: Store  #: a store after the uninterrupted write


@pytest.fixture(scope="module")
def reference(request, tmp_path_factory, writers) -> Iterator[Callable[[str], Reference]]:
    """``reference(backend)``: the expected states, and one uninterrupted write measured (per worker)."""
    cache: dict[str, Reference] = {}
    with ExitStack() as stack:

        def get(backend: str) -> Reference:
            if backend in cache:
                return cache[backend]
            tmp = tmp_path_factory.mktemp(f"reference-{backend}")
            before = stack.enter_context(_store(backend, tmp, request))
            complete = stack.enter_context(_store(backend, tmp, request))
            _write_previous_run(before)
            _write_previous_run(complete)
            with _reaped(_fork_writer(writers, complete, tmp / "signals")) as child:
                code, out = child.finish(f"{backend} calibration")
            assert code == 0, out
            begun = float((tmp / "signals" / "begun").read_text())
            committed = float((tmp / "signals" / "committed").read_text())
            runs = _rows_per_run(complete)
            for table, n in (
                ("customer_scores", N_CUSTOMERS), ("customer_score_history", N_CUSTOMERS),
                ("lead_scores", N_LEADS), ("lead_score_history", N_LEADS),
            ):  # fmt: skip
                assert runs[table].get("run-2") == n, runs
            cache[backend] = Reference(committed - begun, before, complete)
            return cache[backend]

        yield get


# ------------------------------------------------------------------------------- the trials


@dataclass(frozen=True)
class Trial:
    backend: str
    kind: str  #: "delay" or a hook of HOOKS
    sig: signal.Signals
    index: int  #: position in the backend's list: its seed is the base seed + index (+ 1000 on PostgreSQL)

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.kind}-{self.sig.name}-{self.index}"


def _trials(backend: str) -> list[Trial]:
    """Per backend: two random delays and the four hooks under SIGKILL, a random delay under SIGTERM."""
    kinds = [
        ("delay", signal.SIGKILL), ("delay", signal.SIGKILL), *((h, signal.SIGKILL) for h in HOOKS),
        ("delay", signal.SIGTERM),
    ]  # fmt: skip
    return [Trial(backend, kind, sig, i) for i, (kind, sig) in enumerate(kinds)]


TRIALS = [
    *(pytest.param(t, id=t.id) for t in _trials("sqlite")),
    *(pytest.param(t, marks=pytest.mark.postgres, id=t.id) for t in _trials("postgres")),
]


def _seed(trial: Trial) -> int:
    base = int(os.environ.get("CRMSCORE_KILL_SEED", SEED))
    return base + trial.index + (1000 if trial.backend == "postgres" else 0)


def _first_send() -> int:
    """Customer rows the writer sends before the held-back ones (the first COPY / executemany)."""
    return int((make_customer_scores(N_CUSTOMERS, seed=7)["churn_risk"] != "high").sum())


@pytest.mark.parametrize("trial", TRIALS)
def test_writer_interrupted_at_a_random_point_loses_nothing(
    trial: Trial, reference, writers, request, tmp_path
):
    ref = reference(trial.backend)
    seed = _seed(trial)
    rng = np.random.default_rng(seed)
    if trial.kind == "delay":
        delay = float(rng.uniform(0.0, 1.25 * ref.duration_s))
        point, hook = f"{delay:.3f} s after the transaction opened (a write takes {ref.duration_s:.3f} s)", ""
    elif trial.kind == "history":
        k = int(rng.integers(1, math.ceil(_first_send() / BATCH_ROWS)))
        point, hook = f"history load after {k} x {BATCH_ROWS} rows", f"history:{k}"
    else:
        point, hook = f"hook {trial.kind}", trial.kind
    what = f"{trial.sig.name} of the {trial.backend} writer (seed {seed}, point: {point})"
    with _store(trial.backend, tmp_path, request) as store:
        _write_previous_run(store)
        signals = tmp_path / "signals"
        with _reaped(_fork_writer(writers, store, signals, hook, hold=True)) as child:
            if trial.kind == "delay":
                begun = _wait_for(child, signals / "begun", what)
                time.sleep(max(0.0, begun + delay - time.monotonic()))
            else:
                _wait_for(child, signals / "paused", what)
            os.kill(child.pid, trial.sig)
            code, out = child.finish(what)
        assert code == -trial.sig, f"{what}: exit {code} instead of {-trial.sig}:\n{out}"
        outcome = assert_nothing_lost(store, ref.before, ref.complete, what)
        if (signals / "committed").exists() or trial.kind == "committed":
            assert outcome == "complete", f"{what}: the writer had committed, the store is its state before"
        elif trial.kind != "delay":
            assert outcome == "before", f"{what}: killed before its commit, the run is in the store"
        assert_next_run_succeeds(store, what)


# ---------------------------------------------------------------- the real crmscore score


@dataclass(frozen=True)
class Project:
    root: Path
    store: Store
    cfg: Any  #: its Config


@pytest.fixture
def project(request, fork_trained_project, tmp_path) -> Iterator[Callable[[str], Project]]:
    """``project(backend)``: the trained project on its own CRM (SQLite file, PostgreSQL schema),
    scored once already (as of :data:`CLI_BEFORE`)."""
    from crmscore.config import config_from_mapping
    from crmscore.io.crm import write_sql_tables

    with ExitStack() as stack:

        def make(backend: str) -> Project:
            fork = fork_trained_project(f"cli-{backend}")
            store = stack.enter_context(_store(backend, fork.root, request))
            write_sql_tables(store.engine, fork.crm.tables, schema=store.schema)
            params = copy.deepcopy(fork.params)
            params["data"]["crm_url"] = store.url
            if store.schema:
                params["data"]["db_schema"] = store.schema
            write_params(fork.root, params)
            code, text = _cli(fork.root, "score", "--as-of", CLI_BEFORE)
            assert code == 0, text
            return Project(fork.root, store, config_from_mapping(params))

        yield make


def _cli(root: Path, *args: str) -> tuple[int, str]:
    """``crmscore --params params.yaml ARGS`` in this process, in ``root``."""
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        return run_cli_captured(["--params", str(root / "params.yaml"), *args], mp)


def score_state(project: Project) -> dict[str, pd.DataFrame]:
    """The score tables and the run log (when present), every row (small: one CRM of 3,000)."""
    sc = project.cfg.scoring
    names = (sc.customer_scores_table, sc.customer_history_table, sc.lead_scores_table)
    names += (sc.lead_history_table, sc.runs_table)
    engine, schema = project.store.engine, project.store.schema
    insp = sa.inspect(engine)
    state = {}
    for name in names:
        if not insp.has_table(name, schema=schema):
            continue
        key = insp.get_pk_constraint(name, schema=schema)["constrained_columns"]
        table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
        with engine.connect() as conn:
            df = pd.read_sql(sa.select(table).order_by(*(table.c[k] for k in key)), conn)
        state[name] = df
    return state


def assert_same_state(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame], what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: tables {sorted(got)} instead of {sorted(want)}"
    for name in want:
        try:
            pd.testing.assert_frame_equal(got[name], want[name], obj=name)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None


def _cli_trial(writers: BaseContext, project: Project, tmp_path: Path, hook: str) -> tuple[Child, Path]:
    signals = tmp_path / "signals"
    args = ("--params", str(project.root / "params.yaml"), "score", "--as-of", CLI_RUN)
    return _fork_cli(writers, signals, hook, args, project.root), signals


def _assert_scored_again(project: Project, what: str) -> None:
    code, text = _cli(project.root, "score", "--as-of", CLI_RUN)
    assert code == 0, f"{what}: the next run failed:\n{text}"
    assert "written to the CRM" in text, text
    latest = score_state(project)[project.cfg.scoring.customer_scores_table]
    assert (latest["as_of"].astype(str).str[:10] == CLI_RUN).all(), what


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_ctrl_c_during_the_write_commits_nothing_and_exits_130(backend, project, writers, tmp_path):
    """SIGINT while the run's rows are being written (SQLite: in the statement; PostgreSQL: while
    the background thread writes and the command waits for it) → exit 130, nothing committed."""
    proj = project(backend)
    before = score_state(proj)
    what = f"SIGINT of crmscore score on {backend}"
    proc, signals = _cli_trial(writers, proj, tmp_path, "upsert")
    with _reaped(proc):
        _wait_for(proc, signals / "paused", what)
        if backend == "postgres":  # the command has sent everything and waits for the writer
            _wait_for(proc, signals / "final-wait", what)
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        _wait_for(proc, signals / "sigint", what)  # KeyboardInterrupt raised in the main thread
        time.sleep(0.1)
        (signals / "release").touch()  # the writer's statement goes on (a thread is not interrupted)
        code, out = proc.finish(what)
    assert code == 130, f"{what}: exit {code}:\n{out}"
    assert "interrupted: nothing of this run was committed" in out, out
    assert_integrity(proj.store, what)
    assert_same_state(score_state(proj), before, what)
    _assert_scored_again(proj, what)


@pytest.mark.postgres
def test_writer_whose_connection_is_terminated_fails_and_writes_nothing(project, writers, tmp_path):
    """``pg_terminate_backend`` of the writer's session mid-transaction → exit 1 naming the lost
    connection, nothing of the run written, the next run succeeds."""
    proj = project("postgres")
    before = score_state(proj)
    what = "pg_terminate_backend of the crmscore score writer"
    proc, signals = _cli_trial(writers, proj, tmp_path, "upsert")
    with _reaped(proc):
        _wait_for(proc, signals / "paused", what)
        with proj.store.engine.begin() as conn:
            key = conn.execute(
                sa.text("SELECT hashtext('crmscore.scores:' || :s)::bigint"), {"s": proj.store.schema}
            ).scalar_one()
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = CAST(:c AS oid) AND objid = CAST(:o AS oid) AND objsubid = 1"
                ),
                {"c": (key >> 32) & 0xFFFFFFFF, "o": key & 0xFFFFFFFF},
            ).scalars().all()  # fmt: skip
            assert len(pids) == 1, f"{what}: sessions holding the writers' lock: {pids}"
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]}).scalar_one()
        (signals / "release").touch()
        code, out = proc.finish(what)
    assert code == 1, f"{what}: exit {code}:\n{out}"
    assert "OperationalError" in out and "terminat" in out.lower(), out
    assert_same_state(score_state(proj), before, what)
    _assert_scored_again(proj, what)
