"""Dates as users have them: per-column formats, dayfirst, YYYYMMDD and date-only calendar days."""

from __future__ import annotations

import pandas as pd
import pytest

from crmscore.config import ConfigError, config_from_mapping
from crmscore.ingest.coerce import is_yyyymmdd
from crmscore.ingest.validation import newest_event, validate_tables

AS_OF, NOW = "1998-06-30", "1998-07-01T12:00:00Z"
UTC_DAY = pd.Timestamp("1997-01-01", tz="UTC")


def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1", "C2"], "created_at": ["1996-12-01", "1996-12-02"]})


def tx(ts: list) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame({"customer_id": ["C1"] * n, "ts": ts, "amount": [1.0] * n})


def run(ts: list, tables: dict | None = None, **data):
    cfg = config_from_mapping({"data": {**data, "tables": {"transactions": tables or {}}}})
    data_, report = validate_tables({"customers": customers(), "transactions": tx(ts)}, cfg, AS_OF, NOW)
    t = report.tables["transactions"]
    assert t.rows_in == t.rows_kept + t.rows_set_aside  # exact accounting
    return data_, report


def kept(data) -> list[pd.Timestamp]:
    return data.transactions["ts"].tolist()


def set_aside(report) -> dict[str, int]:
    return dict(report.tables["transactions"].set_aside)


def test_a_format_reads_its_dates_and_sets_aside_what_does_not_match():
    ts = ["01/02/1998", "31/12/1997", "1998-01-05", "12/31/1997"]
    data, report = run(ts, {"formats": {"ts": "%d/%m/%Y"}})
    assert kept(data) == [pd.Timestamp("1998-02-01", tz="UTC"), pd.Timestamp("1997-12-31", tz="UTC")]
    assert set_aside(report) == {"bad_type:ts": 2}  # ISO and month-first are not guessed
    assert report.usable
    assert list(report.quarantine["transactions"]["ts"]) == ["1998-01-05", "12/31/1997"]  # as read
    assert any("2 values do not match the format '%d/%m/%Y'" in n for n in report.notes)


def test_a_format_with_a_time_is_naive_and_needs_the_source_zone():
    ts = ["01/02/1998 10:30", "02/02/1998 11:00"]
    _, report = run(ts, {"formats": {"ts": "%d/%m/%Y %H:%M"}})
    assert set_aside(report) == {"naive_timestamp:ts": 2} and not report.usable
    data, report = run(ts, {"formats": {"ts": "%d/%m/%Y %H:%M"}}, source_timezone="Europe/Berlin")
    assert kept(data) == [
        pd.Timestamp("1998-02-01 09:30", tz="UTC"),
        pd.Timestamp("1998-02-02 10:00", tz="UTC"),
    ]


def test_a_format_no_value_matches_is_a_table_problem_naming_it():
    _, report = run(["1998-01-05", "1998-01-06"], {"formats": {"ts": "%d/%m/%Y"}})
    assert not report.usable
    assert any("with the format '%d/%m/%Y'" in str(p) and p.column == "ts" for p in report.problems)


@pytest.mark.parametrize(
    ("dayfirst", "expected"),
    [(True, pd.Timestamp("1998-02-01", tz="UTC")), (False, pd.Timestamp("1998-01-02", tz="UTC"))],
)
def test_dayfirst_decides_the_order_of_ambiguous_dates(dayfirst, expected):
    data, report = run(["01/02/1998", "1998-01-03"], {"dayfirst": dayfirst})
    assert kept(data) == [expected, pd.Timestamp("1998-01-03", tz="UTC")]
    assert report.rows_set_aside == 0


def test_dayfirst_refuses_impossible_days_and_without_it_slashes_are_refused():
    data, report = run(["31.12.1997", "13/13/1997", "5-1-1998"], {"dayfirst": True})
    assert kept(data) == [pd.Timestamp("1997-12-31", tz="UTC"), pd.Timestamp("1998-01-05", tz="UTC")]
    assert set_aside(report) == {"bad_type:ts": 1}
    _, report = run(["01/02/1998", "1998-01-03"])
    assert set_aside(report) == {"bad_type:ts": 1}  # the default reads ISO only


