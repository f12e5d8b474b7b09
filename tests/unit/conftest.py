"""Fixtures shared by several unit test folders."""

from __future__ import annotations

import pytest

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.ingest.synth import generate


@pytest.fixture(scope="session")
def crm() -> CRMData:
    """1,500 synthetic customers (seed 7), validated at 2025-12-31.

    Used by core/test_ids.py and features/test_tables.py.
    """
    from crmscore.ingest.validation import validate_tables

    raw = generate(1500, seed=7).tables
    data, report = validate_tables(raw, Config(), as_of="2025-12-31", now="2026-01-01")
    assert report.usable
    return data
