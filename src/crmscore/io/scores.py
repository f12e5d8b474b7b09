"""Write scores back to the CRM store in one transaction per run (SQLite or PostgreSQL).

This module writes (:func:`write_scores`, :class:`ScoreWriter`, :func:`ensure_score_tables`,
the bulk load of the history) and reads the previous run's scores
(:func:`read_previous_scores`). The tables and how rows are stored in them are in
:mod:`crmscore.io.score_tables` (:func:`read_scores`, :func:`score_tables` re-exported
here), the SQL of one run (replay, shrink guard, latest upsert) in :mod:`crmscore.io.score_runs`.

Contract of :func:`write_scores`:

* **Checked first.** Scores are validated (:func:`crmscore.scoring.rows.check_customer_scores`,
  :func:`crmscore.scoring.rows.check_lead_scores`) and compared with the row count of the run of
  the nearest earlier ``as_of`` (``scoring.min_rows_ratio``) before anything is written; given
  the run's input counts (:class:`RunRecord`), so are they (``scoring.max_input_drop``,
  :class:`InputGuardError` unless ``force``). A failure raises :class:`ScoreValidationError`
  and writes nothing.
* **Run log.** Each run written gets one row in ``scoring.runs_table`` (model versions, input
  counts, rows, notes), in the same transaction; the newest run marks (``absent_since``) or
  deletes (``scoring.absent_rows``) the latest rows of customers and leads it did not score.
* **One transaction.** The DDL and all four tables are written in a single transaction
  (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL a transaction-scoped advisory lock serialises
  score writers). An exception or a killed process at any point leaves the previous scores
  intact. A writer waits at most ``scoring.lock_timeout_s`` for another run's lock, logging
  who holds it, then raises :class:`~crmscore.core.score_contract.LockTimeoutError` naming it
  (:mod:`crmscore.io.score_lock`).
* **Overlapped with the scoring** (:class:`ScoreWriter`, what ``crmscore score`` uses): the
  same transaction, fed frame by frame while the caller computes. On PostgreSQL a background
  thread sends the rows (the server's work: parsing, heap and index writes) while the caller
  goes on (churn reasons, leads); every frame is checked before any of its rows is sent, and
  any failure, the caller's or the writer's, rolls the whole run back.
* **Idempotent.** A run is identified by ``(run_id, as_of)`` and is immutable: when the
  history already holds rows of the run, the run is a replay and nothing is written. A latest
  row is only replaced by a *newer* run (a later ``as_of``, or the same ``as_of`` from another
  run scored at the same time or later), so backfilling an older ``as_of`` appends history
  without overwriting the latest scores.
* **Bulk, data written once.** The run's rows are loaded straight into the history table
  (``COPY`` of Arrow-written CSV on PostgreSQL, driver ``executemany`` in batches of
  ``scoring.chunksize`` elsewhere), which doubles as the staging table: the latest table is
  then upserted with one ``INSERT ... SELECT ... FROM history WHERE run_id = ... AND as_of = ...
  ON CONFLICT (key) DO UPDATE ... WHERE <newer>`` (SQLite >= 3.24). Never a statement per row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crmscore.config import ScoringConfig, redact_url
from crmscore.core.score_contract import CUSTOMER_SCORE_COLUMNS as CUSTOMER_SCORE_COLUMNS
from crmscore.core.score_contract import LEAD_SCORE_COLUMNS as LEAD_SCORE_COLUMNS
from crmscore.core.score_contract import ScoreValidationError, check_customer_scores, check_lead_scores
from crmscore.io.crm import to_arrow
from crmscore.io.score_lock import (
    acquire_pg_lock,
    acquire_sqlite_lock,
    explain_session_end,
    remove_sidecar,
    restore_sqlite,
    sidecar_path,
    sqlite_file,
    write_sidecar,
)
from crmscore.io.score_runs import (
    _PREVIOUS_COLUMNS,
    RunRecord,
    _absent_rows,
    _check_inputs,
    _check_shrink,
    _is_empty,
    _log_run,
    _logged,
    _next_run,
    _previous_from_history,
    _previous_from_latest,
    _run_params,
    _run_rows,
    _seed_runs,
    _ts_param,
    _upsert_latest,
)
from crmscore.io.score_tables import (
    _CUSTOMER,
    _KINDS,
    ADDABLE_COLUMNS,
    _csv_bytes,
    _day_param,
    _executemany,
    _Kind,
    _normalise,
    _qualified,
    _ready,
    read_runs,
    read_scores,
    score_tables,
)
from crmscore.io.score_tables import LATEST_FILLFACTOR as LATEST_FILLFACTOR

__all__ = [
    "RunRecord",
    "ScoreTableError",
    "ScoreValidationError",
    "ScoreWriter",
    "WriteResult",
    "ensure_score_tables",
    "read_previous_scores",
    "read_runs",
    "read_scores",
    "score_tables",
    "write_scores",
]


log = logging.getLogger(__name__)


class ScoreTableError(RuntimeError):
    """An existing score table does not have the columns the scores need."""


@dataclass
class WriteResult:
    """What :func:`write_scores` did.

    Attributes
    ----------
    rows : dict
        Table name → rows offered.
    latest_updated : dict
        Latest-table name → rows inserted or replaced.
    history_inserted : dict
        History-table name → rows appended (0 on a replay).
    timings : dict
        Stage → seconds (``validate``, ``lock`` (waiting for the write lock), ``prepare``,
        ``<kind>_history`` (bulk load), ``<kind>_upsert``, ``<kind>_absent`` (absent rows),
        ``commit``; with a background :class:`ScoreWriter` also ``wait``,
        the time the caller waited for the transaction at the end).
    """

    rows: dict[str, int] = field(default_factory=dict)
    latest_updated: dict[str, int] = field(default_factory=dict)
    history_inserted: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: latest-table name → rows of customers (leads) absent from this, the newest, run that
    #: were marked or deleted (``scoring.absent_rows``)
    absent: dict[str, int] = field(default_factory=dict)
    #: the ``(run_id, as_of)`` rows added to the run log (none on a replay)
    runs_logged: list[tuple[str, str]] = field(default_factory=list)
    #: guards overridden by ``force`` (also in the run log's notes)
    notes: list[str] = field(default_factory=list)


def _check_existing(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """Refuse an existing table without the needed columns; add the nullable ones it lacks.

    Only columns of :data:`crmscore.io.score_tables.ADDABLE_COLUMNS` are added (``ALTER TABLE
    ... ADD COLUMN``, nullable: a safe migration, logged), and only when nothing else is missing.
    """
    insp = sa.inspect(conn)
    for t in tables:
        if not insp.has_table(t.name, schema=t.schema):
            continue
        have = {c["name"] for c in insp.get_columns(t.name, schema=t.schema)}
        missing = [c.name for c in t.columns if c.name not in have]
        refused = [c for c in missing if c not in ADDABLE_COLUMNS]
        if refused:
            raise ScoreTableError(
                f"table {t.name!r} exists without the columns {refused}: migrate or rename it "
                "(scoring.*_table) before writing scores"
            )
        p = conn.dialect.identifier_preparer
        for name in missing:
            col_type = t.c[name].type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, t)} ADD COLUMN {p.quote(name)} {col_type}"))
            log.info("%s: added the nullable column %s (a table from before it existed)", t.name, name)


def ensure_score_tables(conn: sa.Connection, cfg: ScoringConfig, schema: str | None = None) -> None:
    """Create the score tables and the run log (with primary keys, the history index) where absent.

    Existing tables must have the expected columns (:class:`ScoreTableError` otherwise; a
    missing nullable ``absent_since`` is added). A new run log gets the runs already in the
    history (:func:`crmscore.io.score_runs._seed_runs`).
    Runs on ``conn`` (inside the caller's transaction on PostgreSQL and SQLite).
    """
    tables = score_tables(cfg, schema)
    if schema is not None and conn.dialect.name == "postgresql":
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    _check_existing(conn, tables.values())
    insp = sa.inspect(conn)
    runs = tables[cfg.runs_table]
    new_log = not insp.has_table(runs.name, schema=schema)
    histories = [
        tables[getattr(cfg, k.history_attr)]
        for k in _KINDS.values()
        if insp.has_table(getattr(cfg, k.history_attr), schema=schema)
    ]
    next(iter(tables.values())).metadata.create_all(conn, checkfirst=True)
    if new_log:  # runs written before the run log existed: compared with, never re-counted
        _seed_runs(conn, runs, histories)


#: rows per CSV batch of the PostgreSQL ``COPY`` (formatted while the previous one is sent)
_COPY_BATCH_ROWS = 100_000


def _copy_csv(conn: sa.Connection, df: pd.DataFrame, target: str) -> None:
    """``COPY target (columns) FROM STDIN (FORMAT csv)`` of ``df``, formatted and sent in batches.

    Arrow formats batch ``i + 1`` in a worker thread (it releases the GIL) while batch ``i``
    is sent, so the client's CSV formatting overlaps the server's parsing and the CSV never
    exists whole in memory. ``target`` is the quoted table name.
    """
    p = conn.dialect.identifier_preparer
    cols = ", ".join(p.quote(str(c)) for c in df.columns)
    batches = to_arrow(df).to_batches(max_chunksize=_COPY_BATCH_ROWS)
    raw = conn.connection.driver_connection  # psycopg.Connection
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        raw.cursor() as cur,
        cur.copy(f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)") as cp,
    ):
        pending = pool.submit(_csv_bytes, batches[0]) if batches else None
        for nxt in [*batches[1:], None]:
            data = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(_csv_bytes, nxt) if nxt is not None else None
            cp.write(memoryview(data))


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _append_history(
    conn: sa.Connection, df: pd.DataFrame, kind: _Kind, hist: sa.Table, chunksize: int
) -> int:
    """Bulk load the run's rows into the history table (``COPY`` / ``executemany``).

    The history doubles as the staging table: the latest table is then upserted from the run's
    rows there (:func:`_upsert_latest`), so the data crosses the wire and is written once.
    """
    if not len(df):  # e.g. every customer held back for its reasons
        return 0
    backend = conn.dialect.name
    cols = list(kind.columns)
    ready = _ready(df[cols], kind.columns, backend)
    if backend == "postgresql":
        _copy_csv(conn, ready, _qualified(conn, hist))
    else:
        _executemany(conn, ready, _qualified(conn, hist), chunksize)
    return len(df)


class ScoreWriter:
    """One run's write-back, fed frame by frame while the caller goes on computing.

    One transaction (as :func:`write_scores`): entering begins it (``BEGIN IMMEDIATE`` on
    SQLite; the advisory lock on PostgreSQL), returning once the lock is held (waited for at
    most ``scoring.lock_timeout_s``, else :class:`~crmscore.core.score_contract.LockTimeoutError`
    naming the holder: :mod:`crmscore.io.score_lock`), and creates the tables where absent; leaving
    commits, or rolls back if the block raised or any write failed. On PostgreSQL the
    statements run in order on a background thread that owns the connection, so the server
    parses and stores the rows while the caller computes; elsewhere (or with
    ``background=False``) each call runs at once.

    Every frame is checked (:func:`crmscore.scoring.rows.check_customer_scores` /
    :func:`~crmscore.scoring.rows.check_lead_scores`) in the caller's thread before any of its rows
    is sent; a replayed run (its rows already in the history) writes nothing; the shrink check
    runs against the run of the nearest earlier ``as_of`` before the first row of the kind is
    sent, and the input volume guard (given ``run`` with input counts) once the lock is held,
    before any row: :meth:`write` waits for it, so a refusal is raised there. A failure of the
    background thread is raised by the next call, or when leaving the block. Before the commit
    the newest run marks or deletes the latest rows it did not score (``scoring.absent_rows``;
    a backfill only the rows it put there, of customers no newer run scored) and each run
    written is logged (``scoring.runs_table``).

    Rows whose ``top_reasons`` are still being computed can be held back (``defer_reasons``
    of :meth:`write`): the other rows are sent at once, the held ones, with the reasons given
    to :meth:`complete_reasons`, after them; only that nullable column can change after the
    check. On PostgreSQL the rows sent are upserted into the latest table at once and the
    held ones after them (by id); elsewhere the latest table is upserted once all of a kind's
    rows are in the history.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The CRM store (SQLite or PostgreSQL).
    cfg : ScoringConfig
        Table names, ``min_rows_ratio`` and ``chunksize``.
    schema : str, optional
        Database schema (PostgreSQL; created if missing).
    background : bool, optional
        Send from a background thread; default: on PostgreSQL only.
    run : RunRecord, optional
        The run's record for the run log (model versions, input counts, settings digest,
        notes); every frame must be of its ``(run_id, as_of)``. Without one the run log row
        is made from the frames (no input counts: no input volume guard).
    force : bool
        Write even when the input volume guard refuses (logged as a warning, kept in
        ``result.notes`` and the run log).

    Examples
    --------
    >>> with ScoreWriter(engine, cfg) as w:  # doctest: +SKIP
    ...     w.write("customer", scores, expected_ids=ids, defer_reasons=explained)
    ...     w.complete_reasons("customer", reasons)  # one per explained row, in frame order
    ...     w.write("lead", lead_scores, expected_ids=lead_ids)
    >>> w.result.latest_updated  # doctest: +SKIP
    """

    def __init__(
        self,
        engine: sa.Engine,
        cfg: ScoringConfig,
        *,
        schema: str | None = None,
        background: bool | None = None,
        run: RunRecord | None = None,
        force: bool = False,
    ) -> None:
        self.engine = engine
        self.record = run
        self.force = force
        self.cfg = cfg
        self.schema = schema
        self.tables = score_tables(cfg, schema)
        self.result = WriteResult()
        self.backend = engine.dialect.name
        use_thread = self.backend == "postgresql" if background is None else background
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="crmscore-write") if use_thread else None
        self._jobs: list[Future[None]] = []
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self._error: BaseException | None = None
        self._abandoned = False  # the caller's block raised: queued statements are skipped
        self._given: set[str] = set()  # kinds passed to write(), in the caller's thread
        self._held: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
        self._run: dict[str, tuple[sa.Table, sa.Table, dict[str, Any]] | None] = {}
        self._scored_at: dict[str, Any] = {}  # kind -> scored_at param of the rows it sent
        self._latest_empty: dict[str, bool] = {}  # kind -> its latest table was empty before
        self._started = run is None  # the input guard's verdict is known (write() waits for it)
        self._locked = threading.Event()  # set once _begin holds the lock (or failed to)
        self._cancel = threading.Event()  # set to stop a lock wait (the caller gave up)
        self._db = sqlite_file(engine.url) if self.backend == "sqlite" else None
        self._sidecar: dict[str, Any] | None = None  # this writer's record beside the SQLite file

    # -- caller's side --------------------------------------------------------------------

    def __enter__(self) -> ScoreWriter:
        log.info("writing scores to %s (one transaction)", redact_url(str(self.engine.url)))
        try:
            self._submit(self._begin)
            if self.record is not None:
                self._submit(self._start_run)  # input volume guard: after the lock, before any row
            if self._pool is not None:
                self._locked.wait()  # the lock is held, or the wait failed: say so here, not later
                if self._error is not None:
                    raise self._error
        except BaseException:
            self._cancel.set()  # e.g. Ctrl-C: stop a lock wait of the background thread
            self._close()  # __exit__ is not called when __enter__ raises: release the lock here
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        start = time.perf_counter()
        self._abandoned = exc is not None
        try:
            if exc is None and self._error is None:
                if self._held:
                    self._error = RuntimeError(
                        f"rows held back for their reasons were never completed: {sorted(self._held)}"
                    )
                else:
                    self._submit(self._finish_run, check=False)
                    self._submit(self._commit, check=False)
            self._drain()
        except BaseException:
            # interrupted while waiting for the background thread (Ctrl-C: KeyboardInterrupt in
            # this thread): what is still queued, the commit too, is skipped; _close rolls back
            self._abandoned = True
            raise
        finally:
            self._close()
        if self._pool is not None:
            self.result.timings["wait"] = time.perf_counter() - start
        if exc is None and self._error is not None:
            raise self._error
        if exc is None:
            log.info(
                "scores written: latest %s, history %s",
                self.result.latest_updated,
                self.result.history_inserted,
            )

    def write(
        self,
        kind: str,
        scores: pd.DataFrame,
        expected_ids: Iterable[Any] | None = None,
        *,
        defer_reasons: np.ndarray | None = None,
        checked: bool = False,
    ) -> None:
        """Check ``scores`` of ``kind`` (``"customer"`` or ``"lead"``) and send its rows.

        Parameters
        ----------
        kind : str
            ``"customer"`` or ``"lead"``; each at most once per writer.
        scores : DataFrame
            The score rows (not to be modified until the writer is left).
        expected_ids : iterable, optional
            The ids that were scored: the rows must match them exactly.
        defer_reasons : numpy.ndarray of bool, optional
            Rows held back until :meth:`complete_reasons` gives their ``top_reasons``.
        checked : bool
            ``scores`` were checked by the caller already (:func:`write_scores`).

        Raises
        ------
        ScoreValidationError
            A check failed: nothing of the run is written.
        """
        spec = _KINDS[kind]
        if kind in self._given:
            raise ValueError(f"{kind} scores were already given to this writer")
        self._given.add(kind)
        self._check_record(kind, scores)
        self._await_start()
        if not checked:
            with _timed(self.result.timings, "validate"):
                _check(spec, scores, expected_ids, self.cfg)
        held = None if defer_reasons is None else np.asarray(defer_reasons, dtype=bool)
        if held is not None and len(held) != len(scores):
            raise ValueError(f"defer_reasons has {len(held)} values for {len(scores)} rows")
        if held is not None and held.any():
            self._held[kind] = (scores, held)
            self._submit(self._send, spec, scores, ~held)
        else:
            self._submit(self._send, spec, scores, None)

    def complete_reasons(self, kind: str, reasons: Any) -> None:
        """The ``top_reasons`` of the rows :meth:`write` held back (in frame order); sends them."""
        if kind not in self._held:
            raise ValueError(f"no {kind} rows are held back")
        scores, held = self._held.pop(kind)
        values = np.asarray(reasons, dtype=object)
        if values.shape != (int(held.sum()),):
            raise ValueError(f"{values.shape[0]} reasons for {int(held.sum())} held-back rows")
        bad = [v for v in values if v is not None and not isinstance(v, str)]
        if bad:
            raise ScoreValidationError(
                f"{kind} top_reasons must be text or None, got {type(bad[0]).__name__}"
            )
        rows = scores.loc[held].copy()
        rows["top_reasons"] = values
        self._submit(self._send_rest, _KINDS[kind], rows)

    # -- writer's side (the background thread, in submission order) ------------------------

    def _submit(self, fn: Callable[..., None], *args: Any, check: bool = True) -> None:
        if check and self._error is not None:
            raise self._error
        if self._pool is None:
            self._guarded(fn, *args)
            if check and self._error is not None:
                raise self._error
        else:
            self._jobs.append(self._pool.submit(self._guarded, fn, *args))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        if self._error is not None or self._abandoned:  # the run is being rolled back
            return
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            idle = self.cfg.idle_in_transaction_timeout_s
            self._error = explain_session_end(exc, idle) if self.backend == "postgresql" else exc

    def _drain(self) -> None:
        for job in self._jobs:
            job.result()
        self._jobs.clear()

    def _begin(self) -> None:
        """Connect, take the write lock (waiting at most ``scoring.lock_timeout_s``), create tables."""
        try:
            with _timed(self.result.timings, "lock"):
                self._conn = self.engine.connect()
                self._tx = self._conn.begin()
                self._lock(self._conn)
        finally:
            self._locked.set()
        with _timed(self.result.timings, "prepare"):
            ensure_score_tables(self._conn, self.cfg, self.schema)

    def _lock(self, conn: sa.Connection) -> None:
        """The write lock (:mod:`crmscore.io.score_lock`): logged while waited for, named on timeout."""
        timeout = self.cfg.lock_timeout_s
        if self.backend == "sqlite":
            # take the write lock now and make the DDL below part of the transaction
            acquire_sqlite_lock(conn, self._db, timeout_s=timeout, cancel=self._cancel)
            if self._db is not None:
                self._sidecar = write_sidecar(sidecar_path(self._db))
        elif self.backend == "postgresql":
            # one lock per schema: writers of the same score tables wait for each other,
            # those of other schemas (other tenants, test schemas) do not
            schema = self.schema or conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            acquire_pg_lock(
                conn,
                schema,
                timeout_s=timeout,
                idle_in_transaction_timeout_s=self.cfg.idle_in_transaction_timeout_s,
                cancel=self._cancel,
            )

    def _send(self, kind: _Kind, scores: pd.DataFrame, now: np.ndarray | None) -> None:
        """Replay and shrink checks, then the history rows (``now``: those not held back) and,
        when none is held back, the upsert."""
        conn, res = self._conn, self.result
        assert conn is not None
        latest = self.tables[getattr(self.cfg, kind.latest_attr)]
        hist = self.tables[getattr(self.cfg, kind.history_attr)]
        params = _run_params(scores, self.backend)
        n_total = len(scores)
        res.rows[latest.name] = n_total
        res.latest_updated[latest.name] = res.history_inserted[hist.name] = 0
        done = _run_rows(conn, hist, params)
        if done:
            # runs are immutable: a replay changes nothing
            log.info(
                "%s: run %r as of %s already written (%d rows): nothing to do",
                hist.name, params["run"], params["as_of"], done,
            )  # fmt: skip
            self._run[kind.name] = None
            return
        runs = self.tables[self.cfg.runs_table]
        _check_shrink(conn, runs, hist, n_total, params, self.cfg.min_rows_ratio, latest.name)
        self._run[kind.name] = (latest, hist, params)
        self._scored_at[kind.name] = _ts_param(scores["scored_at"].iloc[0], self.backend)
        # an empty latest table (a first run) has no rows of other runs: no absent-row scan
        self._latest_empty[kind.name] = _is_empty(conn, latest)
        with _timed(res.timings, f"{kind.name}_history"):
            rows = scores if now is None else scores.loc[now]
            res.history_inserted[hist.name] = _append_history(conn, rows, kind, hist, self.cfg.chunksize)
        if now is None or self.backend == "postgresql":
            # PostgreSQL: the rows sent are upserted now, beside the caller's work; the held
            # ones alone after them (_send_rest). Elsewhere one upsert once all are there.
            self._upsert(kind)

    def _send_rest(self, kind: _Kind, rows: pd.DataFrame) -> None:
        """The held-back rows, then the upsert (nothing on a replay)."""
        if self._run.get(kind.name) is None:
            return
        _, hist, _ = self._run[kind.name]  # type: ignore[misc]
        assert self._conn is not None
        with _timed(self.result.timings, f"{kind.name}_history"):
            n = _append_history(self._conn, rows, kind, hist, self.cfg.chunksize)
        self.result.history_inserted[hist.name] += n
        ids = rows[kind.key].astype(str).tolist() if self.backend == "postgresql" else None
        self._upsert(kind, ids)

    def _upsert(self, kind: _Kind, ids: list[str] | None = None) -> None:
        latest, hist, params = self._run[kind.name]  # type: ignore[misc]
        assert self._conn is not None
        with _timed(self.result.timings, f"{kind.name}_upsert"):
            n = _upsert_latest(self._conn, kind, hist, latest, params, ids)
        self.result.latest_updated[latest.name] += n

    def _check_record(self, kind: str, scores: pd.DataFrame) -> None:
        """A frame of another run than the writer's :class:`RunRecord` is refused (caller's thread)."""
        rec = self.record
        if rec is None or not len(scores) or "run_id" not in scores or "as_of" not in scores:
            return  # (the frame's own checks name what is missing)
        run, day = str(scores["run_id"].iloc[0]), pd.Timestamp(scores["as_of"].iloc[0]).date()
        if (run, day) != (str(rec.run_id), pd.Timestamp(rec.as_of).date()):
            raise ValueError(
                f"{kind} scores are of run {run!r} as of {day}, the writer's run is {rec.run_id!r} "
                f"as of {pd.Timestamp(rec.as_of).date()}"
            )

    def _await_start(self) -> None:
        """Wait for the transaction's start (lock, tables, input guard); raise its failure."""
        if not self._started and self._pool is not None:
            for job in list(self._jobs):
                job.result()
        self._started = True
        if self._error is not None:
            raise self._error

    def _start_run(self) -> None:
        """The input volume guard of the writer's run, unless the run is a replay."""
        rec, conn = self.record, self._conn
        assert rec is not None and conn is not None
        runs = self.tables[self.cfg.runs_table]
        params = {"run": str(rec.run_id), "as_of": _day_param(rec.as_of, self.backend)}
        hists = [self.tables[getattr(self.cfg, k.history_attr)] for k in _KINDS.values()]
        if _logged(conn, runs, params) or any(_run_rows(conn, h, params) for h in hists):
            log.info("run %r as of %s is already written: no input guard", rec.run_id, params["as_of"])
            return
        if rec.input_counts is None:
            log.info("run %r: no input counts given: no input volume guard", rec.run_id)
            return
        self.result.notes += _check_inputs(
            conn, runs, rec.input_counts, params, self.cfg.max_input_drop, self.force
        )

    def _finish_run(self) -> None:
        """Absent rows (the newest run only) and the run log rows, before the commit."""
        conn = self._conn
        assert conn is not None
        runs = self.tables[self.cfg.runs_table]
        written: dict[tuple[str, Any], tuple[Any, dict[str, int]]] = {}
        for name, run in self._run.items():
            if run is None:  # a replay of this kind
                continue
            latest, hist, params = run
            scored_at = self._scored_at[name]
            entry = written.setdefault((params["run"], params["as_of"]), (scored_at, {}))
            entry[1][latest.name] = self.result.history_inserted[hist.name]
            with _timed(self.result.timings, f"{name}_absent"):
                since = _next_run(conn, runs, hist, params, scored_at)
                empty = self._latest_empty[name]
                n = 0 if empty else _absent_rows(conn, latest, params, self.cfg.absent_rows, since)
            if since is None:  # the newest run: the rows of customers (leads) it did not score
                self.result.absent[latest.name] = n
            if n:
                done = "deleted" if self.cfg.absent_rows == "delete" else "marked absent_since"
                log.info(
                    "%s: %d rows of %ss absent from the newest run %s (scoring.absent_rows: %s)",
                    latest.name, n, name, done, self.cfg.absent_rows,
                )  # fmt: skip
        for (run_id, day), (scored_at, rows) in written.items():
            params = {"run": run_id, "as_of": day}
            record = self.record if self.record is not None and str(self.record.run_id) == run_id else None
            if _log_run(conn, runs, params, scored_at, rows, record, self.result.notes):
                self.result.runs_logged.append((run_id, str(day)))

    def _commit(self) -> None:
        assert self._tx is not None
        with _timed(self.result.timings, "commit"):
            self._tx.commit()

    def _close(self) -> None:
        """Roll back what was not committed and release the connection (after the last job)."""

        def close() -> None:
            try:
                if self._tx is not None and self._tx.is_active:
                    self._tx.rollback()
            finally:
                try:
                    if self._sidecar is not None and self._db is not None:
                        remove_sidecar(sidecar_path(self._db), self._sidecar)
                    if self.backend == "sqlite" and self._conn is not None and not self._conn.closed:
                        restore_sqlite(self._conn)  # cache_spill back on (it goes back to the pool)
                finally:
                    if self._conn is not None:
                        self._conn.close()

        try:
            if self._pool is None:
                close()
            else:
                self._pool.submit(close).result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _check(kind: _Kind, scores: pd.DataFrame, expected_ids: Iterable[Any] | None, cfg: ScoringConfig) -> None:
    if kind is _CUSTOMER:
        check_customer_scores(scores, expected_ids, cfg.customer_scores_table)
    else:
        check_lead_scores(scores, expected_ids, cfg.lead_scores_table)


