"""BTYD summary and calibration/holdout split: same numbers as lifetimes itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

from crmscore.features.btyd import (
    BTYD_COLUMNS,
    CAL_HOLDOUT_COLUMNS,
    _encode_short_strings,
    btyd_summary,
    calibration_and_holdout,
    purchase_mask,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
# (period, time_unit, lifetimes freq, lifetimes freq_multiplier)
UNITS = [("D", "day", "D", 1), ("D", "week", "D", 7), ("W", "week", "W", 1), ("W", "day", "W", 1 / 7)]


def random_tx(seed: int, n_customers: int = 60, n_rows: int = 400, days: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cust = rng.integers(0, n_customers, n_rows)
    # hours, so several purchases often share a day and a week
    hours = rng.integers(0, days * 24, n_rows)
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"c{c:03d}" for c in cust], dtype="str"),
            "ts": START + pd.to_timedelta(hours, unit="h"),
            "amount": np.round(rng.gamma(2.0, 20.0, n_rows) + 0.5, 2),
        }
    )


def end_of_day(day: str) -> pd.Timestamp:
    """Naive last instant of ``day``: lifetimes' ``ts <= x`` then equals our ``ts < cutoff_end``."""
    return pd.Timestamp(day) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")


def lifetimes_summary(tx: pd.DataFrame, as_of: str, freq: str, mult: float) -> pd.DataFrame:
    known = tx[tx["ts"] < pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)]
    naive = known.assign(ts=known["ts"].dt.tz_convert(None))
    return summary_data_from_transaction_data(
        naive,
        "customer_id",
        "ts",
        "amount",
        observation_period_end=pd.Timestamp(as_of),
        freq=freq,
        freq_multiplier=mult,
    ).sort_index()


def assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.index) == [str(i) for i in theirs.index]
    assert list(ours.columns) == list(theirs.columns)
    assert (ours.dtypes == np.float64).all()
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(dtype=float), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("period", "unit", "freq", "mult"), UNITS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("as_of", ["2024-04-17", "2024-07-21"])  # a Wednesday, a Sunday (week end)
def test_summary_matches_lifetimes(period, unit, freq, mult, seed, as_of):
    tx = random_tx(seed)
    ours = btyd_summary(tx, as_of, period=period, time_unit=unit)
    assert ours.index.name == "customer_id"
    assert_same(ours, lifetimes_summary(tx, as_of, freq, mult))


def test_several_purchases_in_one_period_count_once():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "ts": pd.to_datetime(
                [
                    "2024-01-01 08:00",
                    "2024-01-01 20:00",
                    "2024-01-03 00:00",
                    "2024-01-03 09:00",
                    "2024-01-02 00:00",
                ],
                utc=True,
            ),
            "amount": [10.0, 5.0, 7.0, 3.0, 4.0],
        }
    )
    s = btyd_summary(tx, "2024-01-10")
    assert s.loc["a"].tolist() == [1.0, 2.0, 9.0, 10.0]  # two periods; repeat total 7 + 3
    assert s.loc["b"].tolist() == [0.0, 0.0, 8.0, 0.0]
    w = btyd_summary(tx, "2024-01-10", period="W", time_unit="week")
    assert w.loc["a"].tolist() == [0.0, 0.0, 1.0, 0.0]  # one week; 2024-01-10 is in the next week
    frac = btyd_summary(tx, "2024-01-10", period="D", time_unit="week")
    assert frac.loc["a", "T"] == pytest.approx(9 / 7)


@pytest.mark.parametrize(("period", "unit", "freq", "mult"), UNITS)
@pytest.mark.parametrize("seed", [3, 4])
def test_calibration_holdout_matches_lifetimes(period, unit, freq, mult, seed):
    tx = random_tx(seed)
    cal, obs = "2024-04-17", "2024-06-30"
    ours = calibration_and_holdout(tx, cal, obs, period=period, time_unit=unit)
    naive = tx.assign(ts=tx["ts"].dt.tz_convert(None))
    theirs = calibration_and_holdout_data(
        naive,
        "customer_id",
        "ts",
        calibration_period_end=end_of_day(cal),
        observation_period_end=end_of_day(obs),
        freq=freq,
        freq_multiplier=mult,
        monetary_value_col="amount",
    ).sort_index()
    assert list(ours.columns) == list(CAL_HOLDOUT_COLUMNS)
    assert_same(ours, theirs)


timestamps = st.integers(min_value=0, max_value=60 * 24).map(lambda h: START + pd.Timedelta(hours=h))
rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        timestamps,
        st.floats(min_value=0.01, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, unit=st.sampled_from(UNITS), as_of_day=st.integers(min_value=0, max_value=70))
def test_summary_matches_lifetimes_property(rows, unit, as_of_day):
    tx = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    tx["customer_id"] = tx["customer_id"].astype("str")
    as_of = str((START + pd.Timedelta(days=as_of_day)).date())
    period, time_unit, freq, mult = unit
    ours = btyd_summary(tx, as_of, period=period, time_unit=time_unit)
    if not (tx["ts"] < pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)).any():
        assert ours.empty and list(ours.columns) == list(BTYD_COLUMNS)
        return
    assert_same(ours, lifetimes_summary(tx, as_of, freq, mult))


def test_refunds_are_not_purchases_by_default():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-08", "2024-01-02"], utc=True),
            "amount": [10.0, -10.0, 20.0, -5.0],
        }
    )
    s = btyd_summary(tx, "2024-01-10")
    assert list(s.index) == ["a"]  # b only refunded: no purchase
    assert s.loc["a"].tolist() == [1.0, 7.0, 9.0, 20.0]
    inc = btyd_summary(tx, "2024-01-10", refunds="include")  # lifetimes' view
    assert inc.loc["a"].tolist() == [2.0, 7.0, 9.0, 5.0]
    assert list(inc.index) == ["a", "b"]
    assert purchase_mask(tx).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="refunds"):
        purchase_mask(tx, "net")  # type: ignore[arg-type]


