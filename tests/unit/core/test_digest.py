"""Digests (crmscore.core.digest): byte digests (value-exact, order-sensitive, independent of Arrow
chunking) and content digests (the rows known at as_of in any order, however stored)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _digest(**tables: pd.DataFrame) -> str:
    from crmscore.core.digest import data_digest
    from crmscore.core.schema import CRMData

    return data_digest(CRMData(**tables))["all"]


def test_data_digest_is_value_exact_and_order_sensitive() -> None:
    tx = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b", None, "ü"], dtype=object),
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", None], utc=True),
            "amount": [1.0, 2.5, np.nan, -3.0],
            "product": pd.array(["x", None, "y", "z"], dtype="str"),
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "mixed": pd.Series([1, "1", None, 2.0], dtype=object),
        }
    )
    base = _digest(transactions=tx)
    assert _digest(transactions=tx.copy()) == base
    assert _digest(transactions=tx.iloc[::-1].reset_index(drop=True)) != base  # row order
    changed = tx.copy()
    changed.loc[1, "amount"] = 2.5000000001
    assert _digest(transactions=changed) != base  # any value
    moved = tx.copy()
    moved["customer_id"] = pd.Series(["ab", "", None, "ü"], dtype=object)  # same bytes, other split
    assert _digest(transactions=moved) != base
    empty_vs_null = tx.copy()
    empty_vs_null["customer_id"] = pd.Series(["a", "b", "", "ü"], dtype=object)
    assert _digest(transactions=empty_vs_null) != base  # "" is not NULL
    as_str = tx.copy()
    as_str["customer_id"] = tx["customer_id"].astype("str")
    assert _digest(transactions=as_str) == base  # text is text, as objects or Arrow strings
    as_float = tx.copy()
    as_float["amount"] = tx["amount"].astype("float32")
    assert _digest(transactions=as_float) != base  # other dtypes are part of the digest
    sliced = pd.concat([tx, tx]).iloc[4:].reset_index(drop=True)
    assert _digest(transactions=sliced) == base  # views of a larger frame hash like copies
    assert _digest(customers=tx) != base  # the table name too


def test_digest_does_not_depend_on_arrow_chunking() -> None:
    import pyarrow as pa

    from crmscore.core.digest import frame_digest

    values = ["a", None, "ccc", "", "dé", None, "x" * 40]
    one = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, pa.large_string())])))
    split = pa.chunked_array([pa.array(values[:2], pa.string()), pa.array(values[2:], pa.string())])
    many = pd.Series(pd.arrays.ArrowStringArray(split.cast(pa.large_string())))
    sliced = pd.Series(
        pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(["zz", *values], pa.large_string()).slice(1)]))
    )
    digests = {frame_digest(pd.DataFrame({"c": s})) for s in (one, many, sliced)}
    assert len(digests) == 1
    changed = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array([*values[:-1], "y" * 40])])))
    assert frame_digest(pd.DataFrame({"c": changed})) not in digests


# --------------------------------------------------------------------------- content digests

AS_OF = "2025-06-30"


def _tx() -> pd.DataFrame:
    """Transactions-like rows: two after AS_OF (2025-07-01 and later), one without a time."""
    ts = ["2025-01-01 10:00", "2025-03-05", "2025-06-30 23:59:59.999999", "2025-07-01", "2025-08-01", None]
    return pd.DataFrame(
        {
            "transaction_id": pd.Series(["t1", "t2", "t3", "t4", "t5", "t6"], dtype=object),
            "customer_id": pd.Series(["a", "b", "a", "ü" * 9, None, ""], dtype=object),
            "ts": pd.to_datetime(ts, utc=True, format="ISO8601").as_unit("us"),
            "amount": [1.0, -0.0, 2.5, 7.0, np.nan, 3.0],
            "quantity": [1.0, 2.0, 1.0, 1.0, 1.0, 4.0],
            "product": pd.Series(["x" * 40, None, "y", "z", "x", "y"], dtype=object),
        }
    )


def _content(df: pd.DataFrame, table: str = "transactions", as_of: str | None = AS_OF) -> str:
    from crmscore.core.digest import table_content_digest

    return table_content_digest(table, {c: df[c] for c in df.columns}, as_of=as_of)


def test_content_digest_is_independent_of_row_order_column_order_and_storage() -> None:
    import pyarrow as pa

    tx = _tx()
    base = _content(tx)
    assert len(base) == 64 and _content(tx.copy()) == base
    shuffled = tx.sample(frac=1, random_state=3)
    assert _content(shuffled) == base  # row order (and a non-default index)
    assert _content(tx[list(reversed(tx.columns))]) == base  # column order
    stored = tx.copy()
    stored["customer_id"] = tx["customer_id"].astype("str")  # Arrow-backed text
    stored["product"] = tx["product"].astype(pd.StringDtype("python"))
    stored["ts"] = tx["ts"].dt.as_unit("ns")
    stored["amount"] = tx["amount"].replace({-0.0: 0.0})  # -0.0 is 0.0
    stored["quantity"] = tx["quantity"].astype("Float64")
    assert _content(stored) == base
    # Arrow arrays as the validation passes them: chunked, sliced, large or not
    arrow = {c: tx[c] for c in tx.columns}
    ids = ["zz", *tx["transaction_id"]]
    arrow["transaction_id"] = pa.chunked_array(
        [pa.array(ids, pa.large_string()).slice(1, 2), pa.array(ids[3:], pa.large_string())]
    )
    arrow["product"] = pa.array(tx["product"], pa.string())
    from crmscore.core.digest import table_content_digest

    assert table_content_digest("transactions", arrow, as_of=AS_OF) == base
    assert _content(tx, table="support_tickets") != base  # the table name counts


def test_content_digest_changes_with_any_value_known_at_as_of() -> None:
    tx = _tx()
    base = _content(tx)

    def changed(column: str, row: int, value: object) -> str:
        df = tx.copy()
        df[column] = df[column].astype(object) if df[column].dtype == object else df[column]
        df.loc[row, column] = value
        return _content(df)

    assert changed("amount", 0, 1.0000000001) != base  # any value of a known row
    assert changed("ts", 1, pd.Timestamp("2025-03-05 00:00:00.000001", tz="UTC")) != base
    assert changed("customer_id", 5, None) != base  # "" is not missing
    assert changed("product", 0, "x" * 39 + "X") != base  # the 40th byte of a long value
    assert changed("ts", 2, pd.Timestamp("2025-07-01", tz="UTC")) != base  # a row leaves the cutoff
    moved = tx.copy()
    moved["customer_id"] = pd.Series(["ab", "", "a", "ü" * 9, None, ""], dtype=object)  # same bytes
    assert _content(moved) != base
    swapped_rows = tx.copy()
    swapped_rows["amount"] = tx["amount"].to_numpy()[[2, 1, 0, 3, 4, 5]]  # the column's values alike
    assert _content(swapped_rows) != base
    swapped_columns = tx.copy()
    swapped_columns[["amount", "quantity"]] = tx[["quantity", "amount"]].to_numpy()
    assert _content(swapped_columns) != base
    negated = tx.copy()
    negated.loc[0, ["amount", "quantity"]] = [-1.0, -1.0]  # two sign bits of one row
    assert _content(negated) != base
    twice = pd.concat([tx, tx.iloc[[0]]], ignore_index=True)
    assert _content(twice) != base  # a duplicate row counts (a multiset)
    assert _content(tx.drop(columns="quantity")) != base
    # rows after the cutoff: changed, removed or added, the digest stays
    later = tx.copy()
    later.loc[3, "amount"] = 99.0
    assert _content(later) == base
    assert _content(tx.drop(index=[3, 4])) == base
    added = pd.concat([tx, tx.iloc[[0]].assign(ts=pd.Timestamp("2025-07-02", tz="UTC"))], ignore_index=True)
    assert _content(added) == base
    assert _content(added, as_of=None) != _content(tx, as_of=None)  # (no cutoff: every row counts)


def test_dates_recorded_after_as_of_count_as_missing() -> None:
    """As the features read them: a churn, conversion or ticket closure after the cutoff is
    not known at it (a lead's customer_id comes with its conversion)."""
    created = pd.to_datetime(["2025-01-01", "2025-02-01"], utc=True)
    leads = pd.DataFrame(
        {
            "lead_id": ["l1", "l2"],
            "created_at": created,
            "converted_at": pd.to_datetime([None, "2025-05-01"], utc=True),
            "customer_id": pd.Series([None, "c9"], dtype=object),
        }
    )
    base = _content(leads, "leads")
    converted_later = leads.copy()
    converted_later.loc[0, ["converted_at", "customer_id"]] = [pd.Timestamp("2025-07-01", tz="UTC"), "c1"]
    assert _content(converted_later, "leads") == base
    converted_known = leads.copy()
    converted_known.loc[0, ["converted_at", "customer_id"]] = [pd.Timestamp("2025-06-30", tz="UTC"), "c1"]
    assert _content(converted_known, "leads") != base
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "created_at": created,
            "churned_at": pd.to_datetime([None, None], utc=True),
        }
    )
    churned_later = customers.assign(churned_at=pd.to_datetime([None, "2025-12-01"], utc=True))
    assert _content(churned_later, "customers") == _content(customers, "customers")
    churned = customers.assign(churned_at=pd.to_datetime([None, "2025-06-01"], utc=True))
    assert _content(churned, "customers") != _content(customers, "customers")


