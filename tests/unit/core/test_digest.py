"""Data digests (crmscore.core.digest): value-exact, order-sensitive, independent of Arrow chunking."""

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
