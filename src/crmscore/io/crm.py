"""Read and write CRM tables through SQLAlchemy (SQLite by default, PostgreSQL in production).

Table and schema names come from configuration: they are validated as identifiers
(:func:`crmscore.config.validate_identifier`) and always quoted by SQLAlchemy, never
pasted into SQL text. Bulk writes use ``COPY`` on PostgreSQL and ``executemany`` in
large batches elsewhere, never a statement per row. On PostgreSQL, tables are read as
Arrow instead of one Python tuple per row: through ADBC (Apache Arrow's PostgreSQL driver,
binary ``COPY``), else with ``COPY ... TO STDOUT`` as CSV parsed by Arrow; both typed from
the reflected columns, giving the same frame. Other stores use ``pandas.read_sql_query``.

A store that cannot be opened raises :class:`StoreError`: one line (URL redacted) and the
command's exit code (:func:`describe_db_error`). A read never creates a SQLite file
(:func:`open_for_reading`); a write (``crmscore generate``) does.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from crmscore.config import normalise_url, redact_url, validate_identifier

__all__ = [
    "LeadScope",
    "StoreError",
    "create_engine",
    "describe_db_error",
    "open_for_reading",
    "read_sql_tables",
    "to_arrow",
    "unscoped_note",
    "write_sql_tables",
]

log = logging.getLogger(__name__)


#: Exit codes of :class:`StoreError` (README "Exit codes"): the store cannot be reached or
#: identified (driver, server, credentials, database) → 2; the CRM data is not where the
#: configuration says (a SQLite file, a schema) → 3, as a missing data folder.
EXIT_CONFIG, EXIT_DATA_NOT_FOUND = 2, 3

#: The package that provides a DBAPI module SQLAlchemy failed to import.
_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "'psycopg[binary]'",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "MySQLdb": "mysqlclient",
    "pymysql": "pymysql",
    "mysql": "mysql-connector-python",
    "pyodbc": "pyodbc",
    "oracledb": "oracledb",
    "cx_Oracle": "cx_Oracle",
    "pymssql": "pymssql",
    "duckdb_engine": "duckdb-engine",
}


class StoreError(RuntimeError):
    """A store that cannot be opened, said in one line (never a password).

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    exit_code : int
        The command's exit code: 2 (configuration) or 3 (data not found); 1 for a missing
        model store (:mod:`crmscore.tracking`).
    """

    def __init__(self, message: str, exit_code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _target(url: sa.URL) -> str:
    host = url.host or "localhost"
    return f"{host}:{url.port}" if url.port else host


def describe_db_error(exc: BaseException, url: str | sa.URL) -> str:
    """One line saying why the store at ``url`` could not be opened, and what to do.

    Translates a missing driver (``ModuleNotFoundError`` of the DBAPI, an unknown dialect), an
    unparsable URL and the connection failures of ``OperationalError`` (database missing,
    server not answering, host unknown, credentials refused) into words; anything else is
    the driver's own first line. The URL is shown redacted (:func:`crmscore.config.redact_url`).

    Parameters
    ----------
    exc : BaseException
        What SQLAlchemy or the driver raised.
    url : str or sqlalchemy.URL
        The store's URL (a password in it is never shown).
    """
    text_url = url.render_as_string(hide_password=True) if isinstance(url, sa.URL) else str(url)
    shown = redact_url(text_url)
    try:
        parsed = url if isinstance(url, sa.URL) else sa.make_url(normalise_url(text_url))
    except sa.exc.ArgumentError:
        parsed = None
    if isinstance(exc, ModuleNotFoundError):
        module = (exc.name or "").split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        dialect = parsed.drivername if parsed is not None else shown.split(":", 1)[0]
        return (
            f"the database driver {module!r} for {dialect}:// is not installed: pip install {package} "
            "(or choose an installed driver in data.crm_url, e.g. postgresql+psycopg://)"
        )
    if isinstance(exc, sa.exc.NoSuchModuleError):
        dialect = str(exc).rsplit(":", 1)[-1].strip() or "?"
        return (
            f"unknown database kind {dialect!r} in {shown}: use sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST:PORT/DB (or install the SQLAlchemy dialect for it)"
        )
    if isinstance(exc, sa.exc.ArgumentError):
        return f"cannot read the database URL {shown!r}: expected e.g. sqlite:///data/crm.sqlite"
    orig = getattr(exc, "orig", None) or exc
    message = str(orig)
    low = message.lower()
    where = _target(parsed) if parsed is not None else shown
    database = parsed.database if parsed is not None else None
    user = parsed.username if parsed is not None else None
    if "does not exist" in low and "database" in low:
        return (
            f"the database {database!r} does not exist on {where} ({shown}): create it "
            f"(createdb {database}) or fix data.crm_url / CRMSCORE_CRM_URL"
        )
    if (
        "password authentication failed" in low
        or "no password supplied" in low
        or ("role" in low and "does not exist" in low)
    ):
        return (
            f"the database server {where} refused the login of user {user!r} ({shown}): check the user "
            "and its password (CRMSCORE_CRM_URL or PGPASSWORD; never in params.yaml)"
        )
    if "resolve host" in low or "name or service not known" in low or "could not translate host" in low:
        return (
            f"the database host of {shown} is unknown: check the host name in data.crm_url / CRMSCORE_CRM_URL"
        )
    if "connection refused" in low or "timeout" in low or "timed out" in low or "could not connect" in low:
        return (
            f"the database server {where} does not answer ({shown}): is it running and accepting "
            "connections on that host and port?"
        )
    if "unable to open database file" in low:
        return f"cannot open the SQLite database {shown}: check the path and its permissions"
    first = next((line.strip() for line in message.splitlines() if line.strip()), exc.__class__.__name__)
    return f"cannot open the database {shown}: {redact_url(first)}"


def create_engine(url: str) -> sa.Engine:
    """Create an engine; a SQLite file's parent folder is created when it first connects.

    ``postgresql://`` URLs use the psycopg 3 driver; a raw ``@`` in the password is read as part
    of the password (:func:`crmscore.config.normalise_url`). Nothing connects here; a store
    that is read goes through :func:`open_for_reading` (which refuses a missing SQLite file:
    only a write, e.g. ``crmscore generate``, creates one).

    Raises
    ------
    StoreError
        The URL cannot be parsed, its dialect is unknown or its driver is not installed
        (exit code 2, with what to install).
    """
    try:
        parsed = sa.make_url(normalise_url(url))
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed)
    except (ImportError, sa.exc.ArgumentError) as exc:
        raise StoreError(describe_db_error(exc, url), EXIT_CONFIG) from None
    if engine.dialect.name == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent

        @sa.event.listens_for(engine, "do_connect")
        def _make_folder(*_: object) -> None:
            folder.mkdir(parents=True, exist_ok=True)

    return engine


def _sqlite_file(engine: sa.Engine) -> Path | None:
    """The file of a SQLite engine on a file (None: another store, memory, or a ``file:`` URI)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if database in (None, "", ":memory:") or database.startswith("file:") or engine.url.query.get("uri"):
        return None
    return Path(database)