def test_yyyymmdd_integers_are_utc_days_without_a_source_zone():
    data, report = run([19970101, 19971231, 19970230, 19980701])
    assert report.usable
    assert kept(data) == [UTC_DAY, pd.Timestamp("1997-12-31", tz="UTC")]
    # 30 February is no day; 1 July 1998 is after the cutoff
    assert set_aside(report) == {"bad_type:ts": 1, "after_cutoff": 1}


def test_yyyymmdd_text_and_floats_are_utc_days():
    data, report = run(["19970101", "18991231", "19970102"])
    assert kept(data) == [UTC_DAY, pd.Timestamp("1997-01-02", tz="UTC")]
    assert set_aside(report) == {"bad_type:ts": 1}  # before 1900: not a plausible day
    data, report = run([19970101.0, None, 19970102.0])
    assert kept(data) == [UTC_DAY, pd.Timestamp("1997-01-02", tz="UTC")]
    assert set_aside(report) == {"null_required:ts": 1}


def test_date_only_values_are_utc_midnight_even_with_a_source_zone():
    for zone in (None, "America/New_York"):
        data, report = run(["1997-01-01", "19970101"], **({"source_timezone": zone} if zone else {}))
        assert report.rows_set_aside == 0
        assert kept(data) == [UTC_DAY, UTC_DAY]


def test_yyyymmdd_detection_rule():
    assert is_yyyymmdd(pd.Series([19970101, 19981231]))
    assert is_yyyymmdd(pd.Series(["19970101", " ", None]))
    assert is_yyyymmdd(pd.Series([19970101.0, float("nan")]))
    assert not is_yyyymmdd(pd.Series([19970101, 19971301]))  # month 13
    assert not is_yyyymmdd(pd.Series([1, 2, 3]))  # plain numbers
    assert not is_yyyymmdd(pd.Series([1_700_000_000]))  # epoch seconds
    assert not is_yyyymmdd(pd.Series(["1997-01-01"]))
    assert not is_yyyymmdd(pd.Series([True, False]))


@pytest.mark.parametrize("fmt", ["%H:%M", "no date", "%Q/%Y"])
def test_a_format_without_a_date_or_with_a_bad_directive_is_a_config_error(fmt):
    with pytest.raises(ConfigError, match=r"formats\.ts"):
        config_from_mapping({"data": {"tables": {"transactions": {"formats": {"ts": fmt}}}}})


def test_a_format_on_a_column_that_is_no_timestamp_is_named():
    _, report = run(["1997-01-01"], {"formats": {"amount": "%Y%m%d"}})
    assert not report.usable
    assert any("not a timestamp column of transactions" in str(p) for p in report.problems)


def test_newest_event_and_the_cutoff_warning():
    data, report = run(["1997-01-01", "1997-03-05"])
    assert newest_event(data) == (pd.Timestamp("1997-03-05", tz="UTC"), "transactions.ts")
    assert report.newest_event == pd.Timestamp("1997-03-05", tz="UTC")
    assert len(report.cutoff_warnings) == 1
    assert "after the newest data (1997-03-05, transactions.ts)" in report.cutoff_warnings[0]
    assert report.cutoff_warnings[0] in report.notes
    cfg = config_from_mapping({})
    raw = {"customers": customers(), "transactions": tx(["1998-06-30"])}
    _, report = validate_tables(raw, cfg, AS_OF, NOW)
    assert report.cutoff_warnings == []  # data up to the cutoff day: nothing to warn
    _, report = validate_tables(raw, cfg, "1998-07-05", NOW)
    assert any("after today (1998-07-01, UTC)" in w for w in report.cutoff_warnings)
