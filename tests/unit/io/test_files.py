"""Folder readers (crmscore.io.files: CSV, Parquet): the same canonical tables back; empty files,
duplicate column names and bytes that do not decode each handled as documented."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmscore.io.files import BAD_ENCODING, BadEncoding, find_table_file, read_folder, write_folder
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


# ------------------------------------------------------------------ empty files, column names


def _csv(folder, name: str, data: bytes):
    path = folder / f"{name}.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        (b"customer_id,created_at\n", ["customer_id", "created_at"]),  # a header only
        (b"customer_id,created_at\r\n\r\n  \r\n", ["customer_id", "created_at"]),  # and blank lines
        (b"", []),  # 0 bytes
        (b"\n\n", []),  # blank lines only
    ],
)
def test_empty_csv_files_read_as_empty_frames(tmp_path, data, columns):
    _csv(tmp_path, "customers", data)
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert errors == {}
    assert len(raw["customers"]) == 0 and list(raw["customers"].columns) == columns


def test_empty_parquet_files_read_as_empty_frames(tmp_path):
    pd.DataFrame({"lead_id": pd.Series([], dtype=str)}).to_parquet(tmp_path / "leads.parquet")
    (tmp_path / "customers.parquet").write_bytes(b"")
    raw, errors = read_folder(tmp_path, {"leads": "leads", "customers": "customers"})
    assert errors == {}
    assert len(raw["leads"]) == 0 and list(raw["leads"].columns) == ["lead_id"]
    assert len(raw["customers"]) == 0 and list(raw["customers"].columns) == []


def test_duplicate_csv_header_is_an_error_naming_the_names(tmp_path):
    _csv(tmp_path, "customers", b"customer_id,owner,customer_id,owner,created_at\nC1,a,C1,b,2024-01-01\n")
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert "customers" not in raw
    assert "duplicate column name(s) 'customer_id', 'owner'" in errors["customers"]
    assert "customers.csv" in errors["customers"]


def test_a_header_naming_x_and_x_dot_1_is_not_a_duplicate(tmp_path):
    # what pandas renames a copy to is a legitimate name of its own: the raw header decides
    _csv(tmp_path, "customers", b"customer_id,customer_id.1\nC1,C2\n")
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert errors == {} and list(raw["customers"].columns) == ["customer_id", "customer_id.1"]


def test_duplicate_parquet_columns_are_an_error_naming_them(tmp_path):
    table = pa.table([pa.array(["C1"]), pa.array(["C1"])], names=["customer_id", "customer_id"])
    pq.write_table(table, tmp_path / "customers.parquet")
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert "customers" not in raw
    assert "duplicate column name(s) 'customer_id'" in errors["customers"]


# ------------------------------------------------------------------ encoding


@pytest.mark.parametrize(
    ("data", "rows", "lines", "values"),
    [
        pytest.param(
            b"customer_id,name\nC1,Jos\xe9\nC2,Bob\nC3,Ann\xff\n",
            (0, 2),
            (2, 4),
            ["Jos\\xe9", "Bob", "Ann\\xff"],
            id="one-line-records",
        ),
        pytest.param(
            b'customer_id,name\nC1,"two\nlines"\nC2,"x\n\xe9y"\nC3,ok\n',
            (1,),
            (5,),
            ["two\nlines", "x\n\\xe9y", "ok"],
            id="quoted-line-breaks",
        ),
        pytest.param(
            b'customer_id,name\nC1,27" screen\nC2,B\xe9\nC3,ok',
            (1,),
            (3,),
            ['27" screen', "B\\xe9", "ok"],
            id="stray-quote-no-final-newline",
        ),
        pytest.param(
            b"\xef\xbb\xbfcustomer_id,name\r\n\r\nC1,ok\r\n  \r\nC2,b\xe9\r\n",
            (1,),
            (5,),
            ["ok", "b\\xe9"],
            id="bom-crlf-blank-lines",
        ),
    ],
)
def test_a_bad_byte_marks_its_row_and_keeps_the_others(tmp_path, data, rows, lines, values):
    _csv(tmp_path, "customers", data)
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert errors == {}
    frame = raw["customers"]
    assert list(frame.columns) == ["customer_id", "name"]
    assert frame["name"].tolist() == values  # every row read; the bad byte kept as an escape
    assert BadEncoding.of(frame) == BadEncoding(rows, lines, "utf-8", "customers.csv")


def test_a_bad_byte_in_a_gzipped_csv(tmp_path):
    (tmp_path / "customers.csv.gz").write_bytes(gzip.compress(b"customer_id,name\nC1,a\nC2,\xe9\n"))
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert errors == {} and BadEncoding.of(raw["customers"]).rows == (1,)
    json.dumps(raw["customers"].attrs)  # plain values: pyarrow keeps attrs as JSON, silently


def test_a_good_file_has_no_bad_encoding_mark(tmp_path):
    _csv(tmp_path, "customers", "customer_id,name\nC1,José\n".encode())
    raw, _ = read_folder(tmp_path, {"customers": "customers"})
    assert raw["customers"]["name"].tolist() == ["José"] and BAD_ENCODING not in raw["customers"].attrs


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"customer_id,n\xe9\nC1,x\n", "the header (line 1) has a byte that does not decode as utf-8"),
        # quoted line breaks and a stray quote: records cannot be told apart
        (
            b'customer_id,name\nC1,27" x\nC2,"a\nb"\nC3,\xe9\n',
            "on line(s) 5, and its rows cannot be told apart",
        ),
    ],
)
def test_bad_bytes_that_cannot_be_placed_make_the_file_unreadable(tmp_path, data, message):
    _csv(tmp_path, "customers", data)
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert "customers" not in raw
    assert message in errors["customers"] and "data.tables.customers.encoding" in errors["customers"]


def test_configured_cp1252_decodes_the_file(tmp_path):
    _csv(tmp_path, "customers", "customer_id,name\nC1,José\nC2,€uro\n".encode("cp1252"))
    raw, errors = read_folder(tmp_path, {"customers": "customers"}, encodings={"customers": "cp1252"})
    assert errors == {}
    assert raw["customers"]["name"].tolist() == ["José", "€uro"]
    assert BAD_ENCODING not in raw["customers"].attrs
    # the same bytes as UTF-8: both rows set aside, neither lost
    raw, _ = read_folder(tmp_path, {"customers": "customers"})
    assert BadEncoding.of(raw["customers"]).rows == (0, 1)


def test_bad_bytes_across_decoding_blocks(tmp_path, monkeypatch):
    from crmscore.io import files

    monkeypatch.setattr(files, "_DECODE_BLOCK", 8)  # many blocks; valid two-byte characters near their ends
    good = ["Zoë", "Ünal", "plain", "Łukasz", "ok"]
    data = b"customer_id,name\n"
    for i, name in enumerate(good):
        data += f"C{i},{name}\n".encode() + f"X{i},b".encode() + b"\xe9\xff" + "d€\n".encode()
    _csv(tmp_path, "customers", data)
    raw, errors = read_folder(tmp_path, {"customers": "customers"})
    assert errors == {}
    frame = raw["customers"]
    assert frame["name"].tolist()[::2] == good  # every good row decoded as written
    assert frame["name"].tolist()[1::2] == ["b\\xe9\\xffd€"] * 5
    assert BadEncoding.of(frame).rows == (1, 3, 5, 7, 9)
    assert BadEncoding.of(frame).lines == (3, 5, 7, 9, 11)