def open_for_reading(engine: sa.Engine, schema: str | None = None) -> None:
    """Check that the CRM store of ``engine`` exists and answers before it is read.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The CRM store (:func:`create_engine`).
    schema : str, optional
        ``data.db_schema``: it must exist.

    Raises
    ------
    StoreError
        A SQLite file that does not exist (never created by a read; exit code 3), a schema that
        does not exist (exit code 3), or a store that cannot be connected to
        (:func:`describe_db_error`, exit code 2).
    """
    url = engine.url
    shown = redact_url(url.render_as_string(hide_password=True))
    file = _sqlite_file(engine)
    if file is not None and not file.is_file():
        raise StoreError(
            f"the CRM database file {file} does not exist: check data.crm_url or CRMSCORE_CRM_URL, "
            "or run crmscore generate",
            EXIT_DATA_NOT_FOUND,
        )
    try:
        with engine.connect() as conn:
            has_schema = schema is None or sa.inspect(conn).has_schema(schema)
    except sa.exc.DBAPIError as exc:
        raise StoreError(describe_db_error(exc, url), EXIT_CONFIG) from None
    if not has_schema:
        raise StoreError(
            f"the schema {schema!r} (data.db_schema) does not exist in {shown}: fix data.db_schema, "
            "or create the schema and its tables (crmscore generate writes them)",
            EXIT_DATA_NOT_FOUND,
        )


