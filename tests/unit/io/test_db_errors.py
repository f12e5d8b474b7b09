"""A store that cannot be opened is said in one line, with the exit code README "Exit codes" gives.

With real failing URLs: a SQLite file that does not exist (refused when read, never created;
``crmscore generate``'s write still creates it), a PostgreSQL database and a schema that do not
exist, a closed port, a missing DBAPI driver and an unknown dialect; a password in the URL is
never shown. The model store: ``score``/``promote``/``rollback``/``export`` on a missing
tracking database say "run crmscore train first" and create nothing; promoting a version that
does not exist lists the versions that do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crmscore.config import TrackingConfig
from crmscore.io.crm import StoreError, create_engine, describe_db_error, read_sql_tables, write_sql_tables
from helpers import run_cli_captured

SECRET = "s3cret-canary"  # a password in a URL: must never appear in a message
PG_BASE = "postgresql+psycopg://postgres"


def _url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _read(url: str, schema: str | None = None) -> None:
    engine = create_engine(url)
    try:
        read_sql_tables(engine, {"customers": "customers"}, schema)
    finally:
        engine.dispose()


def test_missing_sqlite_file_is_data_not_found_and_is_not_created(tmp_path):
    db = tmp_path / "missing" / "nope.sqlite"
    with pytest.raises(StoreError) as info:
        _read(f"sqlite:///{db}")
    assert info.value.exit_code == 3
    assert str(info.value) == (
        f"the CRM database file {db} does not exist: check data.crm_url or CRMSCORE_CRM_URL, "
        "or run crmscore generate"
    )
    assert not db.exists() and not db.parent.exists()  # neither the file nor its folder


def test_a_write_still_creates_the_sqlite_file_and_its_folder(tmp_path):
    db = tmp_path / "new" / "crm.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    write_sql_tables(engine, {"customers": pd.DataFrame({"customer_id": ["C1"]})})
    engine.dispose()
    assert db.is_file()
    tables, errors = read_sql_tables(create_engine(f"sqlite:///{db}"), {"customers": "customers"})
    assert list(tables["customers"]["customer_id"]) == ["C1"] and not errors


def test_cli_validate_on_a_missing_sqlite_file_exits_3_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRMSCORE_CRM_URL", "sqlite:///nope.sqlite")
    code, text = run_cli_captured(["validate"], monkeypatch)
    assert code == 3
    assert "the CRM database file nope.sqlite does not exist" in text and "Traceback" not in text
    assert not (tmp_path / "nope.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "module", "install"),
    [
        (f"mysql://bob:{SECRET}@db.example/crm", "MySQLdb", "pip install mysqlclient"),
        (f"postgresql+psycopg2://bob:{SECRET}@db.example/crm", "psycopg2", "pip install psycopg2-binary"),
    ],
)
def test_missing_driver_says_what_to_install(url, module, install):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(StoreError) as info:
        create_engine(url)
    assert info.value.exit_code == 2
    assert install in str(info.value) and SECRET not in str(info.value)


def test_unknown_dialect_is_a_configuration_error():
    with pytest.raises(StoreError) as info:
        create_engine(f"nosuchdb://bob:{SECRET}@h/crm")
    assert info.value.exit_code == 2
    assert "unknown database kind 'nosuchdb'" in str(info.value) and SECRET not in str(info.value)


def test_describe_db_error_names_a_refused_login_without_the_password():
    url = f"postgresql+psycopg://bob:{SECRET}@db.example:5433/crm"
    exc = sa.exc.OperationalError(
        "connect", {}, Exception('FATAL:  password authentication failed for user "bob"')
    )
    message = describe_db_error(exc, url)
    assert "refused the login of user 'bob'" in message and "db.example:5433" in message
    assert SECRET not in message and "***" in message


def test_postgres_database_that_does_not_exist_is_named(pg_engine):
    url = f"{PG_BASE}:{SECRET}@{pg_engine.url.host}:{pg_engine.url.port or 5432}/does_not_exist"
    with pytest.raises(StoreError) as info:
        _read(url)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "the database 'does_not_exist' does not exist" in message and "createdb does_not_exist" in message
    assert SECRET not in message and "\n" not in message


def test_postgres_server_that_does_not_answer(pg_engine):
    with pytest.raises(StoreError) as info:
        _read(f"{PG_BASE}:{SECRET}@127.0.0.1:1/test")
    assert info.value.exit_code == 2
    assert "the database server 127.0.0.1:1 does not answer" in str(info.value)
    assert SECRET not in str(info.value)


def test_postgres_schema_that_does_not_exist_is_named(pg_engine):
    with pytest.raises(StoreError) as info:
        _read(_url_of(pg_engine), schema="no_such_schema_x")
    assert info.value.exit_code == 3
    assert "the schema 'no_such_schema_x' (data.db_schema) does not exist" in str(info.value)


def test_postgres_existing_schema_reads(pg_engine, pg_schema):
    engine = create_engine(_url_of(pg_engine))
    write_sql_tables(engine, {"customers": pd.DataFrame({"customer_id": ["C1"]})}, schema=pg_schema)
    tables, _ = read_sql_tables(engine, {"customers": "customers"}, pg_schema)
    engine.dispose()
    assert list(tables["customers"]["customer_id"]) == ["C1"]


# ------------------------------------------------------------------------------- model store


def test_reading_a_missing_model_store_says_train_first_and_creates_nothing(tmp_path, monkeypatch):
    from crmscore.tracking import TrackingSession

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns" / "mlflow.db"
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{store}", artifact_location=tmp_path / "art")
    with pytest.raises(StoreError) as info:
        TrackingSession(cfg, must_exist=True)
    assert info.value.exit_code == 1
    message = str(info.value)
    assert message.startswith(f"no model store at {store}") and "run crmscore train first" in message
    assert not store.parent.exists()


def test_promote_and_rollback_name_the_versions_that_exist(tmp_path, monkeypatch):
    from crmscore.tracking import TrackingSession, promote, registered_versions, rollback

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "art"
    )
    with TrackingSession(cfg) as ts:
        client = ts.client
        with pytest.raises(ValueError, match=r"m is not a registered model: run crmscore train first"):
            rollback(client, "m")
        client.create_registered_model("m")
        for _ in range(2):
            client.create_model_version("m", source=Path(tmp_path).as_uri())
        assert registered_versions(client, "m") == [1, 2]
        promote(client, "m", 2, "test")
        with pytest.raises(ValueError) as info:
            promote(client, "m", 7, "test")
        assert str(info.value) == "m has no version 7 (registered versions: 1, 2; @champion v2)"
        with pytest.raises(
            ValueError, match=r"no previous champion .*registered versions: 1, 2; @champion v2"
        ):
            rollback(client, "m")
