"""Integer id codes (crmscore.core.ids): same order and values as the string ids.

The feature build on codes against the same build on strings: features/test_tables.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.core.ids import decode_index, encode_ids, id_index, isin, sorted_unique
from crmscore.core.schema import CRMData


def test_isin_matches_pandas() -> None:
    values = pd.Series(["a", "b", None, "c", "b"], dtype="str")
    test = pd.Series(["b", "x", "b", None], dtype=object)
    got = isin(values, test)
    assert got.tolist() == [False, True, False, False, True]
    assert isin(pd.Index([1, 2, 3]), [3, 3, 7]).tolist() == [False, False, True]
    assert isin(pd.Index(["a"]), []).tolist() == [False]
    assert isin(pd.Index([], dtype="str"), ["a"]).tolist() == []


def test_sorted_unique_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for x in (
        rng.integers(0, 50, 1000),
        rng.integers(0, 10**12, 1000),
        np.array([], dtype=np.int64),
        np.array([5]),
    ):
        np.testing.assert_array_equal(sorted_unique(x), np.unique(x))


def test_codes_follow_string_order_and_decode(crm: CRMData) -> None:
    enc, codes = encode_ids(crm)
    assert codes.customers is not None and codes.leads is not None
    assert codes.customers.is_monotonic_increasing and codes.customers.is_unique
    for table in ("customers", "transactions", "support_tickets"):
        col = enc.get(table)["customer_id"]
        assert col.dtype == np.int64
        back = decode_index(pd.Index(col.to_numpy()), codes.customers)
        assert back.tolist() == crm.get(table)["customer_id"].tolist()
    for table in ("leads", "lead_activities"):
        back = decode_index(pd.Index(enc.get(table)["lead_id"].to_numpy()), codes.leads)
        assert back.tolist() == crm.get(table)["lead_id"].tolist()
    # leads.customer_id is not a key of the lead features: left as it was
    assert enc.leads["customer_id"].tolist() == crm.leads["customer_id"].tolist()
    # the input is not modified
    assert crm.transactions["customer_id"].dtype != np.int64


def test_missing_ids_are_not_encoded() -> None:
    tx = pd.DataFrame({"customer_id": pd.Series(["a", None], dtype=object), "ts": pd.NaT, "amount": 1.0})
    data = CRMData(transactions=tx)
    enc, codes = encode_ids(data)
    assert codes.customers is None
    assert enc.transactions is tx


def test_id_index_keeps_codes_and_sorts_text() -> None:
    assert id_index(pd.Index([3, 1, 2]), "customer_id", sort=True).tolist() == [1, 2, 3]
    idx = id_index(pd.Index(["b", "a"], dtype=object), "lead_id", sort=True)
    assert idx.tolist() == ["a", "b"] and idx.dtype == "str" and idx.name == "lead_id"
