"""Shared fixtures. PostgreSQL tests run for real where a server answers; in CI
(``CI`` or ``CRMSCORE_REQUIRE_POSTGRES`` set) an unreachable server is a failure, never a skip.

Layout (markers are added by folder, see :func:`pytest_collection_modifyitems`):

* ``tests/unit/``: one file per module of ``src/crmscore`` (``unit``);
* ``tests/integration/``: the CLI, whole pipelines, PostgreSQL and MLflow end to end
  (``integration``); the trained CRM they share lives in ``tests/projects.py`` (its fixtures
  imported by ``tests/integration/conftest.py`` and ``tests/reliability/conftest.py``);
* ``tests/oracle/``: published values, lifetimes equivalence, parameter recovery and
  property tests (``oracle``);
* ``tests/reliability/``: the probes of an attacker or an unlucky operator, end to end
  (``reliability``): each asserts that nothing was lost and nothing leaked.

Fixtures used by more than one folder (the CDNOW sample and its fit, a small validated CRM
with a CLV model) are session-scoped here; helpers shared by several files are in ``helpers.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# idle OpenMP threads sleep instead of spinning (as the CLI sets it): pytest -n 2 runs two
# LightGBM processes on two cores; read when the OpenMP runtime loads, so set before any import
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PG_URL = os.environ.get("CRMSCORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

TESTS = Path(__file__).resolve().parent
#: folder under tests/ -> marker given to every test in it
FOLDER_MARKERS = {
    "unit": "unit: tests of one module of src/crmscore (tests/unit/)",
    "integration": "integration: CLI, whole pipelines, PostgreSQL or MLflow end to end (tests/integration/)",
    "oracle": "oracle: published values, lifetimes equivalence, recovery and property tests (tests/oracle/)",
    "reliability": "reliability: attacks and accidents end to end (kill -9, tampering, canaries, truncated "
    "inputs, near-replays, stuck locks), each asserting nothing lost and nothing leaked (tests/reliability/)",
}


def pytest_configure(config: pytest.Config) -> None:
    # registered here unless pyproject.toml lists them, so --strict-markers accepts them either way
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, line in FOLDER_MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", line)


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so `-m unit` sees the folder markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except (ValueError, IndexError):
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


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


# -------------------------------------------------------------------------------------------
# lifetimes' CDNOW sample (unit/estimators/clv, unit/evaluation and oracle/test_clv_oracle.py)
# -------------------------------------------------------------------------------------------

CDNOW_CAL_END = "1997-09-30"
CDNOW_OBS_END = "1998-06-30"


@pytest.fixture(scope="session")
def cdnow_tx():
    from crmscore.estimators.clv import load_cdnow_sample

    return load_cdnow_sample()


@pytest.fixture(scope="session")
def cdnow_cal_holdout(cdnow_tx):
    """lifetimes' own calibration/holdout frame from the raw transactions, times in weeks."""
    from lifetimes.utils import calibration_and_holdout_data

    ch = calibration_and_holdout_data(
        cdnow_tx, "customer_id", "date", CDNOW_CAL_END, CDNOW_OBS_END, freq="D", monetary_value_col="amount"
    )
    for c in ("recency_cal", "T_cal", "duration_holdout"):
        ch[c] = ch[c] / 7.0
    return ch


@pytest.fixture(scope="session")
def cdnow_summary(cdnow_cal_holdout):
    s = cdnow_cal_holdout[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]]
    return s.set_axis(["frequency", "recency", "T", "monetary_value"], axis=1)


@pytest.fixture(scope="session")
def cdnow_model(cdnow_summary):
    """``ClvModel(time_unit="week")`` fitted on the CDNOW calibration period."""
    from crmscore.estimators.clv import ClvModel

    return ClvModel(time_unit="week").fit(cdnow_summary)


# -------------------------------------------------------------------------------------------
# a small validated synthetic CRM with a CLV model (unit/estimators/test_bundles.py and
# integration/test_registry_postgres.py)
# -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundle_data():
    """2,000 synthetic customers (seed 11, one lead each), validated at 2025-12-31."""
    from crmscore.config import Config
    from crmscore.ingest import synth
    from crmscore.ingest.validation import validate_tables

    crm = synth.generate(2000, seed=11, leads_per_customer=1)
    data, _ = validate_tables(crm.tables, Config(), as_of="2025-12-31", now="2026-01-01")
    return data


@pytest.fixture(scope="session")
def bundle_clv_model(bundle_data):
    """``(ClvModel, BTYD summary)`` fitted on :func:`bundle_data` (10 bootstrap draws)."""
    from crmscore.estimators.clv import ClvModel
    from crmscore.features.btyd import btyd_summary

    summary = btyd_summary(bundle_data.transactions, "2025-12-31", time_unit="week")
    return ClvModel(n_bootstrap=10).fit(summary), summary
