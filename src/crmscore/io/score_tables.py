"""The score tables: their definitions, how score rows are stored in them and read back.

Tables (names from :class:`crmscore.config.ScoringConfig`, validated and quoted):

* ``customer_scores`` — latest row per customer, primary key ``customer_id`` (upserted);
* ``customer_score_history`` — one row per customer and run, primary key
  ``(run_id, as_of, customer_id)`` (appended; the key's column order makes a run one index
  range) and an index on ``scored_at``;
* ``lead_scores`` / ``lead_score_history`` — likewise with ``lead_id``;
* ``score_runs`` — the run log, one row per written run, primary key ``(run_id, as_of)``
  (:func:`runs_table`; its columns in :data:`RUN_COLUMNS`).

The latest tables also have ``absent_since`` (:data:`LATEST_ONLY_COLUMNS`): NULL while the
row's customer (lead) is in the newest run, else the ``as_of`` of the first newer run without
it (``scoring.absent_rows: mark``; docs/scoring.md). A latest table created before that column
existed gets it with ``ALTER TABLE ... ADD COLUMN`` (:data:`ADDABLE_COLUMNS`: nullable columns,
a safe migration); a table lacking any other column is refused.

On SQLite dates are stored as ``YYYY-MM-DD`` text and ``scored_at`` as ISO 8601 UTC text with
an offset (the convention of :mod:`crmscore.io.crm`); on PostgreSQL as ``date`` and
``timestamptz``. :func:`read_scores` gives the same frame from either store. The rows are
put into that form by :func:`_ready` and sent by :func:`_executemany` (SQLite) or as the CSV of
:func:`_csv_bytes` (PostgreSQL ``COPY``, :mod:`crmscore.io.scores`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from crmscore.config import ScoringConfig, validate_identifier
from crmscore.core.score_contract import CUSTOMER_SCORE_COLUMNS, LEAD_SCORE_COLUMNS
from crmscore.io.crm import _iso_utc

Which = Literal["customer_scores", "customer_history", "lead_scores", "lead_history"]


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

_KINDS: dict[str, _Kind] = {"customer": _CUSTOMER, "lead": _LEAD}

#: columns of the latest tables only (not in the history, not in the score rows)
LATEST_ONLY_COLUMNS: dict[str, str] = {"absent_since": "date"}
#: nullable columns added to an existing score table that lacks them (instead of refusing it)
ADDABLE_COLUMNS: frozenset[str] = frozenset(LATEST_ONLY_COLUMNS)

#: column → kind of the run log (``scoring.runs_table``); four text columns hold JSON
RUN_COLUMNS: dict[str, str] = {
    "run_id": "text",
    "as_of": "date",
    "scored_at": "timestamp",
    "model_versions": "text",  # JSON: kind -> {"name", "version"}
    "settings_digest": "text",
    "input_counts": "text",  # JSON: see crmscore.io.score_runs.input_drops
    "rows": "text",  # JSON: score table -> rows of the run
    "notes": "text",  # JSON list: guard overrides, kinds left out ...
}


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


#: fillfactor of the latest-score tables on PostgreSQL (percent of each page filled by inserts)
LATEST_FILLFACTOR = 50


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

    # PostgreSQL: half of each page left free, so that the next run's update of a row fits on
    # its page, a heap-only (HOT) update without a new primary-key entry (the page's dead
    # versions are pruned as it fills): faster upserts for twice the space (measured in
    # docs/scoring.md). Only tables crmscore creates get it.
    latest_only = [sa.Column(c, _sa_type(k), nullable=True) for c, k in LATEST_ONLY_COLUMNS.items()]
    latest = sa.Table(
        latest_name,
        md,
        *cols((kind.key,)),
        *latest_only,
        schema=schema,
        postgresql_with={"fillfactor": LATEST_FILLFACTOR},
    )
    # history keyed (run_id, as_of, id): a run's rows are one index range (replay check, upsert)
    hist = sa.Table(hist_name, md, *cols(("run_id", "as_of", kind.key)), schema=schema)
    # a run's rows by time without a scan (the previous run itself comes from the run log)
    sa.Index(f"ix_{hist_name}_scored_at"[:63], hist.c.scored_at)
    return latest, hist


def _runs(cfg: ScoringConfig, schema: str | None, md: sa.MetaData) -> sa.Table:
    name = validate_identifier(cfg.runs_table, "scoring.runs_table")
    required = {"run_id", "as_of", "scored_at"}
    columns = [sa.Column(c, _sa_type(k), nullable=c not in required) for c, k in RUN_COLUMNS.items()]
    return sa.Table(name, md, *columns, sa.PrimaryKeyConstraint("run_id", "as_of"), schema=schema)


def score_tables(cfg: ScoringConfig, schema: str | None = None) -> dict[str, sa.Table]:
    """SQLAlchemy tables of the four score tables and the run log, keyed by their configured names."""
    if schema is not None:
        validate_identifier(schema, "data.db_schema")
    md = sa.MetaData()
    out: dict[str, sa.Table] = {}
    for kind in (_CUSTOMER, _LEAD):
        for t in _tables(kind, cfg, schema, md):
            out[t.name] = t
    runs = _runs(cfg, schema, md)
    out[runs.name] = runs
    return out


def runs_table(cfg: ScoringConfig, schema: str | None = None) -> sa.Table:
    """The run log table (``scoring.runs_table``) of :func:`score_tables`."""
    return score_tables(cfg, schema)[cfg.runs_table]


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


def _csv_bytes(batch: pa.RecordBatch) -> pa.Buffer:
    """One batch as CSV without header (Arrow's C++ writer: UTC ``Z`` timestamps, NULL = empty)."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(batch, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue()


def _normalise(df: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    out = df.copy()
    for c, k in columns.items():
        if c not in out:
            continue
        if k == "date":
            days = pd.to_datetime(out[c])
            out[c] = days.dt.date.astype(object).where(days.notna(), None)
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
    ``lead_history``. An absent table gives an empty frame with the columns. The latest tables
    also give ``absent_since`` (:data:`LATEST_ONLY_COLUMNS`; NULL when the table predates it).
    """
    kind = _CUSTOMER if which.startswith("customer") else _LEAD
    attr = kind.latest_attr if which.endswith("scores") else kind.history_attr
    table = score_tables(cfg, schema)[getattr(cfg, attr)]
    columns = dict(kind.columns) if attr == kind.history_attr else {**kind.columns, **LATEST_ONLY_COLUMNS}
    insp = sa.inspect(engine)
    if not insp.has_table(table.name, schema=schema):
        return _normalise(pd.DataFrame({c: [] for c in columns}), columns)
    have = {c["name"] for c in insp.get_columns(table.name, schema=schema)}
    selected = [table.c[c] if c in have else sa.null().label(c) for c in columns]
    order = [table.c[kind.key]] + ([table.c.as_of, table.c.run_id] if attr == kind.history_attr else [])
    with engine.connect() as conn:
        df = pd.read_sql_query(sa.select(*selected).order_by(*order), conn)
    return _normalise(df, columns).reset_index(drop=True)


def read_runs(engine: sa.Engine, cfg: ScoringConfig, schema: str | None = None) -> pd.DataFrame:
    """The run log (``scoring.runs_table``), oldest ``as_of`` first, JSON columns decoded.

    An absent table gives an empty frame with the columns.
    """
    table = runs_table(cfg, schema)
    if not sa.inspect(engine).has_table(table.name, schema=schema):
        df = pd.DataFrame({c: [] for c in RUN_COLUMNS})
    else:
        with engine.connect() as conn:
            df = pd.read_sql_query(
                sa.select(table).order_by(table.c.as_of, table.c.scored_at, table.c.run_id), conn
            )
    out = _normalise(df, RUN_COLUMNS)
    for c in ("model_versions", "input_counts", "rows", "notes"):
        decoded = [None if v is None else json.loads(v) for v in out[c]]
        out[c] = pd.Series(decoded, index=out.index, dtype=object)
    return out.reset_index(drop=True)
