"""Read and write CRM tables through SQLAlchemy (SQLite by default, PostgreSQL in production).

Table and schema names come from configuration: they are validated as identifiers
(:func:`crmscore.config.validate_identifier`) and always quoted by SQLAlchemy, never
pasted into SQL text. Bulk writes use ``COPY`` on PostgreSQL and ``executemany`` in
large batches elsewhere, never a statement per row.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from crmscore.config import redact_url, validate_identifier

__all__ = ["create_engine", "read_sql_tables", "write_sql_tables"]

log = logging.getLogger(__name__)


def create_engine(url: str) -> sa.Engine:
    """Create an engine; a SQLite file's parent folder is created if needed.

    ``postgresql://`` URLs use the psycopg 3 driver.
    """
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(parsed)


def read_sql_tables(
    engine: sa.Engine, names: dict[str, str], schema: str | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read the tables that exist.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Connection to the CRM store.
    names : dict
        Canonical table name → table name in the store (validated identifiers).
    schema : str, optional
        Database schema (PostgreSQL), validated.

    Returns
    -------
    tables : dict
        Canonical name → raw frame for each table present.
    errors : dict
        Canonical name → why an existing table could not be read.
    """
    if schema is not None:
        validate_identifier(schema, "data.db_schema")
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names(schema=schema))
    tables: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    for table, name in names.items():
        validate_identifier(name, f"data.tables.{table}.name")
        if name not in present:
            continue
        try:
            t = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
            with engine.connect() as conn:
                tables[table] = pd.read_sql_query(sa.select(t), conn)
        except sa.exc.SQLAlchemyError as exc:
            errors[table] = f"cannot read table {name!r}: {exc.__class__.__name__}: {exc}"
        else:
            log.debug("read %s: %d rows", table, len(tables[table]))
    return tables, errors


def _iso_utc(s: pd.Series) -> np.ndarray:
    """ISO 8601 text with an explicit UTC offset, vectorised (``None`` for NaT)."""
    arr = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.char.add(np.char.replace(np.datetime_as_string(arr, unit="us"), "T", " "), "+00:00").astype(
        object
    )
    text[np.isnat(arr)] = None
    return text


def _dbapi_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps become ISO 8601 text with an offset (SQLite has no timestamp type); missing → None."""
    cols = {}
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            cols[col] = _iso_utc(s)
        else:
            vals = np.array(s.to_numpy(dtype=object), dtype=object, copy=True)  # may be a read-only view
            vals[pd.isna(vals)] = None
            cols[col] = vals
    return pd.DataFrame(cols, index=df.index, columns=df.columns)


def _ddl_frame(df: pd.DataFrame) -> pd.DataFrame:
    """An empty frame with the column types the table should get (timestamps as text)."""
    empty = df.head(0).copy()
    for col in empty.columns:
        if isinstance(empty[col].dtype, pd.DatetimeTZDtype):
            empty[col] = empty[col].astype(object)
    return empty


def _insert_dbapi(
    conn: sa.Connection, df: pd.DataFrame, name: str, schema: str | None, chunksize: int
) -> None:
    """Bulk insert through the driver's own ``executemany`` in large batches."""
    ready = _dbapi_ready(df)
    preparer = conn.dialect.identifier_preparer
    target = (
        preparer.quote(name) if schema is None else f"{preparer.quote_schema(schema)}.{preparer.quote(name)}"
    )
    cols = ", ".join(preparer.quote(c) for c in df.columns)
    marks = (
        ", ".join(["?"] * len(df.columns))
        if conn.dialect.paramstyle == "qmark"
        else ", ".join(["%s"] * len(df.columns))
    )
    sql = f"INSERT INTO {target} ({cols}) VALUES ({marks})"
    cursor = conn.connection.driver_connection.cursor()
    try:
        columns = [ready[c].to_numpy(dtype=object) for c in ready.columns]
        for start in range(0, len(ready), chunksize):
            cursor.executemany(sql, zip(*(col[start : start + chunksize] for col in columns), strict=True))
    finally:
        cursor.close()


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table of ``df``; timezone-aware columns go over as UTC timestamps explicitly."""
    arrays = []
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            utc = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            arrays.append(pa.array(utc, type=pa.timestamp("us", tz="UTC"), mask=np.isnat(utc)))
        else:
            arrays.append(pa.Array.from_pandas(s))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in df.columns])


def _copy_postgres(conn: sa.Connection, df: pd.DataFrame, name: str, schema: str | None) -> None:
    """Bulk load ``df`` into an existing table with ``COPY ... FROM STDIN`` (CSV written by Arrow).

    Arrow's C++ CSV writer formats timestamps with their UTC ``Z`` and leaves nulls as
    unquoted empty fields, which is what PostgreSQL's CSV format reads as NULL.
    """
    raw = conn.connection.driver_connection  # psycopg.Connection
    ident = f'"{schema}"."{name}"' if schema else f'"{name}"'
    cols = ", ".join(f'"{c}"' for c in df.columns)
    sink = io.BytesIO()
    pa_csv.write_csv(_to_arrow(df), sink, pa_csv.WriteOptions(include_header=False))
    payload = sink.getbuffer()
    with raw.cursor() as cur, cur.copy(f"COPY {ident} ({cols}) FROM STDIN WITH (FORMAT csv)") as cp:
        for start in range(0, len(payload), 1 << 22):
            cp.write(payload[start : start + (1 << 22)])


def write_sql_tables(
    engine: sa.Engine,
    tables: dict[str, pd.DataFrame],
    schema: str | None = None,
    replace: bool = True,
    chunksize: int = 200_000,
) -> None:
    """Write whole tables to the store in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Target store.
    tables : dict
        Table name → frame. Names must be valid identifiers.
    schema : str, optional
        Target schema (created on PostgreSQL if missing).
    replace : bool
        Drop and recreate each table (``True``) or append.
    chunksize : int
        Rows per ``executemany`` batch on non-PostgreSQL stores.
    """
    for name in tables:
        validate_identifier(name, "table name")
    if schema is not None:
        validate_identifier(schema, "data.db_schema")
    backend = engine.dialect.name
    log.info("writing %d tables to %s", len(tables), redact_url(str(engine.url)))
    with engine.begin() as conn:
        if schema is not None and backend == "postgresql":
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        for name, df in tables.items():
            if backend == "postgresql":
                df.head(0).to_sql(
                    name, conn, schema=schema, if_exists="replace" if replace else "append", index=False
                )
                _copy_postgres(conn, df, name, schema)
            else:
                _ddl_frame(df).to_sql(
                    name, conn, schema=schema, if_exists="replace" if replace else "append", index=False
                )
                _insert_dbapi(conn, df, name, schema, chunksize)
            log.debug("wrote %s: %d rows", name, len(df))
