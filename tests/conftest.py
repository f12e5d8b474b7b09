"""Shared fixtures. PostgreSQL tests run for real where a server answers; in CI
(``CI`` or ``CRMSCORE_REQUIRE_POSTGRES`` set) an unreachable server is a failure, never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# idle OpenMP threads sleep instead of spinning (as the CLI sets it): pytest -n 2 runs two
# LightGBM processes on two cores; read when the OpenMP runtime loads, so set before any import
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PG_URL = os.environ.get("CRMSCORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_required() -> bool:
    return os.environ.get("CRMSCORE_REQUIRE_POSTGRES", "") not in ("", "0") or os.environ.get(
        "CI", ""
    ) not in (
        "",
        "0",
        "false",
    )


@pytest.fixture(scope="session")
def pg_engine():
    """A SQLAlchemy engine on the test PostgreSQL database."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        engine.dispose()
        if _postgres_required():
            pytest.fail(f"PostgreSQL is required here but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(pg_engine) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{name}"'))
    yield name
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{name}" cascade'))
