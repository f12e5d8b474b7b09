"""The mapping proposed for a CRM export (crmscore.ingest.mapping): tables, columns, dates, currency."""

from __future__ import annotations

import pandas as pd
import pytest

from crmscore.ingest.mapping import (
    FileSample,
    detect_currency,
    detect_date_format,
    match_columns,
    normalise,
    propose,
)


def sample(name: str, rows: dict[str, list]) -> FileSample:
    frame = pd.DataFrame(rows)
    return FileSample(name, tuple(frame.columns), frame, f"{name}.csv")


# ------------------------------------------------------------------------------ columns


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("CustomerID", "customer_id"),
        ("customer", "customer_id"),
        ("cust_id", "customer_id"),
        ("Client ID", "customer_id"),
        ("InvoiceDate", "ts"),
        ("OrderDate", "ts"),
        ("date", "ts"),
        ("TIMESTAMP", "ts"),
        ("Total", "amount"),
        ("revenue", "amount"),
        ("Sales", "amount"),
        ("value", "amount"),
        ("InvoiceNo", "transaction_id"),
        ("order_id", "transaction_id"),
        ("Qty", "quantity"),
    ],
)
def test_transaction_synonyms_any_case(source, canonical):
    found = match_columns("transactions", [source])
    assert found == {canonical: source}


def test_customer_synonyms_and_normalised_names():
    found = match_columns("customers", ["Customer-ID", "signup_date", "Churn Date", "Plan"])
    assert found == {"customer_id": "Customer-ID", "created_at": "signup_date", "churned_at": "Churn Date"}
    assert normalise("Customer ID") == normalise("customer_id") == normalise("CUSTOMERID") == "customerid"


def test_each_source_column_maps_once_and_exact_names_win():
    # "created_at" is a synonym of transactions.ts, but a column named ts is the ts
    found = match_columns("transactions", ["customer_id", "created_at", "ts", "amount"])
    assert found["ts"] == "ts"
    assert list(found.values()).count("created_at") == 0
    assert len(set(found.values())) == len(found)


def test_values_that_are_not_dates_or_numbers_are_skipped():
    frame = pd.DataFrame(
        {"customer": ["a", "b"], "date": ["soon", "later"], "ts2": ["x", "y"], "value": ["high", "low"]}
    )
    found = match_columns("transactions", list(frame.columns), frame)
    assert "ts" not in found and "amount" not in found
    assert found["customer_id"] == "customer"


# ------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("values", "fmt", "dayfirst", "ambiguous"),
    [
        (["2024-03-01", "2024-12-31"], "ISO8601", None, False),
        (["2024-03-01T10:00:00+02:00"], "ISO8601", None, False),
        (["19970101", "19971231"], "%Y%m%d", None, False),
        ([19970101, 19971231], "%Y%m%d", None, False),
        (["01/02/2024", "25/02/2024"], "%d/%m/%Y", True, False),
        (["01/02/2024", "02/25/2024"], "%m/%d/%Y", False, False),
        (["12/1/2010 8:26", "1/13/2011 10:05"], "%m/%d/%Y %H:%M", False, False),
        (["13.01.2024 08:00:00"], "%d.%m.%Y %H:%M:%S", True, False),
        (["01/02/2024", "03/04/2024"], "%d/%m/%Y", True, True),
        (["01-02-24", "31-12-24"], "%d-%m-%y", True, False),
    ],
)
def test_date_formats(values, fmt, dayfirst, ambiguous):
    found = detect_date_format(values)
    assert found is not None
    assert (found.format, found.dayfirst, found.ambiguous) == (fmt, dayfirst, ambiguous)
    if not found.iso:  # the format reads every sample value
        parsed = pd.to_datetime(pd.Series([str(v) for v in values]), format=found.format, errors="coerce")
        assert parsed.notna().all()


@pytest.mark.parametrize(
    "values",
    [
        [],
        [None, ""],
        ["2024-03-01", "01/02/2024"],  # mixed layouts
        ["13/01/2024", "01/13/2024"],  # neither day first nor month first holds for both
        ["hello"],
        ["12345678"],  # 8 digits that are not a date
    ],
)
def test_no_date_format(values):
    assert detect_date_format(values) is None


def test_naive_and_timed_flags():
    assert detect_date_format(["2024-03-01"]).has_time is False
    assert detect_date_format(["2024-03-01 10:00"]).has_time is True
    assert detect_date_format(["2024-03-01T10:00Z"]).naive is False
    assert detect_date_format(["19970101"]).has_time is False


# ------------------------------------------------------------------------------ currency


def test_currency_from_column_symbol_name_or_nothing():
    frame = pd.DataFrame({"cur": ["usd", "USD", "EUR"], "amt": ["1", "2", "3"]})
    code, why = detect_currency({"currency": "cur", "amount": "amt"}, frame)
    assert code == "USD" and "also EUR" in why
    code, _ = detect_currency({"amount": "amt"}, pd.DataFrame({"amt": ["€12.00", "€3.10"]}))
    assert code == "EUR"
    code, _ = detect_currency({"amount": "amt"}, pd.DataFrame({"amt": ["12.00 GBP"]}))
    assert code == "GBP"
    code, _ = detect_currency({"amount": "dollar_value"}, pd.DataFrame({"dollar_value": ["1.5"]}))
    assert code == "USD"
    assert detect_currency({"amount": "amt"}, pd.DataFrame({"amt": ["1.5"]}))[0] is None