@dataclass(frozen=True)
class LeadScope:
    """The leads (and their activities) a scoring run reads, instead of the whole tables.

    Scoring uses only the leads that may still be open, with their conversion window
    running, at the cutoff. On PostgreSQL, :func:`read_sql_tables` then reads every row of
    each ``lead_id`` that has at least one row with ``created_at >= created_since`` and
    ``converted_at`` missing or ``>= open_since``, and the activities of those ids only. All
    rows of an id in scope are read, so validation (duplicates, conflicts) treats those
    leads exactly as on the whole table. The rows not read are counted in ``notes``.

    Parameters
    ----------
    created_since, open_since : datetime
        Timezone-aware bounds; callers choose them with a margin (a superset of the rows
        used is read: the feature code applies the exact rule).
    leads_columns : mapping
        Canonical → source column names of ``leads`` (``data.tables.leads.columns``).
    activities_columns : mapping
        Canonical → source column names of ``lead_activities``.
    """

    created_since: datetime
    open_since: datetime
    leads_columns: Mapping[str, str] = field(default_factory=dict)
    activities_columns: Mapping[str, str] = field(default_factory=dict)

    def statements(self, leads: sa.Table, activities: sa.Table | None) -> dict[str, sa.Select] | str:
        """``{"leads": select, "lead_activities": select}``, or why the scope cannot be applied."""
        col = self.leads_columns.get
        names = {k: col(k, k) for k in ("lead_id", "created_at", "converted_at")}
        missing = [n for n in names.values() if n not in leads.c]
        if missing:
            return f"leads has no column(s) {missing}"
        for k in ("created_at", "converted_at"):
            kind = leads.c[names[k]].type
            if not (isinstance(kind, sa.DateTime) and kind.timezone):
                return f"leads.{names[k]} is {kind}, not timestamp with time zone"
        lead_id = leads.c[names["lead_id"]]
        converted = leads.c[names["converted_at"]]
        in_scope = (
            sa.select(lead_id)
            .where(
                leads.c[names["created_at"]] >= self.created_since,
                sa.or_(converted.is_(None), converted >= self.open_since),
            )
            .distinct()
        )
        out = {"leads": sa.select(leads).where(lead_id.in_(in_scope))}
        if activities is not None:
            act_id = self.activities_columns.get("lead_id", "lead_id")
            if act_id not in activities.c:
                return f"lead_activities has no column {act_id!r}"
            out["lead_activities"] = sa.select(activities).where(activities.c[act_id].in_(in_scope))
        return out


def unscoped_note(why: str) -> str:
    """The note of a read that could not apply its :class:`LeadScope` (``why``: the reason)."""
    return f"leads: every lead read ({why}); scoring still uses only the leads in scope"


