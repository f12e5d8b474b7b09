"""Write scores back to the CRM store in one transaction per run (SQLite or PostgreSQL).

Tables (names from :class:`crmscore.config.ScoringConfig`, validated and quoted):

* ``customer_scores`` — latest row per customer, primary key ``customer_id`` (upserted);
* ``customer_score_history`` — one row per customer and run, primary key
  ``(run_id, as_of, customer_id)`` (appended; the key's column order makes a run one index
  range) and an index on ``scored_at``;
* ``lead_scores`` / ``lead_score_history`` — likewise with ``lead_id``.

Contract of :func:`write_scores`:

* **Checked first.** Scores are validated (:func:`crmscore.scoring.check_customer_scores`,
  :func:`crmscore.scoring.check_lead_scores`) and compared with the previous run's row count
  (``scoring.min_rows_ratio``) before anything is written; a failure raises
  :class:`ScoreValidationError` and writes nothing.
* **One transaction.** The DDL and all four tables are written in a single transaction
  (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL a transaction-scoped advisory lock serialises
  score writers). An exception or a killed process at any point leaves the previous scores
  intact.
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

On SQLite dates are stored as ``YYYY-MM-DD`` text and ``scored_at`` as ISO 8601 UTC text with
an offset (the convention of :mod:`crmscore.io.crm`); on PostgreSQL as ``date`` and
``timestamptz``. :func:`read_scores` gives the same frame from either store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from crmscore.config import ScoringConfig, redact_url, validate_identifier
from crmscore.io.crm import _iso_utc, to_arrow
from crmscore.scoring import (
    CUSTOMER_SCORE_COLUMNS,
    LEAD_SCORE_COLUMNS,
    ScoreValidationError,
    check_customer_scores,
    check_lead_scores,
)

__all__ = [
    "ScoreTableError",
    "ScoreValidationError",
    "WriteResult",
    "ensure_score_tables",
    "read_previous_scores",
    "read_scores",
    "score_tables",
    "write_scores",
]

log = logging.getLogger(__name__)

Which = Literal["customer_scores", "customer_history", "lead_scores", "lead_history"]


class ScoreTableError(RuntimeError):
    """An existing score table does not have the columns the scores need."""


@dataclass(frozen=True)
class _Kind:
    """One family of score tables (customers or leads)."""

    name: str  # "customer" / "lead"
    key: str
    columns: Mapping[str, str]
    latest_attr: str
    history_attr: str


_CUSTOMER = _Kind(
    "customer", "customer_id", CUSTOMER_SCORE_COLUMNS, "customer_scores_table", "customer_history_table"
)
_LEAD = _Kind("lead", "lead_id", LEAD_SCORE_COLUMNS, "lead_scores_table", "lead_history_table")


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
        ``<kind>_upsert``, ``commit``).
    """

    rows: dict[str, int] = field(default_factory=dict)
    latest_updated: dict[str, int] = field(default_factory=dict)
    history_inserted: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# table definitions


def _sa_type(kind: str) -> sa.types.TypeEngine[Any]:
    if kind == "float":
        return sa.Float(53)
    if kind == "int":
        return sa.BigInteger()
    if kind == "bool":
        return sa.Boolean()
    if kind == "date":
        return sa.Date().with_variant(sa.Text(), "sqlite")
    if kind == "timestamp":
        return sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
    return sa.Text()


def _tables(
    kind: _Kind, cfg: ScoringConfig, schema: str | None, md: sa.MetaData
) -> tuple[sa.Table, sa.Table]:
    latest_name = validate_identifier(getattr(cfg, kind.latest_attr), f"scoring.{kind.latest_attr}")
    hist_name = validate_identifier(getattr(cfg, kind.history_attr), f"scoring.{kind.history_attr}")
    required = {kind.key, "as_of", "run_id", "scored_at"}

    def cols(pk: tuple[str, ...]) -> list[sa.SchemaItem]:
        # canonical column order; the key's own column order (its index order) given explicitly
        columns: list[sa.SchemaItem] = [
            sa.Column(c, _sa_type(k), nullable=c not in (set(pk) | required)) for c, k in kind.columns.items()
        ]
        return [*columns, sa.PrimaryKeyConstraint(*pk)]

    latest = sa.Table(latest_name, md, *cols((kind.key,)), schema=schema)
    # history keyed (run_id, as_of, id): a run's rows are one index range (replay check, upsert)
    hist = sa.Table(hist_name, md, *cols(("run_id", "as_of", kind.key)), schema=schema)
    # finds the previous run (ORDER BY scored_at DESC LIMIT 1) without a scan
    sa.Index(f"ix_{hist_name}_scored_at"[:63], hist.c.scored_at)
    return latest, hist