def write_scores(
    engine: sa.Engine,
    customer_scores: pd.DataFrame | None,
    lead_scores: pd.DataFrame | None = None,
    *,
    cfg: ScoringConfig,
    schema: str | None = None,
    expected_customer_ids: Iterable[Any] | None = None,
    expected_lead_ids: Iterable[Any] | None = None,
    run: RunRecord | None = None,
    force: bool = False,
) -> WriteResult:
    """Validate and write one run's scores (latest + history, customers and leads) atomically.

    Both frames are checked before the transaction begins (a failed check creates no table);
    then they are written in one :class:`ScoreWriter` transaction, in the caller's thread.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The CRM store (SQLite or PostgreSQL).
    customer_scores : DataFrame or None
        :func:`crmscore.scoring.rows.assemble_customer_scores` output; None skips customers.
    lead_scores : DataFrame or None
        :func:`crmscore.scoring.rows.assemble_lead_scores` output; None skips leads.
    cfg : ScoringConfig
        Table names, ``min_rows_ratio`` and ``chunksize``.
    schema : str, optional
        Database schema (PostgreSQL; created if missing), e.g. ``data.db_schema``.
    expected_customer_ids, expected_lead_ids : iterable, optional
        The ids that were scored (the input): the rows must match them exactly.
    run : RunRecord, optional
        The run log's record of the run (input counts: the input volume guard); see
        :class:`ScoreWriter`.
    force : bool
        Write even when the input volume guard refuses (logged, kept in the notes).

    Returns
    -------
    WriteResult
        Rows offered, rows changed per table and per-stage timings.

    Raises
    ------
    ScoreValidationError
        A check failed (empty, NaN, out of range, ids, shrunken set); nothing was written.
    InputGuardError
        The input counts of ``run`` fell beyond ``scoring.max_input_drop`` (a
        :class:`ScoreValidationError`); nothing was written.
    ScoreTableError
        An existing table lacks a needed column; nothing was written.
    """
    if customer_scores is None and lead_scores is None:
        raise ValueError("nothing to write: pass customer_scores and/or lead_scores")
    work = [
        (name, df, ids)
        for name, df, ids in (
            ("customer", customer_scores, expected_customer_ids),
            ("lead", lead_scores, expected_lead_ids),
        )
        if df is not None
    ]
    timings: dict[str, float] = {}
    with _timed(timings, "validate"):
        for name, df, ids in work:
            _check(_KINDS[name], df, ids, cfg)
    log.info("score rows: %s", ", ".join(f"{len(df)} {name}" for name, df, _ in work))
    writer = ScoreWriter(engine, cfg, schema=schema, background=False, run=run, force=force)
    writer.result.timings.update(timings)
    with writer:
        for name, df, _ in work:
            writer.write(name, df, checked=True)
    return writer.result


