"""Folder readers (crmscore.io.files: CSV, Parquet) give back the same canonical tables."""

from __future__ import annotations

import pytest

from crmscore.io.files import find_table_file, read_folder, write_folder
from helpers import TABLE_NAMES as NAMES
from helpers import assert_same_tables as _assert_same
from helpers import canonical_tables
from helpers import validate_raw as _validate


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_folder_round_trip(tmp_path, fmt):
    tables = canonical_tables()
    write_folder(tables, tmp_path, fmt)
    raw, errors = read_folder(tmp_path, NAMES, "auto")
    assert errors == {}
    if fmt == "csv":  # CSV is read as text, so coercion sees the original values
        assert all(raw["transactions"][c].dtype != float for c in ["amount"])
    _assert_same(_validate(raw), tables)


def test_folder_ambiguous_and_unreadable(tmp_path):
    tables = canonical_tables()
    write_folder({"customers": tables["customers"]}, tmp_path, "csv")
    write_folder({"customers": tables["customers"]}, tmp_path, "parquet")
    with pytest.raises(ValueError, match="ambiguous"):
        find_table_file(tmp_path, "customers")
    (tmp_path / "transactions.parquet").write_bytes(b"not parquet")
    raw, errors = read_folder(tmp_path, NAMES, "parquet")
    assert "customers" in raw
    assert "transactions" in errors and "cannot read" in errors["transactions"]