def score_tables(cfg: ScoringConfig, schema: str | None = None) -> dict[str, sa.Table]:
    """SQLAlchemy tables of the four score tables, keyed by their configured names."""
    if schema is not None:
        validate_identifier(schema, "data.db_schema")
    md = sa.MetaData()
    out: dict[str, sa.Table] = {}
    for kind in (_CUSTOMER, _LEAD):
        for t in _tables(kind, cfg, schema, md):
            out[t.name] = t
    return out


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


# --------------------------------------------------------------------------------------------
# helpers


def _qualified(conn: sa.Connection, t: sa.Table) -> str:
    p = conn.dialect.identifier_preparer
    return p.format_table(t)


def _day_param(d: Any, backend: str) -> Any:
    day = pd.Timestamp(d).date()
    return day.isoformat() if backend == "sqlite" else day


def _iso_days(s: pd.Series) -> pd.Series:
    """Dates as ``YYYY-MM-DD`` text (converted once per distinct value: one per run)."""
    uniq = pd.unique(s)
    text = {v: None if pd.isna(v) else pd.Timestamp(v).date().isoformat() for v in uniq}
    return s.map(text).astype(object)


def _ready(df: pd.DataFrame, columns: Mapping[str, str], backend: str) -> pd.DataFrame:
    """Dates as ISO text, booleans as 0/1 on SQLite (timestamps: see ``crmscore.io.crm``)."""
    out = df.copy(deep=False)
    for c, k in columns.items():
        if k == "date":
            out[c] = _iso_days(df[c])
        elif k == "bool":
            out[c] = df[c].astype(np.int64 if backend == "sqlite" else bool)
    return out


def _executemany(conn: sa.Connection, df: pd.DataFrame, target: str, chunksize: int) -> None:
    """Bulk insert ``df`` into ``target`` (quoted) with the driver's ``executemany`` in batches.

    Timestamps become ISO 8601 UTC text with an offset, missing values ``None``. (Arrays are
    copied: under pandas copy-on-write ``to_numpy`` may hand out read-only views.)
    """
    columns: list[np.ndarray] = []
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            arr = _iso_utc(s)
        else:
            arr = np.array(s.to_numpy(dtype=object), dtype=object, copy=True)
            miss = pd.isna(arr)
            if miss.any():
                arr[miss] = None
        columns.append(arr)
    p = conn.dialect.identifier_preparer
    marks = ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * len(df.columns))
    sql = f"INSERT INTO {target} ({', '.join(p.quote(str(c)) for c in df.columns)}) VALUES ({marks})"
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(df), chunksize):
            cursor.executemany(sql, zip(*(col[start : start + chunksize] for col in columns), strict=True))
    finally:
        cursor.close()


#: rows per CSV batch of the PostgreSQL ``COPY`` (formatted while the previous one is sent)
_COPY_BATCH_ROWS = 100_000


