"""Every ingestion rule: each bad input gets its clear reason or problem, and nothing is lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crmscore.config import config_from_mapping
from crmscore.ingest.validation import validate_tables, write_quarantine

AS_OF, NOW = "2025-06-30", "2025-07-01T12:00:00Z"


def customers(**extra) -> pd.DataFrame:
    df = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "created_at": ["2024-01-01T00:00:00Z"] * 3})
    for k, v in extra.items():
        df[k] = v
    return df


def tx(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "transaction_id"])


GOOD_TS = "2025-01-01T10:00:00+00:00"


def run(raw, cfg=None, as_of=AS_OF, now=NOW):
    data, report = validate_tables(raw, cfg or config_from_mapping({}), as_of=as_of, now=now)
    for name, t in report.tables.items():  # exact accounting, always
        assert t.rows_in == t.rows_kept + t.rows_set_aside, name
        got = data.get(name)
        if got is not None:
            assert len(got) == t.rows_kept
            if t.rows_set_aside:
                assert len(report.quarantine[name]) == t.rows_set_aside
    return data, report


def reasons(report, table="transactions") -> dict[str, int]:
    return dict(report.tables[table].set_aside)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((None, GOOD_TS, "1", "a"), "null_id:customer_id"),
        (("  ", GOOD_TS, "1", "a"), "null_id:customer_id"),
        (("C1", None, "1", "a"), "null_required:ts"),
        (("C1", GOOD_TS, None, "a"), "null_required:amount"),
        (("C1", "31/12/2024", "1", "a"), "bad_type:ts"),
        (("C1", GOOD_TS, "12,50 EUR", "a"), "bad_type:amount"),
        (("C1", GOOD_TS, "inf", "a"), "non_finite:amount"),
        (("C1", GOOD_TS, "-Infinity", "a"), "non_finite:amount"),
        (("C1", GOOD_TS, "NaN", "a"), "non_finite:amount"),
        (("C1", "2025-01-01 10:00:00", "1", "a"), "naive_timestamp:ts"),
        (("C1", "2025-07-02T00:00:00Z", "1", "a"), "in_future"),
        (("C1", "2025-07-01T00:00:00Z", "1", "a"), "after_cutoff"),
        (("C9", GOOD_TS, "1", "a"), "unknown_customer"),
    ],
)
def test_each_row_rule(row, reason):
    good = ("C2", GOOD_TS, "5", "g")
    data, report = run({"customers": customers(), "transactions": tx([good, row])})
    assert report.usable
    assert reasons(report) == {reason: 1}
    assert data.transactions["transaction_id"].tolist() == ["g"]
    aside = report.quarantine["transactions"]
    assert aside["_reason"].tolist() == [reason]
    assert aside["_row"].tolist() == [1]
    assert aside["amount"].tolist() == [row[2]]  # the original value, not the coerced one


def test_cutoff_is_inclusive_of_the_as_of_day():
    last_second = ("C1", "2025-06-30T23:59:59Z", "1", "a")
    _data, report = run({"customers": customers(), "transactions": tx([last_second])})
    assert report.tables["transactions"].rows_kept == 1


def test_all_rules_at_once_reported_in_one_pass():
    rows = [
        ("C1", GOOD_TS, "1", "ok"),
        (None, GOOD_TS, "1", "x1"),
        ("C1", "garbage", "1", "x2"),
        ("C1", GOOD_TS, "abc", "x3"),
        ("C9", GOOD_TS, "1", "x4"),
        ("C1", "2030-01-01T00:00:00Z", "1", "x5"),
    ]
    tickets = pd.DataFrame(
        {"ticket_id": ["K1", "K2"], "customer_id": ["C1", "C7"], "opened_at": [GOOD_TS, GOOD_TS]}
    )
    _data, report = run({"customers": customers(), "transactions": tx(rows), "support_tickets": tickets})
    assert reasons(report) == {
        "null_id:customer_id": 1,
        "bad_type:ts": 1,
        "bad_type:amount": 1,
        "unknown_customer": 1,
        "in_future": 1,
    }
    assert reasons(report, "support_tickets") == {"unknown_customer": 1}


def test_duplicate_transaction_ids_identical_keep_one_conflicting_set_all_aside():
    rows = [
        ("C1", GOOD_TS, "10", "T1"),
        ("C1", GOOD_TS, "10", "T1"),
        ("C1", GOOD_TS, "10", "T1"),
        ("C2", GOOD_TS, "7", "T2"),
        ("C2", GOOD_TS, "8", "T2"),
        ("C3", GOOD_TS, "1", None),
        ("C3", GOOD_TS, "1", None),  # no id: not a duplicate by rule
    ]
    data, report = run({"customers": customers(), "transactions": tx(rows)})
    assert reasons(report) == {"duplicate_identical": 2, "duplicate_conflict": 2}
    kept = data.transactions
    assert (kept["transaction_id"] == "T1").sum() == 1
    assert "T2" not in set(kept["transaction_id"].dropna())
    assert kept["transaction_id"].isna().sum() == 2


def test_duplicate_customers_conflict():
    cust = pd.DataFrame({"customer_id": ["C1", "C1", "C2"], "plan": ["a", "b", "c"]})
    data, report = run({"customers": cust, "transactions": tx([("C2", GOOD_TS, "1", "a")])})
    assert reasons(report, "customers") == {"duplicate_conflict": 2}
    assert data.customers["customer_id"].tolist() == ["C2"]


def test_missing_required_table_and_column_are_fatal_and_named():
    bad_tx = tx([("C1", GOOD_TS, "1", "a")]).drop(columns=["amount"])
    _, report = run({"transactions": bad_tx})
    msgs = [str(p) for p in report.problems]
    assert not report.usable
    assert "customers: required table missing" in msgs
    assert "transactions.amount: required column missing" in msgs
    assert reasons(report) == {"table_rejected": 1}


def test_mapped_column_missing_in_source_is_named():
    cfg = config_from_mapping({"data": {"tables": {"transactions": {"columns": {"ts": "InvoiceDate"}}}}})
    _, report = run({"customers": customers(), "transactions": tx([("C1", GOOD_TS, "1", "a")])}, cfg)
    assert any("InvoiceDate" in str(p) for p in report.problems)
    assert not report.usable


def test_naive_timestamps_need_a_source_zone_then_are_converted():
    rows = [("C1", "2025-01-01 10:00:00", "1", "a"), ("C2", "2025-03-30 02:30:00", "2", "b")]
    _, report = run({"customers": customers(), "transactions": tx(rows)})
    assert not report.usable
    assert any("source_timezone" in str(p) and p.column == "ts" for p in report.problems)

    cfg = config_from_mapping({"data": {"source_timezone": "Europe/Berlin"}})
    data, report = run({"customers": customers(), "transactions": tx(rows)}, cfg)
    # 2025-03-30 02:30 does not exist in Berlin (spring forward): set aside, not guessed.
    assert reasons(report) == {"bad_type:ts": 1}
    assert data.transactions["ts"].tolist() == [pd.Timestamp("2025-01-01 09:00:00", tz="UTC")]


def test_date_only_values_are_utc_days_and_offsets_are_converted():
    rows = [("C1", "2025-01-01", "1", "a"), ("C1", "2025-01-01T01:00:00-05:00", "1", "b")]
    data, report = run({"customers": customers(), "transactions": tx(rows)})
    assert report.rows_set_aside == 0
    assert data.transactions["ts"].tolist() == [
        pd.Timestamp("2025-01-01", tz="UTC"),
        pd.Timestamp("2025-01-01 06:00", tz="UTC"),
    ]


def test_unparsable_column_and_empty_result_are_fatal():
    rows = [("C1", "soon", "1", "a"), ("C1", "later", "1", "b")]
    _, report = run({"customers": customers(), "transactions": tx(rows)})
    assert not report.usable
    assert any("ISO 8601" in str(p) for p in report.problems)


def test_activities_of_unknown_leads_and_negative_spend():
    leads = pd.DataFrame({"lead_id": ["L1"], "created_at": [GOOD_TS], "source": ["web"]})
    acts = pd.DataFrame({"lead_id": ["L1", "L2"], "ts": [GOOD_TS, GOOD_TS], "activity": ["email", "call"]})
    spend = pd.DataFrame(
        {"period": ["2025-01-01", "2025-02-01"], "amount": ["100", "-5"], "channel": ["ads", "ads"]}
    )
    _, report = run(
        {
            "customers": customers(),
            "transactions": tx([("C1", GOOD_TS, "1", "a")]),
            "leads": leads,
            "lead_activities": acts,
            "marketing_spend": spend,
        }
    )
    assert reasons(report, "lead_activities") == {"unknown_lead": 1}
    assert reasons(report, "marketing_spend") == {"negative_amount": 1}


def test_attributes_typed_label_parsed_and_inputs_not_mutated():
    cust = customers(seats=["1", "2", "30"], region=["EU", "US", None], churn=["yes", "no", "maybe"])
    before = cust.copy()
    data, report = run({"customers": cust, "transactions": tx([("C1", GOOD_TS, "1", "a")])})
    pd.testing.assert_frame_equal(cust, before)
    assert reasons(report, "customers") == {"bad_type:churn": 1}
    c = data.customers
    assert c["seats"].dtype == float
    assert c["churn"].tolist() == [True, False]
    assert c["region"].tolist() == ["EU", "US"]


def test_optional_tables_absent_is_a_note_not_a_problem():
    _, report = run({"customers": customers(), "transactions": tx([("C1", GOOD_TS, "1", "a")])})
    assert report.usable and report.problems == []
    assert any(n.startswith("support_tickets: optional table absent") for n in report.notes)


def test_default_as_of_is_the_validation_day_and_is_stated():
    rows = [("C1", "2025-07-01T06:00:00Z", "1", "a"), ("C1", "2025-07-01T18:00:00Z", "1", "b")]
    _, report = run({"customers": customers(), "transactions": tx(rows)}, as_of=None, now=NOW)
    assert str(report.as_of.date()) == "2025-07-01"
    assert reasons(report) == {"in_future": 1}
    assert any("no as_of given" in n for n in report.notes)


def test_quarantine_files_and_report(tmp_path):
    rows = [("C1", GOOD_TS, "1", "a"), ("C9", GOOD_TS, "1", "b")]
    _, report = run({"customers": customers(), "transactions": tx(rows)})
    (tmp_path / "customers.csv").write_text("stale")
    paths = write_quarantine(report, tmp_path)
    assert {p.name for p in paths} == {"transactions.csv", "report.json"}
    assert not (tmp_path / "customers.csv").exists()
    aside = pd.read_csv(tmp_path / "transactions.csv")
    assert aside["_reason"].tolist() == ["unknown_customer"]
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["tables"]["transactions"] == {
        "rows_in": 2,
        "rows_kept": 1,
        "rows_set_aside": 1,
        "set_aside": {"unknown_customer": 1},
    }


def _big_tables(n_customers: int = 6000, per_customer: int = 3, sort: bool = True):
    """Enough rows for the sampled fast paths (shared strings, per-run parent lookup) to engage."""
    ids = [f"C{i:07d}" for i in range(n_customers)]
    cust = pd.DataFrame({"customer_id": ids, "created_at": [GOOD_TS] * n_customers})
    rows = [(c, GOOD_TS, str(k), f"T{i:06d}{k}") for i, c in enumerate(ids) for k in range(per_customer)]
    rows += [
        ("C9999999", GOOD_TS, "1", "TX1"),
        (" C0000001 ", GOOD_TS, "1", "TX2"),
        ("", GOOD_TS, "1", "TX3"),
    ]
    rows += [("C0000002", GOOD_TS, "5", "T0000020"), ("C0000003", GOOD_TS, "1", "TX4")]  # conflict, extra
    rows += [("C0000003", GOOD_TS, "1", "TX4")]
    t = tx(rows)
    if not sort:
        t = t.sample(frac=1.0, random_state=7).reset_index(drop=True)
    return cust, t


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("dtype", ["str", "object"])
def test_large_tables_same_rules_whatever_order_and_dtype(sort, dtype):
    cust, t = _big_tables(sort=sort)
    data, report = run({"customers": cust.astype(dtype), "transactions": t.astype(dtype)})
    assert reasons(report) == {
        "unknown_customer": 1,
        "null_id:customer_id": 1,
        "duplicate_conflict": 2,
        "duplicate_identical": 1,
    }
    kept = data.transactions
    assert kept["customer_id"].dtype == object and kept["transaction_id"].dtype == object
    assert "C0000001" in set(kept.loc[kept["transaction_id"] == "TX2", "customer_id"])
    assert set(kept["customer_id"]) <= set(data.customers["customer_id"])
    aside = report.quarantine["transactions"]
    assert sorted(aside["_row"].tolist()) == aside["_row"].tolist()
    assert set(aside["_reason"]) == set(reasons(report))


def test_arrow_and_object_text_give_identical_frames():
    cust, t = _big_tables(n_customers=100)
    t = t.assign(product=["  a ", "b", "", None, "\tc\n", "é "] * (len(t) // 6) + ["x"] * (len(t) % 6))
    a_data, a_report = run({"customers": cust.astype("str"), "transactions": t.astype("str")})
    o_data, o_report = run({"customers": cust.astype(object), "transactions": t.astype(object)})
    assert a_report.to_dict() == o_report.to_dict()
    for name in ("customers", "transactions"):
        pd.testing.assert_frame_equal(a_data.get(name), o_data.get(name))
    products = a_data.transactions["product"]
    assert products.dtype == object
    assert set(products.dropna()) <= {"a", "b", "c", "é", "x"}
    assert products.isna().sum() == o_data.transactions["product"].isna().sum()


def test_first_reason_wins_across_many_rules():
    rows = [
        (None, "garbage", "abc", "a"),  # null id first
        ("C1", "garbage", "abc", "b"),  # bad ts before bad amount
        ("C9", "2030-01-01T00:00:00Z", "1", "c"),  # in_future before unknown_customer
        ("C1", GOOD_TS, "1", "d"),
        ("C1", GOOD_TS, "1", "d"),  # duplicate_identical
    ]
    _, report = run({"customers": customers(), "transactions": tx(rows)})
    aside = report.quarantine["transactions"]
    assert aside["_reason"].tolist() == [
        "null_id:customer_id",
        "bad_type:ts",
        "in_future",
        "duplicate_identical",
    ]
    assert aside["_row"].tolist() == [0, 1, 2, 4]
    assert list(report.tables["transactions"].set_aside) == aside["_reason"].tolist()


def test_validation_report_digests_the_inputs_and_settings() -> None:
    from crmscore.config import Config
    from crmscore.ingest.synth import generate
    from crmscore.ingest.validation import validate_tables

    raw = generate(300, seed=1).tables
    _, a = validate_tables(
        {k: v.copy() for k, v in raw.items()}, Config(), as_of="2025-12-31", now="2026-01-01"
    )
    _, b = validate_tables(
        {k: v.copy() for k, v in raw.items()}, Config(), as_of="2025-12-31", now="2026-01-01"
    )
    assert a.input_digest == b.input_digest and len(a.input_digest["all"]) == 64
    assert a.to_dict()["input_digest_sha256"] == a.input_digest["all"]
    _, later = validate_tables(dict(raw), Config(), as_of="2025-12-30", now="2026-01-01")
    assert later.input_digest["all"] != a.input_digest["all"]  # the cutoff is part of it
    # a table's digest covers its rows known at the cutoff (crmscore.core.digest): the rows of
    # the day after it are as if absent
    tx = raw["transactions"]
    known = tx[tx["ts"] < pd.Timestamp("2025-12-31", tz="UTC")]
    assert 0 < len(known) < len(tx)
    _, trimmed = validate_tables(
        {**raw, "transactions": known}, Config(), as_of="2025-12-30", now="2026-01-01"
    )
    assert later.input_digest["transactions"] == trimmed.input_digest["transactions"]
    assert later.input_digest["transactions"] != a.input_digest["transactions"]
    zoned = Config(data={"source_timezone": "Europe/Berlin"})
    _, c = validate_tables(dict(raw), zoned, as_of="2025-12-31", now="2026-01-01")
    assert c.input_digest["all"] != a.input_digest["all"]  # so are the data settings
    tx = raw["transactions"].copy()
    tx.loc[0, "amount"] = tx.loc[0, "amount"] + 0.01
    _, d = validate_tables({**raw, "transactions": tx}, Config(), as_of="2025-12-31", now="2026-01-01")
    assert d.input_digest["transactions"] != a.input_digest["transactions"]
    assert d.input_digest["customers"] == a.input_digest["customers"]
