"""Vectorised reasons (``rank_contributions``, ``reasons_json``) against a straightforward reference.

The reference is the per-row loop the vectorised code replaced (one record per reason, then
``json.dumps`` per row), with one deliberate difference kept in both: ``value`` is always an
object column of JSON scalars (``None`` when missing). The loop built its frame with
``DataFrame.from_records``, which turned the column into float64 whenever no reason in the
whole batch had a text value, so a missing value came out as ``NaN`` (invalid JSON) and an
integer as ``3.0``, depending on the other rows of the batch.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmscore.estimators.reasons import (
    EXPECTED_VALUE,
    _py,
    feature_label,
    rank_contributions,
    reasons_json,
)

COLUMNS = ["row", "id", "direction", "rank", "feature", "label", "value", "contribution"]


def reference_rank(contributions: pd.DataFrame, X: pd.DataFrame, n: int, labels=None) -> pd.DataFrame:
    """Per-row loop: top ``n`` positive and negative contributions (ties in column order)."""
    contrib = contributions.drop(columns=EXPECTED_VALUE)
    features = [str(f) for f in contrib.columns]
    C = contrib.to_numpy()
    records: list[dict[str, Any]] = []
    for i in range(C.shape[0]):
        for direction, sign in (("increases", 1.0), ("decreases", -1.0)):
            order = sorted(
                (j for j in range(C.shape[1]) if sign * C[i, j] > 0), key=lambda j: (-sign * C[i, j], j)
            )
            for rank, j in enumerate(order[:n], start=1):
                f = features[j]
                records.append(
                    {
                        "row": i,
                        "id": X.index[i],
                        "direction": direction,
                        "rank": rank,
                        "feature": f,
                        "label": feature_label(f, labels),
                        "value": _py(X[f].iloc[i]) if f in X.columns else None,
                        "contribution": float(C[i, j]),
                    }
                )
    out = pd.DataFrame.from_records(records, columns=COLUMNS)
    if len(out):
        out["value"] = pd.Series([r["value"] for r in records], dtype=object)
    return out


def reference_json(reasons: pd.DataFrame, n_rows: int) -> list[str]:
    """One ``json.dumps`` per row of dicts built from the records."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_rows)]
    for rec in reasons.itertuples(index=False):
        out[int(rec.row)].append(
            {
                "feature": rec.feature,
                "label": rec.label,
                "value": rec.value,
                "direction": rec.direction,
                "contribution": round(float(rec.contribution), 6),
            }
        )
    return [json.dumps(r, ensure_ascii=False) for r in out]


def frames(
    n_rows: int, n_features: int, seed: int, *, kinds: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contributions with ties and zeros, and inputs with NaN and columns of many dtypes."""
    rng = np.random.default_rng(seed)
    cols = [f"f{j}" for j in range(n_features)]
    C = np.round(rng.normal(size=(n_rows, n_features)), 1)  # many ties
    C[rng.random(C.shape) < 0.25] = 0.0
    ids = pd.Index([f"C{i:05d}" for i in range(n_rows)], name="customer_id")
    X = pd.DataFrame({c: rng.normal(size=n_rows) for c in cols}, index=ids)
    X["f0"] = X["f0"].where(rng.random(n_rows) > 0.3)  # NaN values
    extra: dict[str, Any] = {}
    if kinds:
        extra = {
            "f1": pd.Categorical(rng.choice(["a", 'q"uote', "é", None], n_rows)),
            "f2": rng.integers(0, 5, n_rows),
            "f3": rng.random(n_rows) < 0.5,
            "f4": pd.array(rng.choice(["x", None, "line\nbreak", "tab\t"], n_rows), dtype="str"),
            "f5": pd.array(
                np.where(rng.random(n_rows) < 0.3, None, rng.integers(0, 9, n_rows)), dtype="Int64"
            ),
            "f6": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 9, n_rows), "D"),
            "f7": rng.normal(size=n_rows).astype(np.float32),
        }
    for c, v in extra.items():
        if c in X.columns:
            X[c] = v
    contributions = pd.DataFrame(C, index=ids, columns=cols).assign(**{EXPECTED_VALUE: -1.2})
    return contributions, X


def assert_same(contributions: pd.DataFrame, X: pd.DataFrame, n: int) -> pd.DataFrame:
    got = rank_contributions(contributions, X, n=n)
    want = reference_rank(contributions, X, n)
    pd.testing.assert_frame_equal(got, want)
    assert reasons_json(got, len(X)) == reference_json(want, len(X))
    return got


@pytest.mark.parametrize("n", [1, 3, 5, 40])
@pytest.mark.parametrize(("n_rows", "n_features", "seed"), [(1, 1, 0), (7, 3, 1), (200, 9, 2), (500, 12, 3)])
def test_vectorised_equals_reference(n, n_rows, n_features, seed):
    assert_same(*frames(n_rows, n_features, seed), n)


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(0, 40),
    n_features=st.integers(1, 10),
    n=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    kinds=st.booleans(),
)
def test_vectorised_equals_reference_property(n_rows, n_features, n, seed, kinds):
    assert_same(*frames(n_rows, n_features, seed, kinds=kinds), n)


def test_edge_cases_equal_reference():
    contributions, X = frames(30, 9, 4)
    contributions.iloc[3, 2] = np.nan  # a NaN contribution is never a reason
    contributions.iloc[4, :-1] = np.nan
    contributions.iloc[5, :-1] = 0.0  # no reason at all: "[]"
    contributions.iloc[6, :-1] = -0.0
    contributions.iloc[7, :-1] = 0.5  # all tied: column order
    assert_same(contributions, X.drop(columns=["f2", "f8"]), 4)  # features missing from X: value None
    int_index = X.set_axis(np.arange(30) * 7)
    assert_same(contributions.set_axis(int_index.index), int_index, 2)
    none = contributions.copy()
    none.iloc[:, :-1] = 0.0
    empty = assert_same(none, X, 3)
    assert empty.empty and reasons_json(empty, 4) == ["[]"] * 4


def test_json_is_strict_and_does_not_depend_on_the_batch():
    contributions, X = frames(50, 3, 5, kinds=False)
    X["f2"] = np.arange(50)  # integers
    both = reasons_json(rank_contributions(contributions, X, n=3), len(X))

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    alone = []
    for i in range(len(X)):
        row = reasons_json(rank_contributions(contributions.iloc[[i]], X.iloc[[i]], n=3), 1)[0]
        alone.append(row)
        for r in strict(row):
            if r["feature"] == "f2":
                assert isinstance(r["value"], int)
            if r["feature"] == "f0" and math.isnan(X["f0"].iloc[i]):
                assert r["value"] is None
    assert alone == both  # a row's reasons are the same whatever else is explained with it


def test_reasons_json_order_and_rounding():
    reasons = pd.DataFrame(
        {
            "row": [1, 0, 1],
            "feature": ["b", "a", "c"],
            "label": ["B", "A", "Ç"],
            "value": [None, 2, "x"],
            "direction": ["increases", "decreases", "decreases"],
            "contribution": [0.12345678, -1e-7, -float("inf")],
        }
    )
    got = reasons_json(reasons, 3)
    assert got == reference_json(reasons, 3)
    assert got[2] == "[]" and json.loads(got[1])[0]["contribution"] == 0.123457
    with pytest.raises(ValueError, match="rows"):
        reasons_json(reasons, 1)


def test_rank_contributions_rejects_n_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        rank_contributions(*frames(2, 2, 0), n=0)