def read_previous_scores(
    engine: sa.Engine,
    cfg: ScoringConfig,
    *,
    as_of: date | str | pd.Timestamp,
    schema: str | None = None,
) -> pd.DataFrame | None:
    """Each customer's latest churn probability from a run of an earlier ``as_of``.

    The ``previous`` argument of :func:`crmscore.scoring.rows.assemble_customer_scores`. Only
    days strictly before ``as_of`` count: another run of the same day (a re-run with other
    data or settings) is never the previous one, so its trend is the same as the first run's,
    and so is a replay's.

    The latest-score table holds each customer's newest history row (by ``as_of``, then
    ``scored_at``: :func:`_upsert_latest`), so when all its rows are of days before ``as_of``,
    which is every scheduled run after the first, it *is* the answer: one read of one row per
    customer (binary ``COPY`` on PostgreSQL), whatever the length of the history. Otherwise (a
    re-run or replay of a day, a backfill of an older day, no latest table) each customer's
    newest history row of an earlier day is taken with a window query over the history.

    Returns
    -------
    DataFrame or None
        ``customer_id``, ``as_of``, ``churn_probability``, one row per customer in no
        particular order; None when there is no history.
    """
    tables = score_tables(cfg, schema)
    hist, latest = tables[cfg.customer_history_table], tables[cfg.customer_scores_table]
    inspector = sa.inspect(engine)
    if not inspector.has_table(hist.name, schema=schema):
        return None
    day = _day_param(as_of, engine.dialect.name)
    df = None
    if inspector.has_table(latest.name, schema=schema):
        df = _previous_from_latest(engine, latest, day)
    if df is None or df.empty:  # (an emptied latest table: the history still knows)
        df = _previous_from_history(engine, hist, day)
    if df.empty:
        return None
    return _normalise(df, _PREVIOUS_COLUMNS)