def _csv_bytes(batch: pa.RecordBatch) -> pa.Buffer:
    """One batch as CSV without header (Arrow's C++ writer: UTC ``Z`` timestamps, NULL = empty)."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(batch, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue()


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


def _run_params(df: pd.DataFrame, backend: str) -> dict[str, Any]:
    return {"run": str(df["run_id"].iloc[0]), "as_of": _day_param(df["as_of"].iloc[0], backend)}


def _run_rows(conn: sa.Connection, hist: sa.Table, params: Mapping[str, Any]) -> int:
    """Rows of the run ``(run, as_of)`` already in ``hist`` (a primary-key range count)."""
    q = _qualified(conn, hist)
    return int(
        conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {q} WHERE run_id = :run AND as_of = :as_of"), params
        ).scalar_one()
    )


def _previous_run(
    conn: sa.Connection, hist: sa.Table, params: Mapping[str, Any]
) -> tuple[str, Any, int] | None:
    """``(run_id, as_of, rows)`` of the latest other run in ``hist`` (by ``scored_at``), or None."""
    q = _qualified(conn, hist)
    row = conn.execute(
        sa.text(
            f"SELECT run_id, as_of FROM {q} WHERE NOT (run_id = :run AND as_of = :as_of) "
            "ORDER BY scored_at DESC LIMIT 1"
        ),
        params,
    ).first()
    if row is None:
        return None
    return str(row[0]), row[1], _run_rows(conn, hist, {"run": row[0], "as_of": row[1]})


def _check_shrink(
    conn: sa.Connection,
    hist: sa.Table,
    df: pd.DataFrame,
    params: Mapping[str, Any],
    min_ratio: float,
    what: str,
) -> None:
    prev = _previous_run(conn, hist, params)
    if prev is None or prev[2] == 0:
        return
    if len(df) < min_ratio * prev[2]:
        raise ScoreValidationError(
            f"{what}: {len(df)} rows is fewer than {min_ratio:.0%} of the previous run's {prev[2]} rows "
            f"(run {prev[0]!r}, as of {prev[1]}); refusing to write a sharply shrunken score set "
            "(check the input data, or lower scoring.min_rows_ratio knowingly)"
        )


def _append_history(
    conn: sa.Connection, df: pd.DataFrame, kind: _Kind, hist: sa.Table, chunksize: int
) -> int:
    """Bulk load the run's rows into the history table (``COPY`` / ``executemany``).

    The history doubles as the staging table: the latest table is then upserted from the run's
    rows there (:func:`_upsert_latest`), so the data crosses the wire and is written once.
    """
    backend = conn.dialect.name
    cols = list(kind.columns)
    ready = _ready(df[cols], kind.columns, backend)
    if backend == "postgresql":
        _copy_csv(conn, ready, _qualified(conn, hist))
    else:
        _executemany(conn, ready, _qualified(conn, hist), chunksize)
    return len(df)


def _upsert_latest(
    conn: sa.Connection, kind: _Kind, hist: sa.Table, latest: sa.Table, params: Mapping[str, Any]
) -> int:
    """Insert or replace latest rows from the run's history rows; only a newer run replaces a row."""
    p = conn.dialect.identifier_preparer
    cols = [p.quote(c) for c in kind.columns]
    key = p.quote(kind.key)
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    newer = (
        "excluded.as_of > cur.as_of OR (excluded.as_of = cur.as_of AND excluded.run_id <> cur.run_id "
        "AND excluded.scored_at >= cur.scored_at)"
    )
    sql = (
        f"INSERT INTO {_qualified(conn, latest)} AS cur ({', '.join(cols)}) "
        f"SELECT {', '.join(cols)} FROM {_qualified(conn, hist)} WHERE run_id = :run AND as_of = :as_of "
        f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {newer}"
    )
    return max(int(conn.execute(sa.text(sql), params).rowcount), 0)


# --------------------------------------------------------------------------------------------
# public API


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

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The CRM store (SQLite or PostgreSQL).
    customer_scores : DataFrame or None
        :func:`crmscore.scoring.assemble_customer_scores` output; None skips customers.
    lead_scores : DataFrame or None
        :func:`crmscore.scoring.assemble_lead_scores` output; None skips leads.
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
    res = WriteResult()
    t = res.timings
    tables = score_tables(cfg, schema)
    work: list[tuple[_Kind, pd.DataFrame]] = []
    with _timed(t, "validate"):
        if customer_scores is not None:
            check_customer_scores(customer_scores, expected_customer_ids, cfg.customer_scores_table)
            work.append((_CUSTOMER, customer_scores))
        if lead_scores is not None:
            check_lead_scores(lead_scores, expected_lead_ids, cfg.lead_scores_table)
            work.append((_LEAD, lead_scores))
    backend = engine.dialect.name
    log.info(
        "writing scores to %s: %s",
        redact_url(str(engine.url)),
        ", ".join(f"{len(df)} {k.name} rows" for k, df in work),
    )
    with engine.begin() as conn:
        with _timed(t, "prepare"):
            if backend == "sqlite":
                # take the write lock now and make the DDL below part of the transaction
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif backend == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "crmscore.scores"})
            ensure_score_tables(conn, cfg, schema)
            todo = []
            for kind, df in work:
                latest = tables[getattr(cfg, kind.latest_attr)]
                hist = tables[getattr(cfg, kind.history_attr)]
                params = _run_params(df, backend)
                res.rows[latest.name] = len(df)
                res.latest_updated[latest.name] = res.history_inserted[hist.name] = 0
                done = _run_rows(conn, hist, params)
                if done:
                    # runs are immutable: a replay changes nothing
                    log.info(
                        "%s: run %r as of %s already written (%d rows): nothing to do",
                        hist.name, params["run"], params["as_of"], done,
                    )  # fmt: skip
                    continue
                _check_shrink(conn, hist, df, params, cfg.min_rows_ratio, latest.name)
                todo.append((kind, df, latest, hist, params))
        for kind, df, latest, hist, params in todo:
            with _timed(t, f"{kind.name}_history"):
                res.history_inserted[hist.name] = _append_history(conn, df, kind, hist, cfg.chunksize)
            with _timed(t, f"{kind.name}_upsert"):
                res.latest_updated[latest.name] = _upsert_latest(conn, kind, hist, latest, params)
        t0 = time.perf_counter()
    t["commit"] = time.perf_counter() - t0
    log.info("scores written: latest %s, history %s", res.latest_updated, res.history_inserted)
    return res