def read_sql_tables(
    engine: sa.Engine,
    names: dict[str, str],
    schema: str | None = None,
    lead_scope: LeadScope | None = None,
    notes: list[str] | None = None,
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
    lead_scope : LeadScope, optional
        Read only the leads and lead activities in this scope (PostgreSQL, with
        ``timestamptz`` lead dates; elsewhere the whole tables are read, and a note says so).
    notes : list, optional
        Receives what the scope left unread (rows per table) or why it was not applied.

    Returns
    -------
    tables : dict
        Canonical name → raw frame for each table present.
    errors : dict
        Canonical name → why an existing table could not be read.
    """
    if schema is not None:
        validate_identifier(schema, "data.db_schema")
    open_for_reading(engine, schema)
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names(schema=schema))
    tables: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    reflected: dict[str, sa.Table] = {}
    for table, name in names.items():
        validate_identifier(name, f"data.tables.{table}.name")
        if name not in present:
            continue
        try:
            reflected[table] = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
        except sa.exc.SQLAlchemyError as exc:
            errors[table] = f"cannot read table {name!r}: {exc.__class__.__name__}: {exc}"
    scoped = _scoped_statements(engine, reflected, lead_scope, notes)

    def read(table: str) -> pd.DataFrame:
        statement = scoped.get(table, sa.select(reflected[table]))
        frame = _read_postgres(engine, statement) if engine.dialect.name == "postgresql" else None
        if frame is None:
            with engine.connect() as conn:
                frame = pd.read_sql_query(statement, conn)
        return frame

    # PostgreSQL: tables are read over _READ_CONNECTIONS connections at once (the server
    # formats one table while Arrow parses another); other stores one table at a time.
    workers = _READ_CONNECTIONS if engine.dialect.name == "postgresql" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {table: pool.submit(read, table) for table in reflected}
        for table, future in futures.items():
            try:
                tables[table] = future.result()
            except sa.exc.SQLAlchemyError as exc:
                name = reflected[table].name
                errors[table] = f"cannot read table {name!r}: {exc.__class__.__name__}: {exc}"
            else:
                log.debug("read %s: %d rows", table, len(tables[table]))
    if scoped:
        _count_unread(engine, reflected, tables, scoped, notes)
    return tables, errors


#: connections reading tables at once from PostgreSQL (3 was the fastest of 1-3 at 1M
#: customers on 2 cores; docs/scoring.md, "Speed")
_READ_CONNECTIONS = 3


def _scoped_statements(
    engine: sa.Engine, reflected: dict[str, sa.Table], scope: LeadScope | None, notes: list[str] | None
) -> dict[str, sa.Select]:
    """The scoped ``SELECT`` of leads and activities, or ``{}`` (with a note saying why)."""
    if scope is None or "leads" not in reflected:
        return {}
    why = (
        scope.statements(reflected["leads"], reflected.get("lead_activities"))
        if engine.dialect.name == "postgresql"
        else f"the {engine.dialect.name} store has no typed timestamps"
    )
    if isinstance(why, dict):
        return why
    msg = unscoped_note(why)
    log.info(msg)
    if notes is not None:
        notes.append(msg)
    return {}


def _count_unread(
    engine: sa.Engine,
    reflected: dict[str, sa.Table],
    tables: dict[str, pd.DataFrame],
    scoped: dict[str, sa.Select],
    notes: list[str] | None,
) -> None:
    """Count and report the rows a scoped read left out (nothing is left out silently)."""
    with engine.connect() as conn:
        for table in scoped:
            if table not in tables:
                continue
            total = conn.execute(sa.select(sa.func.count()).select_from(reflected[table])).scalar_one()
            msg = (
                f"{table}: {len(tables[table]):,} of {total:,} rows read; the other "
                f"{total - len(tables[table]):,} belong to leads out of the scoring scope "
                "(created before the conversion window of the cutoff, or converted before it)"
            )
            log.info(msg)
            if notes is not None:
                notes.append(msg)


def _arrow_type(col: sa.Column) -> pa.DataType | None:
    """The Arrow type a PostgreSQL column is read as from ``COPY`` CSV; ``None`` when unsupported.

    Only types whose CSV text maps onto the frame ``pandas.read_sql_query`` would give are
    supported: text stays text (ids such as ``"007"`` keep their zeros), ``timestamptz`` is
    read as UTC, ``timestamp`` stays naive, floats, integers and booleans keep their kind.
    """
    kind = col.type
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC") if kind.timezone else pa.timestamp("us")
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.Float):  # REAL, DOUBLE PRECISION (not NUMERIC: Decimal objects)
        return pa.float64()
    if isinstance(kind, sa.String) and not isinstance(kind, sa.Enum):  # TEXT, VARCHAR, CHAR
        return pa.large_string()
    return None


#: Bytes of ``COPY`` output parsed by Arrow at a time (rows never straddle two blocks).
_COPY_BLOCK = 1 << 24


def _copy_blocks(copy: Iterable[bytes | memoryview], size: int = _COPY_BLOCK) -> Iterator[bytearray]:
    """Join the rows of a ``COPY ... TO STDOUT`` stream into blocks of about ``size`` bytes.

    PostgreSQL sends every row as one message, so a block always ends at a row boundary
    and can be parsed on its own. Rows are copied out at once (holding psycopg's row
    buffers is slow).
    """
    block = bytearray()
    for row in copy:
        block += row
        if len(block) >= size:
            yield block
            block = bytearray()
    if block:
        yield block


def _read_postgres(engine: sa.Engine, statement: sa.Select) -> pd.DataFrame | None:
    """The rows of ``statement`` as a frame: :func:`_read_postgres_adbc`, else :func:`_read_postgres_copy`.

    ``None`` when neither can read them (the caller then uses ``pandas.read_sql_query``).
    """
    types = _column_types(statement)
    if types is None:
        return None
    frame = _read_postgres_adbc(engine, statement, types)
    return frame if frame is not None else _read_postgres_copy(engine, statement, types)


def _column_types(statement: sa.Select) -> dict[str, pa.DataType] | None:
    """Arrow type of each selected column (:func:`_arrow_type`); None if one is unsupported."""
    types = {c.name: _arrow_type(c) for c in statement.selected_columns}
    if not types or any(t is None for t in types.values()):
        log.debug(
            "%s: column types not all supported by the Arrow readers", statement.get_final_froms()[0].name
        )
        return None
    return types  # type: ignore[return-value]


def _adbc_uri(url: sa.URL) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (the password, if any, stays in it)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _read_postgres_adbc(
    engine: sa.Engine, statement: sa.Select, types: Mapping[str, pa.DataType]
) -> pd.DataFrame | None:
    """Read ``statement`` with ADBC: the server sends binary ``COPY``, the driver builds Arrow.

    No text formatting on the server nor parsing on the client (half the time of the CSV
    reader on timestamps and floats). The result is cast to ``types``, the types the CSV
    reader gives, so both readers return the same frame. Returns ``None`` (the caller falls
    back to the CSV reader) when the driver is missing, cannot connect with this URL, or a
    value does not cast; an SQL error of the statement itself is raised.
    """
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:  # pragma: no cover - a declared dependency
        log.debug("adbc-driver-postgresql not installed: reading with COPY CSV")
        return None
    select = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    table = statement.get_final_froms()[0]
    try:
        conn = adbc.connect(_adbc_uri(engine.url))
    except Exception as exc:  # any connection problem: the psycopg path decides
        log.debug("ADBC cannot connect (%s): reading %s with COPY CSV", type(exc).__name__, table)
        return None
    try:
        with conn.cursor() as cur:
            # a stable row order for this read (the run id digests the input as read), and
            # room for the lead scope's semi-join to hash the lead ids in memory
            cur.execute("SET synchronize_seqscans = off")
            cur.execute("SET work_mem = '256MB'")
            cur.execute(select)
            arrow = cur.fetch_arrow_table()
        conn.rollback()
    except adbc.Error as exc:  # the psycopg path reads it, or reports the error as it always has
        log.debug("%s: ADBC read failed (%s): reading with COPY CSV", table, exc)
        return None
    finally:
        conn.close()
    try:
        arrow = arrow.cast(pa.schema([pa.field(name, kind) for name, kind in types.items()]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        log.debug("%s: ADBC result does not cast (%s): reading with COPY CSV", table, exc)
        return None
    if not arrow.num_rows:
        return None  # empty: the plain path gives the same empty frame cheaply
    if _has_infinite_timestamps(arrow):
        log.debug("%s: a timestamp is 'infinity': reading with COPY CSV", table)
        return None
    return arrow.to_pandas()


#: PostgreSQL sends ``±infinity`` timestamps as the int64 extremes; shifted to the Unix epoch
#: by the driver they land near the int64 minimum (both of them), far below any real
#: timestamp (PostgreSQL's earliest, 4713 BC, is about -2.1e17 µs)
_INFINITE_BELOW = -(2**62)


def _has_infinite_timestamps(arrow: pa.Table) -> bool:
    """A ``-infinity`` / ``infinity`` timestamp in ``arrow`` (read by ADBC)."""
    import pyarrow.compute as pc

    for column in arrow.columns:
        if pa.types.is_timestamp(column.type) and column.null_count < len(column):
            ends = pc.min_max(column.cast(pa.int64()))
            if ends["min"].as_py() < _INFINITE_BELOW or ends["max"].as_py() == np.iinfo(np.int64).max:
                return True
    return False


def _read_postgres_copy(
    engine: sa.Engine, statement: sa.Select, types: Mapping[str, pa.DataType]
) -> pd.DataFrame | None:
    """Read the rows of ``statement`` (one table's columns) with ``COPY (SELECT ...) TO STDOUT``.

    The CSV is parsed by Arrow.

    The stream is cut into blocks at row boundaries; each block is parsed by
    :func:`pyarrow.csv.read_csv` in a worker thread while the next one is received.

    Returns ``None`` (the caller falls back to ``pandas.read_sql_query``, which then gives
    the same frame or reports the same error as before) when the table is empty, Arrow
    cannot parse a value (such as a timestamp ``infinity``) or the server refuses the
    ``COPY``. ``types``: :func:`_column_types` of ``statement``.
    """
    table = statement.get_final_froms()[0]
    # identifiers quoted by SQLAlchemy; bound values (scope timestamps) inlined as literals
    select = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    options = {
        "read_options": pa_csv.ReadOptions(column_names=list(types), block_size=1 << 22),
        "parse_options": pa_csv.ParseOptions(newlines_in_values=True),
        "convert_options": pa_csv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,  # an unquoted empty field is NULL ...
            quoted_strings_can_be_null=False,  # ... and a quoted one the empty string
            true_values=["t"],
            false_values=["f"],
            timestamp_parsers=[pa_csv.ISO8601],
        ),
    }

    def parse(block: bytearray) -> pa.Table:
        return pa_csv.read_csv(pa.BufferReader(pa.py_buffer(block)), **options)

    parts: list[Future[pa.Table]] = []
    with engine.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
        raw = conn.connection.driver_connection  # psycopg.Connection
        try:
            with raw.cursor() as cur:
                # Timestamps in UTC and ISO format, and a stable row order for this read.
                cur.execute("SET LOCAL TIME ZONE 'UTC'")
                cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                cur.execute("SET LOCAL synchronize_seqscans = off")
                # room for the scope's semi-join to hash the lead ids in memory (no disk batches)
                cur.execute("SET LOCAL work_mem = '256MB'")
                with cur.copy(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)") as copy:
                    for block in _copy_blocks(copy):
                        parts.append(pool.submit(parse, block))
        except conn.dialect.loaded_dbapi.Error as exc:
            log.debug("%s: COPY refused, reading with read_sql_query: %s", table.name, exc)
            return None
        try:
            tables = [part.result() for part in parts]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            log.debug("%s: COPY read fell back to read_sql_query: %s", table.name, exc)
            return None
    if not tables:
        return None  # empty: the plain path gives the same empty frame cheaply
    return pa.concat_tables(tables).to_pandas()


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


def to_arrow(df: pd.DataFrame) -> pa.Table:
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
    pa_csv.write_csv(to_arrow(df), sink, pa_csv.WriteOptions(include_header=False))
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
