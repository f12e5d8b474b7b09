"""SQL readers (crmscore.io.crm: SQLite, PostgreSQL) give back the same canonical tables.

Folder readers (CSV, Parquet): test_files.py.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from crmscore.config import config_from_mapping
from crmscore.ingest.validation import load_validated, validate_tables
from crmscore.io.crm import create_engine, read_sql_tables, write_sql_tables
from helpers import TABLE_NAMES as NAMES
from helpers import assert_same_tables as _assert_same
from helpers import canonical_tables
from helpers import validate_raw as _validate


def test_sqlite_round_trip_through_config(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    tables = canonical_tables()
    write_sql_tables(create_engine(url), tables)
    monkeypatch.setenv("CRMSCORE_CRM_URL", url)
    data, report = load_validated(config_from_mapping({}), as_of="2025-01-01", now="2025-01-02")
    assert report.usable and report.rows_set_aside == 0
    _assert_same(data, tables)


def test_sqlite_mapped_table_and_column_names(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    tables = canonical_tables()
    orders = tables["transactions"].rename(columns={"customer_id": "CustomerID", "ts": "InvoiceDate"})
    write_sql_tables(create_engine(url), {"customers": tables["customers"], "orders": orders})
    cfg = config_from_mapping(
        {
            "data": {
                "crm_url": url,
                "tables": {
                    "transactions": {
                        "name": "orders",
                        "columns": {"customer_id": "CustomerID", "ts": "InvoiceDate"},
                    }
                },
            }
        }
    )
    data, report = load_validated(cfg, as_of="2025-01-01", now="2025-01-02")
    assert report.usable, report.problems
    assert list(data.transactions.columns[:3]) == ["customer_id", "ts", "amount"]
    assert data.transactions["customer_id"].tolist() == ["C1", "C1", "C2", "C3"]


@pytest.mark.postgres
def test_postgres_round_trip(pg_engine, pg_schema):
    tables = canonical_tables()
    write_sql_tables(pg_engine, tables, schema=pg_schema)
    with pg_engine.connect() as conn:
        kinds = dict(
            conn.execute(
                sa.text(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = :s and table_name = 'transactions'"
                ),
                {"s": pg_schema},
            ).all()
        )
    assert kinds["ts"] == "timestamp with time zone"
    raw, errors = read_sql_tables(pg_engine, NAMES, schema=pg_schema)
    assert errors == {}
    _assert_same(_validate(raw), tables)


@pytest.mark.postgres
def test_postgres_through_config_env(pg_engine, pg_schema, monkeypatch):
    write_sql_tables(pg_engine, canonical_tables(), schema=pg_schema)
    monkeypatch.setenv("CRMSCORE_CRM_URL", pg_engine.url.render_as_string(hide_password=False))
    cfg = config_from_mapping({"data": {"db_schema": pg_schema}})
    data, report = load_validated(cfg, as_of="2025-01-01", now="2025-01-02")
    assert report.usable and data.transactions is not None and len(data.transactions) == 4


def test_sqlite_write_of_object_columns_with_missing_values(tmp_path):
    """pandas 3 may hand out read-only object arrays: missing values still become NULL."""
    df = pd.DataFrame({"a": pd.Series(["x", None, "z"], dtype=object), "b": [1.0, None, 3.0]})
    engine = create_engine(f"sqlite:///{tmp_path / 'o.sqlite'}")
    write_sql_tables(engine, {"t": df})
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select a, b from t order by rowid")).all()
    assert [tuple(r) for r in rows] == [("x", 1.0), (None, None), ("z", 3.0)]


def _read_both(engine, names, schema):
    """The COPY reader's frames and ``pandas.read_sql_query``'s, table by table."""
    copied, errors = read_sql_tables(engine, names, schema=schema)
    assert errors == {}
    plain = {}
    for table, name in names.items():
        t = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
        with engine.connect() as conn:
            plain[table] = pd.read_sql_query(sa.select(t), conn)
    return copied, plain


@pytest.fixture(params=["adbc", "csv"])
def pg_reader(request, monkeypatch):
    """Which PostgreSQL reader runs: ADBC (binary COPY, the default) or the COPY CSV fallback.

    Yields the list of tables the ADBC reader returned a frame for (empty for ``csv``).
    """
    import crmscore.io.crm as crm

    used: list[str] = []
    if request.param == "csv":
        monkeypatch.setattr(crm, "_read_postgres_adbc", lambda *a, **k: None)
    else:
        real = crm._read_postgres_adbc

        def spy(engine, statement, types):
            frame = real(engine, statement, types)
            if frame is not None:
                used.append(statement.get_final_froms()[0].name)
            return frame

        monkeypatch.setattr(crm, "_read_postgres_adbc", spy)
    yield request.param, used


@pytest.mark.postgres
def test_postgres_copy_reader_matches_read_sql_query(pg_engine, pg_schema, pg_reader):
    """NULLs, empty strings, offsets, zero-padded text ids, odd names: same frames, same validation
    (the ADBC reader and the COPY CSV one alike)."""
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                f'create table "{pg_schema}".customers (customer_id text, created_at timestamptz, '
                '"Plan, tier" varchar(20), "quoted ""name""" text, seats integer, big bigint, '
                "score double precision, vip boolean, local_ts timestamp)"
            )
        )
        conn.execute(
            sa.text(
                f'insert into "{pg_schema}".customers values '
                "('007', '2024-01-05 10:00:00.123456+02', 'pro', 'a,b', 1, 9007199254740993, 0.1, true, "
                "'2024-01-01 00:00:00'), "
                "(' 42 ', '2024-03-31 01:30:00-05:30', '', E'line\\nbreak \"q\"', "
                "null, null, null, null, null), "
                "('C3', null, null, null, 3, 1, 'NaN', false, '2024-02-29 23:59:59.999999'), "
                "('', '2023-12-31 23:00:00+00', 'x', '', 4, -1, '-Infinity', null, null), "
                "(null, '2024-06-01 00:00:00+14', 'y', 'z', 5, 2, 1e300, true, null)"
            )
        )
        conn.execute(
            sa.text(
                f'create table "{pg_schema}".transactions (customer_id text, ts timestamptz, '
                "amount double precision, transaction_id text)"
            )
        )
        conn.execute(
            sa.text(
                f'insert into "{pg_schema}".transactions values '
                "('007', '2024-02-01 00:00:00+01', 10.5, '0001'), "
                "('42', '2024-02-01 00:00:00Z', -2.25, '0002'), "
                "('C9', '2024-02-02 00:00:00Z', 1, '0003'), ('007', '2024-02-03 00:00:00Z', 1, '0001')"
            )
        )
        conn.execute(
            sa.text(
                f'create table "{pg_schema}".support_tickets (ticket_id text, customer_id text, '
                "opened_at timestamptz, closed_at timestamptz, priority text, csat double precision)"
            )
        )  # empty table
    copied, plain = _read_both(pg_engine, NAMES, pg_schema)
    reader, used = pg_reader
    assert sorted(used) == (["customers", "transactions"] if reader == "adbc" else [])
    for name in NAMES:
        pd.testing.assert_frame_equal(copied[name], plain[name], check_exact=True)
    assert copied["customers"]["customer_id"].tolist()[:3] == ["007", " 42 ", "C3"]
    cfg = config_from_mapping({})
    data_c, report_c = validate_tables(copied, cfg, as_of="2025-01-01", now="2025-01-02")
    data_p, report_p = validate_tables(plain, cfg, as_of="2025-01-01", now="2025-01-02")
    assert report_c.to_dict() == report_p.to_dict()
    # the empty optional table is treated as absent, whichever reader read it
    assert data_c.support_tickets is None and data_p.support_tickets is None
    assert "support_tickets: the table has no rows: treated as absent" in report_c.notes
    for name in ("customers", "transactions"):
        pd.testing.assert_frame_equal(data_c.get(name), data_p.get(name), check_exact=True)
    for name, aside in report_p.quarantine.items():
        pd.testing.assert_frame_equal(report_c.quarantine[name], aside, check_exact=True)
    assert data_c.customers["customer_id"].tolist() == ["007", "42", "C3"]
    assert data_c.transactions["transaction_id"].tolist() == ["0002"]  # "0001" conflicts: set aside
    assert dict(report_c.tables["transactions"].set_aside) == {"duplicate_conflict": 2, "unknown_customer": 1}