def _normalise(df: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    out = df.copy()
    for c, k in columns.items():
        if c not in out:
            continue
        if k == "date":
            out[c] = pd.to_datetime(out[c]).dt.date.astype(object)
        elif k == "timestamp":
            out[c] = pd.to_datetime(out[c], utc=True, format="ISO8601").dt.as_unit("us")
        elif k == "bool":
            out[c] = out[c].astype(bool)
        elif k == "float":
            out[c] = out[c].astype(np.float64)
        elif k == "int":
            out[c] = out[c].astype(np.int64)
        else:
            vals = np.array(out[c].to_numpy(dtype=object), dtype=object, copy=True)
            vals[pd.isna(vals)] = None
            out[c] = pd.Series(vals, index=out.index, dtype=object)
    return out


def read_scores(
    engine: sa.Engine, cfg: ScoringConfig, which: Which = "customer_scores", schema: str | None = None
) -> pd.DataFrame:
    """Read one score table, typed alike from SQLite and PostgreSQL, sorted by its key.

    ``which`` is ``customer_scores``, ``customer_history``, ``lead_scores`` or
    ``lead_history``. An absent table gives an empty frame with the columns.
    """
    kind = _CUSTOMER if which.startswith("customer") else _LEAD
    attr = kind.latest_attr if which.endswith("scores") else kind.history_attr
    table = score_tables(cfg, schema)[getattr(cfg, attr)]
    if not sa.inspect(engine).has_table(table.name, schema=schema):
        return _normalise(pd.DataFrame({c: [] for c in kind.columns}), kind.columns)
    order = [table.c[kind.key]] + ([table.c.as_of, table.c.run_id] if attr == kind.history_attr else [])
    with engine.connect() as conn:
        df = pd.read_sql_query(sa.select(table).order_by(*order), conn)
    return _normalise(df, kind.columns).reset_index(drop=True)


def read_previous_scores(
    engine: sa.Engine,
    cfg: ScoringConfig,
    *,
    as_of: date | str | pd.Timestamp,
    run_id: str,
    schema: str | None = None,
) -> pd.DataFrame | None:
    """Each customer's latest churn probability from another run at or before ``as_of``.

    The ``previous`` argument of :func:`crmscore.scoring.assemble_customer_scores`. Rows of the
    run ``(run_id, as_of)`` itself are ignored, so replaying a run computes the same trend.

    Returns
    -------
    DataFrame or None
        ``customer_id``, ``as_of``, ``churn_probability``; None when there is no history.
    """
    hist = score_tables(cfg, schema)[cfg.customer_history_table]
    if not sa.inspect(engine).has_table(hist.name, schema=schema):
        return None
    backend = engine.dialect.name
    with engine.connect() as conn:
        q = _qualified(conn, hist)
        sql = (
            "SELECT customer_id, as_of, churn_probability FROM ("
            "SELECT customer_id, as_of, churn_probability, ROW_NUMBER() OVER "
            "(PARTITION BY customer_id ORDER BY as_of DESC, scored_at DESC) AS rn "
            f"FROM {q} WHERE as_of <= :as_of AND NOT (run_id = :run AND as_of = :as_of)) AS h WHERE rn = 1"
        )
        df = pd.read_sql_query(
            sa.text(sql), conn, params={"as_of": _day_param(as_of, backend), "run": str(run_id)}
        )
    if df.empty:
        return None
    return _normalise(df, {"customer_id": "id", "as_of": "date", "churn_probability": "float"})
