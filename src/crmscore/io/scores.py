"""Write scores back to the CRM store in one transaction per run (SQLite or PostgreSQL).

This module writes (:func:`write_scores`, :class:`ScoreWriter`, :func:`ensure_score_tables`,
the bulk load of the history) and reads the previous run's scores
(:func:`read_previous_scores`). The tables and how rows are stored in them are in
:mod:`crmscore.io.score_tables` (:func:`read_scores`, :func:`score_tables` re-exported
here), the SQL of one run (replay, shrink guard, latest upsert) in :mod:`crmscore.io.score_runs`.

Contract of :func:`write_scores`:

* **Checked first.** Scores are validated (:func:`crmscore.scoring.rows.check_customer_scores`,
  :func:`crmscore.scoring.rows.check_lead_scores`) and compared with the previous run's row count
  (``scoring.min_rows_ratio``) before anything is written; a failure raises
  :class:`ScoreValidationError` and writes nothing.
* **One transaction.** The DDL and all four tables are written in a single transaction
  (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL a transaction-scoped advisory lock serialises
  score writers). An exception or a killed process at any point leaves the previous scores
  intact.
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
from crmscore.io.score_runs import (
    _PREVIOUS_COLUMNS,
    _check_shrink,
    _previous_from_history,
    _previous_from_latest,
    _run_params,
    _run_rows,
    _upsert_latest,
)
from crmscore.io.score_tables import (
    _CUSTOMER,
    _KINDS,
    _csv_bytes,
    _day_param,
    _executemany,
    _Kind,
    _normalise,
    _qualified,
    _ready,
    read_scores,
    score_tables,
)
from crmscore.io.score_tables import LATEST_FILLFACTOR as LATEST_FILLFACTOR

__all__ = [
    "ScoreTableError",
    "ScoreValidationError",
    "ScoreWriter",
    "WriteResult",
    "ensure_score_tables",
    "read_previous_scores",
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
        Stage → seconds (``validate``, ``prepare``, ``<kind>_history`` (bulk load),
        ``<kind>_upsert``, ``commit``; with a background :class:`ScoreWriter` also ``wait``,
        the time the caller waited for the transaction at the end).
    """

    rows: dict[str, int] = field(default_factory=dict)
    latest_updated: dict[str, int] = field(default_factory=dict)
    history_inserted: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _check_existing(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    insp = sa.inspect(conn)
    for t in tables:
        if not insp.has_table(t.name, schema=t.schema):
            continue
        have = {c["name"] for c in insp.get_columns(t.name, schema=t.schema)}
        missing = [c.name for c in t.columns if c.name not in have]
        if missing:
            raise ScoreTableError(
                f"table {t.name!r} exists without the columns {missing}: migrate or rename it "
                "(scoring.*_table) before writing scores"
            )


def ensure_score_tables(conn: sa.Connection, cfg: ScoringConfig, schema: str | None = None) -> None:
    """Create the score tables (with primary keys and the history index) where absent.

    Existing tables must have the expected columns (:class:`ScoreTableError` otherwise).
    Runs on ``conn`` (inside the caller's transaction on PostgreSQL and SQLite).
    """
    tables = score_tables(cfg, schema)
    if schema is not None and conn.dialect.name == "postgresql":
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    _check_existing(conn, tables.values())
    next(iter(tables.values())).metadata.create_all(conn, checkfirst=True)


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
    SQLite; the advisory lock on PostgreSQL) and creates the tables where absent; leaving
    commits, or rolls back if the block raised or any write failed. On PostgreSQL the
    statements run in order on a background thread that owns the connection, so the server
    parses and stores the rows while the caller computes; elsewhere (or with
    ``background=False``) each call runs at once.

    Every frame is checked (:func:`crmscore.scoring.rows.check_customer_scores` /
    :func:`~crmscore.scoring.rows.check_lead_scores`) in the caller's thread before any of its rows
    is sent; a replayed run (its rows already in the history) writes nothing; the shrink check
    runs against the previous run before the first row of the kind is sent. A failure of the
    background thread is raised by the next call, or when leaving the block.

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
    ) -> None:
        self.engine = engine
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

    # -- caller's side --------------------------------------------------------------------

    def __enter__(self) -> ScoreWriter:
        log.info("writing scores to %s (one transaction)", redact_url(str(self.engine.url)))
        try:
            self._submit(self._begin)
        except BaseException:
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
                    self._submit(self._commit, check=False)
            self._drain()
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
            self._error = exc

    def _drain(self) -> None:
        for job in self._jobs:
            job.result()
        self._jobs.clear()

    def _begin(self) -> None:
        with _timed(self.result.timings, "prepare"):
            self._conn = self.engine.connect()
            self._tx = self._conn.begin()
            if self.backend == "sqlite":
                # take the write lock now and make the DDL below part of the transaction
                self._conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.backend == "postgresql":
                # one lock per schema: writers of the same score tables wait for each other,
                # those of other schemas (other tenants, test schemas) do not
                self._conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext('crmscore.scores:' || :s))"),
                    {"s": self.schema or self._conn.exec_driver_sql("SELECT current_schema()").scalar_one()},
                )
            ensure_score_tables(self._conn, self.cfg, self.schema)

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
        _check_shrink(conn, hist, n_total, params, self.cfg.min_rows_ratio, latest.name)
        self._run[kind.name] = (latest, hist, params)
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

    Returns
    -------
    WriteResult
        Rows offered, rows changed per table and per-stage timings.

    Raises
    ------
    ScoreValidationError
        A check failed (empty, NaN, out of range, ids, shrunken set); nothing was written.
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
    writer = ScoreWriter(engine, cfg, schema=schema, background=False)
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
    run_id: str,
    schema: str | None = None,
) -> pd.DataFrame | None:
    """Each customer's latest churn probability from another run at or before ``as_of``.

    The ``previous`` argument of :func:`crmscore.scoring.rows.assemble_customer_scores`. Rows of the
    run ``(run_id, as_of)`` itself are ignored, so replaying a run computes the same trend.

    The latest-score table holds each customer's newest history row (by ``as_of``, then
    ``scored_at``: :func:`_upsert_latest`), so when none of its rows is later than ``as_of``
    or of this run, which is every scheduled run after the first, it *is* the answer: one
    read of one row per customer (binary ``COPY`` on PostgreSQL), whatever the length of the
    history. Otherwise (a replay, a backfill of an older day, no latest table) each
    customer's newest eligible history row is taken with a window query over the history.

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
    day, run = _day_param(as_of, engine.dialect.name), str(run_id)
    df = None
    if inspector.has_table(latest.name, schema=schema):
        df = _previous_from_latest(engine, latest, day, run)
    if df is None or df.empty:  # (an emptied latest table: the history still knows)
        df = _previous_from_history(engine, hist, day, run)
    if df.empty:
        return None
    return _normalise(df, _PREVIOUS_COLUMNS)
