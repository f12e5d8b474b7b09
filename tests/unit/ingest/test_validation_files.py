"""Table-level rules of ingestion for what files and queries give: empty tables, duplicate
column names, rows whose bytes do not decode (crmscore.ingest.validation, crmscore.io.files)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from crmscore.config import config_from_mapping
from crmscore.ingest.validation import load_validated, validate_tables, write_quarantine
from crmscore.io.files import read_folder

AS_OF, NOW = "2025-06-30", "2025-07-01T12:00:00Z"
GOOD_TS = "2025-01-01T10:00:00+00:00"


def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1", "C2"], "created_at": ["2024-01-01T00:00:00Z"] * 2})


def transactions() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1", "C2"], "ts": [GOOD_TS] * 2, "amount": ["5", "7"]})


def run(raw, data_cfg=None):
    data, report = validate_tables(raw, config_from_mapping({"data": data_cfg or {}}), as_of=AS_OF, now=NOW)
    for name, t in report.tables.items():  # exact accounting, always
        assert t.rows_in == t.rows_kept + t.rows_set_aside, name
    return data, report


def fatal(report) -> list[str]:
    return [str(p) for p in report.problems if p.fatal]


# ------------------------------------------------------------------ empty tables


def test_header_only_required_table_is_unusable_naming_it():
    _, report = run({"customers": customers(), "transactions": transactions().head(0)})
    assert not report.usable
    assert fatal(report) == [
        "transactions: the table has no rows: a required table (data.required_tables) needs at least one "
        "row; check the export"
    ]


def test_an_empty_required_file_gives_one_problem_not_one_per_column():
    _, report = run({"customers": pd.DataFrame(), "transactions": transactions()}, {"source": "folder"})
    assert not report.usable
    assert fatal(report) == [
        "customers: the file is empty (no header, no rows): a required table (data.required_tables) "
        "needs at least one row; check the export"
    ]
    assert report.tables["customers"].rows_in == 0


def test_a_table_required_by_config_is_checked_the_same_way():
    raw = {"customers": customers(), "transactions": transactions(), "leads": pd.DataFrame({"lead_id": []})}
    _, report = run(raw, {"required_tables": ["customers", "transactions", "leads"]})
    assert not report.usable and fatal(report)[0].startswith("leads: the table has no rows")


@pytest.mark.parametrize(
    ("source", "what"), [("folder", "file"), ("crm", "table")], ids=["file", "sql-table"]
)
@pytest.mark.parametrize(
    "empty",
    [pd.DataFrame(), pd.DataFrame({"lead_id": [], "created_at": []}, dtype=str)],
    ids=["no-columns", "header-only"],
)
def test_an_empty_optional_table_is_treated_as_absent_with_a_note(source, what, empty):
    raw = {"customers": customers(), "transactions": transactions(), "leads": empty}
    data, report = run(raw, {"source": source})
    assert report.usable and report.problems == []
    assert data.leads is None and "leads" not in report.tables
    assert f"leads: the {what} has no rows: treated as absent" in report.notes


def test_an_empty_optional_parent_leaves_its_children_unchecked_with_a_note():
    acts = pd.DataFrame({"lead_id": ["L1"], "ts": [GOOD_TS], "activity": ["call"]})
    raw = {"customers": customers(), "transactions": transactions(), "leads": pd.DataFrame()}
    data, report = run({**raw, "lead_activities": acts})
    assert report.usable and len(data.lead_activities) == 1
    assert "lead_activities: no leads table; lead_id was not checked against it" in report.notes


# ------------------------------------------------------------------ duplicate column names


def test_duplicate_names_in_a_sql_query_result_are_a_table_error():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE c (customer_id TEXT, created_at TEXT)")
    con.execute("INSERT INTO c VALUES ('C1', '2024-01-01T00:00:00Z')")
    frame = pd.read_sql_query("SELECT customer_id, created_at, customer_id FROM c", con)
    con.close()
    assert list(frame.columns) == ["customer_id", "created_at", "customer_id"]  # pandas keeps both
    _, report = run({"customers": frame, "transactions": transactions()})
    assert not report.usable
    assert (
        "customers.customer_id: the source has 2 columns named 'customer_id': name each column once"
        in fatal(report)
    )
    assert report.tables["customers"].set_aside == {"table_rejected": 1}


def test_two_source_columns_mapped_onto_one_name_are_a_table_error():
    # CustID is mapped onto customer_id, and the source has a customer_id column as well
    frame = customers().assign(CustID=["X1", "X2"])
    _, report = run(
        {"customers": frame, "transactions": transactions()},
        {"tables": {"customers": {"columns": {"customer_id": "CustID"}}}},
    )
    assert not report.usable
    (problem,) = fatal(report)
    assert problem.startswith(
        "customers.customer_id: source columns ['customer_id', 'CustID'] would all be named"
    )


def test_two_names_mapped_onto_one_source_column_are_a_table_error():
    frame = customers().rename(columns={"customer_id": "Key"})
    _, report = run(
        {"customers": frame, "transactions": transactions()},
        {"tables": {"customers": {"columns": {"customer_id": "Key", "owner": "Key"}}}},
    )
    assert fatal(report) == [
        "customers: data.tables.customers.columns maps ['customer_id', 'owner'] all onto source column 'Key'"
    ]


def test_a_source_column_renamed_away_frees_its_name():
    frame = customers().assign(CustID=["X1", "X2"])  # customer_id → legacy_id, CustID → customer_id
    data, report = run(
        {"customers": frame, "transactions": transactions().assign(customer_id=["X1", "X2"])},
        {"tables": {"customers": {"columns": {"customer_id": "CustID", "legacy_id": "customer_id"}}}},
    )
    assert report.usable, report.problems
    assert data.customers["customer_id"].tolist() == ["X1", "X2"]


# ------------------------------------------------------------------ encoding


def _write(folder, name: str, data: bytes) -> None:
    (folder / f"{name}.csv").write_bytes(data)


def test_a_bad_byte_sets_its_row_aside_and_keeps_the_rest(tmp_path):
    _write(
        tmp_path,
        "customers",
        b"customer_id,created_at,segment\n"
        b"C1,2024-01-01T00:00:00Z,a\nC2,2024-01-01T00:00:00Z,Gro\xdf\nC3,2024-01-01T00:00:00Z,c\n",
    )
    _write(tmp_path, "transactions", f"customer_id,ts,amount\nC1,{GOOD_TS},5\nC2,{GOOD_TS},7\n".encode())
    names = {"customers": "customers", "transactions": "transactions"}
    raw, errors = read_folder(tmp_path, names)
    data, report = validate_tables(raw, config_from_mapping({}), AS_OF, NOW, errors)
    assert report.usable
    t = report.tables["customers"]
    assert (t.rows_in, t.rows_kept, dict(t.set_aside)) == (3, 2, {"bad_encoding": 1})
    assert data.customers["customer_id"].tolist() == ["C1", "C3"]
    aside = report.quarantine["customers"]
    assert aside[["_reason", "_row", "customer_id"]].values.tolist() == [["bad_encoding", 1, "C2"]]
    assert aside["segment"].tolist() == ["Gro\\xdf"]  # the byte shown, not dropped
    assert (
        "customers: 1 row(s) set aside as bad_encoding: bytes that do not decode as utf-8 on line(s) 3 of "
        "customers.csv; if the file is in another encoding, set data.tables.customers.encoding"
    ) in report.notes
    # the customer set aside takes its purchases with it: counted, not lost
    assert dict(report.tables["transactions"].set_aside) == {"unknown_customer": 1}
    paths = write_quarantine(report, tmp_path / "q")
    assert (tmp_path / "q" / "customers.csv") in paths


def test_the_configured_encoding_reads_a_cp1252_file(tmp_path):
    folder = tmp_path / "crm"
    folder.mkdir()
    _write(
        folder,
        "customers",
        "customer_id,created_at,city\nC1,2024-01-01,Zürich\nC2,2024-01-01,Köln\n".encode("cp1252"),
    )
    _write(folder, "transactions", f"customer_id,ts,amount\nC1,{GOOD_TS},5\n".encode())
    data_cfg = {"source": "folder", "folder": str(folder)}
    cfg = config_from_mapping({"data": {**data_cfg, "tables": {"customers": {"encoding": "cp1252"}}}})
    data, report = load_validated(cfg, as_of=AS_OF, now=NOW)
    assert report.usable and report.rows_set_aside == 0
    assert data.customers["city"].tolist() == ["Zürich", "Köln"]
    # read as UTF-8 instead: both rows with an umlaut set aside, none lost
    _, as_utf8 = load_validated(config_from_mapping({"data": data_cfg}), as_of=AS_OF, now=NOW)
    assert dict(as_utf8.tables["customers"].set_aside) == {"bad_encoding": 2}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_naming_a_column_twice_makes_the_data_unusable(tmp_path, fmt):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "csv":
        _write(tmp_path, "customers", b"customer_id,created_at,customer_id\nC1,2024-01-01,C1\n")
    else:
        names = ["customer_id", "created_at", "customer_id"]
        pq.write_table(pa.table([pa.array(["C1"]), pa.array(["2024-01-01"]), pa.array(["C1"])], names=names),
                       tmp_path / "customers.parquet")  # fmt: skip
    _write(tmp_path, "transactions", f"customer_id,ts,amount\nC1,{GOOD_TS},5\n".encode())
    cfg = config_from_mapping({"data": {"source": "folder", "folder": str(tmp_path)}})
    _, report = load_validated(cfg, as_of=AS_OF, now=NOW)
    assert not report.usable
    assert (
        f"customers: cannot read customers.{fmt}: duplicate column name(s) 'customer_id'" in fatal(report)[0]
    )