def test_rows_after_cutoff_ignored_and_input_untouched_and_order_free():
    tx = random_tx(7)
    before = tx.copy(deep=True)
    s1 = btyd_summary(tx, "2024-03-31", period="W", time_unit="week")
    pd.testing.assert_frame_equal(tx, before)
    shuffled = tx.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(s1, btyd_summary(shuffled, "2024-03-31", period="W", time_unit="week"))
    later = tx[tx["ts"] >= pd.Timestamp("2024-04-01", tz="UTC")].assign(amount=1.0)
    trimmed = tx[tx["ts"] < pd.Timestamp("2024-04-01", tz="UTC")]
    pd.testing.assert_frame_equal(
        s1, btyd_summary(pd.concat([trimmed, later]), "2024-03-31", period="W", time_unit="week")
    )
    c1 = calibration_and_holdout(tx, "2024-03-01", "2024-03-31")
    pd.testing.assert_frame_equal(tx, before)
    pd.testing.assert_frame_equal(c1, calibration_and_holdout(shuffled, "2024-03-01", "2024-03-31"))


def test_empty_and_bad_inputs():
    tx = random_tx(0).iloc[:0]
    assert btyd_summary(tx, "2024-01-01").empty
    assert calibration_and_holdout(tx, "2024-01-01", "2024-02-01").empty
    with pytest.raises(ValueError, match="after"):
        calibration_and_holdout(random_tx(0), "2024-02-01", "2024-02-01")
    # no holdout transaction: zeros, not an error (lifetimes raises)
    out = calibration_and_holdout(random_tx(0), "2024-12-01", "2024-12-31")
    assert (out["frequency_holdout"] == 0).all() and (out["monetary_value_holdout"] == 0).all()


POOL = ["a", "ab", "b", "ab0", "é", "zz", "A", "a b", "ö1", "12345", "a\x00", "Zé"]


def _with_ids(tx: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The same transactions with the customer ids in another representation (see below)."""
    codes = tx["customer_id"].str[1:].astype(int).to_numpy()
    if kind == "str_mixed_length":  # arrow strings of 1-7 bytes, prefixes, non-ASCII, NUL
        ids = pd.array([POOL[c % len(POOL)] + str(c // len(POOL)) for c in codes], dtype="str")
    elif kind == "str_long":  # longer than 8 bytes: hashed, not packed
        ids = pd.array([f"customer-{c:06d}" for c in codes], dtype="str")
    elif kind == "str_missing":  # missing ids are ignored
        ids = pd.array([None if c % 7 == 0 else f"c{c:03d}" for c in codes], dtype="str")
    elif kind.startswith("object"):
        ids = np.array(
            [None if kind == "object_missing" and c % 7 == 0 else f"c{c:03d}" for c in codes], dtype=object
        )
    elif kind == "int":
        ids = codes * 10
    else:
        raise AssertionError(kind)
    out = tx.assign(
        customer_id=pd.Series(ids, index=tx.index, dtype=object if kind.startswith("object") else None)
    )
    assert (out["customer_id"].dtype == object) == kind.startswith("object")
    if kind == "object_sorted":  # contiguous runs in increasing order: no hashing at all
        out = out.sort_values(["customer_id", "ts"], kind="stable")
    elif kind == "object_grouped":  # contiguous runs, decreasing: runs hashed then ranked
        out = out.sort_values(["customer_id", "ts"], ascending=[False, True], kind="stable")
    return out


@pytest.mark.parametrize(
    "kind",
    [
        "str_mixed_length",
        "str_long",
        "str_missing",
        "object",
        "object_sorted",
        "object_grouped",
        "object_missing",
        "int",
    ],
)
@pytest.mark.parametrize(("period", "unit", "freq", "mult"), [UNITS[1], UNITS[2]])
def test_id_representations_match_lifetimes(kind, period, unit, freq, mult):
    tx = _with_ids(random_tx(3, n_customers=300, n_rows=1500), kind)
    packed = _encode_short_strings(tx["customer_id"]) is not None
    assert packed == (kind == "str_mixed_length")
    theirs = lifetimes_summary(tx.dropna(subset=["customer_id"]), "2024-05-31", freq, mult)
    ours = btyd_summary(tx, "2024-05-31", period=period, time_unit=unit)
    if kind == "int":  # integer ids stay integers
        assert list(ours.index) == list(theirs.index)
        ours, theirs = ours.set_axis(ours.index.astype(str)), theirs.set_axis(theirs.index.astype(str))
    assert_same(ours, theirs)
    known = tx.dropna(subset=["customer_id"]).assign(ts=lambda d: d["ts"].dt.tz_convert(None))
    lt = calibration_and_holdout_data(
        known,
        "customer_id",
        "ts",
        calibration_period_end=end_of_day("2024-04-15"),
        observation_period_end=end_of_day("2024-05-31"),
        freq=freq,
        freq_multiplier=mult,
        monetary_value_col="amount",
    ).sort_index()
    ours = calibration_and_holdout(tx, "2024-04-15", "2024-05-31", period=period, time_unit=unit)
    if kind == "int":
        assert list(ours.index) == list(lt.index)
        ours, lt = ours.set_axis(ours.index.astype(str)), lt.set_axis(lt.index.astype(str))
    assert_same(ours, lt)