# ------------------------------------------------------------------------------ proposals


def test_cdnow_like_single_table_export():
    cdnow = sample(
        "cdnow",
        {
            "CustomerID": ["00001", "00002", "00002"],
            "date": ["19970101", "19970112", "19970325"],
            "quantity": ["1", "1", "5"],
            "amount": ["11.77", "12.00", "77.00"],
        },
    )
    p = propose([cdnow])
    assert list(p.tables) == ["transactions"]
    t = p.tables["transactions"]
    assert t.columns == {
        "customer_id": "CustomerID",
        "ts": "date",
        "amount": "amount",
        "quantity": "quantity",
    }
    assert t.missing == () and t.unmapped == ()
    assert t.date_formats["ts"].format == "%Y%m%d"
    # no customers table: the rest of crmscore knows customers from their transactions
    assert p.required_tables == ("transactions",)
    assert p.models == ("churn", "clv")
    assert p.churn_definition == "inactivity"
    assert not p.needs_timezone  # calendar days


def test_renamed_crm_with_labels_and_unmappable_columns():
    customers = sample(
        "Clients",
        {
            "Client ID": ["c1", "c2"],
            "Signed Up": ["2024-01-01", "2024-02-01"],
            "Churn": ["Yes", "No"],
            "Plan": ["pro", "basic"],
        },
    )
    orders = sample(
        "orders",
        {
            "InvoiceNo": ["i1", "i2"],
            "cust_id": ["c1", "c2"],
            "OrderDate": ["25/01/2024", "02/02/2024"],
            "Total": ["10.5", "3"],
            "Currency": ["GBP", "GBP"],
            "Warehouse": ["north", "south"],
        },
    )
    leads = sample(
        "prospects",
        {"Lead ID": ["l1"], "Created": ["2024-01-01"], "Won": ["true"], "Source": ["web"]},
    )
    notes = sample("notes", {"text": ["call back"], "author": ["ann"]})
    p = propose([customers, orders, leads, notes])
    assert set(p.tables) == {"customers", "transactions", "leads"}
    assert p.tables["customers"].columns == {"customer_id": "Client ID", "created_at": "Signed Up"}
    assert p.tables["customers"].unmapped == ("Churn", "Plan")  # kept as attributes
    tx = p.tables["transactions"]
    assert tx.columns == {
        "customer_id": "cust_id",
        "ts": "OrderDate",
        "amount": "Total",
        "transaction_id": "InvoiceNo",
        "currency": "Currency",
    }
    assert tx.unmapped == ("Warehouse",)
    assert (tx.date_formats["ts"].format, tx.date_formats["ts"].dayfirst) == ("%d/%m/%Y", True)
    assert p.currency == "GBP"
    assert p.unassigned == ("notes.csv",)
    assert (p.churn_definition, p.churn_label, p.leads_label) == ("label", "Churn", "Won")
    assert p.models == ("churn", "leads", "clv")
    assert p.required_tables == ("customers", "transactions")


def test_a_table_named_by_its_file_with_a_missing_column_is_reported():
    retail = sample(
        "transactions",
        {
            "InvoiceNo": ["1"],
            "StockCode": ["A"],
            "Quantity": ["6"],
            "InvoiceDate": ["12/1/2010 8:26"],
            "UnitPrice": ["2.55"],
            "CustomerID": ["17850"],
            "Country": ["United Kingdom"],
        },
    )
    p = propose([retail])
    t = p.tables["transactions"]
    assert t.missing == ("amount",)
    assert any("UnitPrice × Quantity" in h for h in t.hints)
    assert "Country" in t.unmapped and "UnitPrice" in t.unmapped
    assert any("amount not found" in w for w in p.warnings)
    assert "clv" not in p.models and "churn" not in p.models
    assert p.needs_timezone  # times of day without an offset


def test_ambiguous_day_month_is_a_warning():
    p = propose([sample("orders", {"customer": ["a"], "date": ["01/02/2024"], "amount": ["1"]})])
    assert p.tables["transactions"].date_formats["ts"].ambiguous
    assert any("day from month" in w for w in p.warnings)


def test_nothing_recognisable():
    p = propose([sample("misc", {"foo": ["1"], "bar": ["2"]})])
    assert p.tables == {} and p.unassigned == ("misc.csv",) and p.models == ()
    assert p.warnings


def test_a_repeating_key_is_not_mapped_as_the_key():
    lines = sample(
        "orders",
        {
            "InvoiceNo": ["536365", "536365", "536366"],
            "CustomerID": ["17850", "17850", "13047"],
            "InvoiceDate": ["2010-12-01", "2010-12-01", "2010-12-02"],
            "Amount": ["15.30", "20.34", "11.10"],
        },
    )
    t = propose([lines]).tables["transactions"]
    assert "transaction_id" not in t.columns and "InvoiceNo" in t.unmapped
    assert any("'InvoiceNo' repeats" in h for h in t.hints)
    # a file whose customer ids repeat is not a customers table
    assert "customer_id" not in match_columns("customers", list(lines.columns), lines.rows)
    assert match_columns("customers", list(lines.columns))["customer_id"] == "CustomerID"  # names alone