@pytest.mark.postgres
def test_postgres_copy_reader_falls_back_for_other_types(pg_engine, pg_schema, pg_reader):
    """Types without an exact Arrow mapping (numeric, date) and 'infinity' timestamps read as before."""
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                f'create table "{pg_schema}".customers (customer_id text, created_at timestamptz, '
                "value numeric(10, 2), since date)"
            )
        )
        conn.execute(
            sa.text(
                f"insert into \"{pg_schema}\".customers values ('C1', '2024-01-01Z', 1.25, '2024-01-01'), "
                "('C2', null, null, null)"
            )
        )
        conn.execute(sa.text(f'create table "{pg_schema}".transactions (customer_id text, ts timestamptz)'))
        conn.execute(
            sa.text(
                f"insert into \"{pg_schema}\".transactions values ('C1', 'infinity'), ('C1', '2024-01-01Z')"
            )
        )
    copied, plain = _read_both(pg_engine, {"customers": "customers"}, pg_schema)
    pd.testing.assert_frame_equal(copied["customers"], plain["customers"], check_exact=True)
    # 'infinity' has no Arrow timestamp: the plain path runs and reports its error, as before.
    tables, errors = read_sql_tables(pg_engine, {"transactions": "transactions"}, schema=pg_schema)
    assert "transactions" not in tables
    assert "infinity" in errors["transactions"]
    assert pg_reader[1] == []  # neither table was taken from ADBC


@pytest.mark.postgres
def test_postgres_copy_reader_large_table_in_blocks(pg_engine, pg_schema, monkeypatch):
    """Rows never straddle two parsed blocks: a tiny block size gives the same frame."""
    import crmscore.io.crm as crm

    tables = canonical_tables()
    write_sql_tables(pg_engine, tables, schema=pg_schema)
    whole, _ = read_sql_tables(pg_engine, NAMES, schema=pg_schema)
    monkeypatch.setattr(crm, "_COPY_BLOCK", 16)
    blocks, _ = read_sql_tables(pg_engine, NAMES, schema=pg_schema)
    for name in NAMES:
        pd.testing.assert_frame_equal(blocks[name], whole[name], check_exact=True)