def test_text_hash_follows_its_definition_on_every_path() -> None:
    """Word path (short and long values, blocks), Arrow dictionary path and object input agree
    with a pure-Python reference of the hash; a text value's hash depends on its bytes only."""
    import pyarrow as pa

    import crmscore.core.digest as dg

    mask = (1 << 64) - 1

    def mix(x: int) -> int:
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    salt = int(dg._salt("c", "text"))

    def reference(value: str | None) -> int:
        if value is None:
            return mix(int(dg._MISSING) ^ salt)
        data = value.encode()
        h = ((len(data) * 0x9E3779B97F4A7C15) & mask) ^ salt
        for k in range(0, len(data), 8):
            h = mix(h ^ int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little"))
        return h

    rng = np.random.default_rng(7)
    values = [None, "", "a", "é", "12345678", "123456789", "x" * 32, "y" * 33, "dé" * 40, "€" * 300]
    values += ["".join(rng.choice(list("ab é€\x00"), rng.integers(0, 70))) for _ in range(2_000)]
    expected = np.array([reference(v) for v in values], dtype=np.uint64)
    for column in (
        pa.array(values, pa.string()),
        pa.chunked_array([pa.array(values[:5], pa.large_string()), pa.array(values[5:], pa.large_string())]),
        pd.Series(values, dtype=object),
        pd.Series(values, dtype="str"),
    ):
        np.testing.assert_array_equal(dg._column_hashes("c", column)[1], expected)
    for width in (0, 8, 11, 17):  # values of one length in bytes (ids): whole words, no gathers
        same = ["".join(rng.choice(["ab", "é", "cd"], width // 2)) + "x" * (width % 2) for _ in range(50)]
        assert {len(v.encode()) for v in same} == {width}
        np.testing.assert_array_equal(
            dg._column_hashes("c", pa.array(same))[1], np.array([reference(v) for v in same], np.uint64)
        )
    repetitive = [values[i % 25] for i in range(3 * dg._DISTINCT_SAMPLE)]  # the dictionary path
    np.testing.assert_array_equal(
        dg._column_hashes("c", pa.array(repetitive))[1],
        np.array([reference(v) for v in repetitive], np.uint64),
    )


def test_validation_digests_equal_those_of_the_validated_tables() -> None:
    """The validation digests its Arrow columns; the same data as objects give the same digests."""
    from crmscore.config import Config
    from crmscore.core.digest import content_digests
    from crmscore.ingest.synth import generate
    from crmscore.ingest.validation import validate_tables

    raw = generate(400, seed=5).tables
    tx = raw["transactions"].copy()
    tx.loc[0, "customer_id"] = None  # set aside
    tx = pd.concat([tx, tx.iloc[[3]]], ignore_index=True)  # a duplicate: one copy kept
    leads = raw["leads"].copy()
    leads.loc[:5, "source"] = "  padded  "  # stripped by validation
    raw = {**raw, "transactions": tx, "leads": leads}
    data, report = validate_tables(raw, Config(), as_of="2025-06-30", now="2026-01-01")
    assert report.tables["transactions"].rows_set_aside > 1  # (after_cutoff, null id, duplicate)
    assert content_digests(data, "2025-06-30") == {t: report.input_digest[t] for t in data.tables()}


def test_settings_digest_is_canonical() -> None:
    from crmscore.core.digest import settings_digest

    a = settings_digest({"scoring": {"health_weights": {"retention": 0.4, "alive": 0.2}, "n": 1}})
    b = settings_digest({"scoring": {"n": 1, "health_weights": {"alive": 0.2, "retention": 0.4}}})
    assert a == b and len(a) == 64
    assert settings_digest({"scoring": {"health_weights": {"retention": 0.5, "alive": 0.2}, "n": 1}}) != a
