"""Id columns as integer codes for the feature build, and fast membership tests.

The feature functions join transactions, tickets and activities to customers and leads by
id many times per cutoff (positions, distinct ids, membership). On string ids each of those
hashes millions of Python or Arrow strings, which dominated the feature build of a large
CRM. :func:`encode_ids` replaces the id columns by ``int64`` codes *once* per job, so the same
feature functions run on integers, and :class:`IdCodes` turns the codes of a result back into
the original ids.

Codes are positions in the **sorted** distinct ids, so sorting codes sorts ids the same way
(Python string order) and every result is identical to the one computed on the strings.
Encoding is skipped (the data are returned unchanged) when an id is missing: the feature
functions then see the original columns.

pandas 3's ``isin`` on Arrow-backed strings turns every test value into a Python object
(about 1 µs per value); :func:`isin` hashes the distinct test values once instead.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmscore.core.schema import CRMData

__all__ = [
    "IdCodes",
    "categorical_from_text",
    "decode_index",
    "encode_ids",
    "id_index",
    "isin",
    "sorted_unique",
    "text_codes",
]

logger = logging.getLogger(__name__)

#: Tables and id columns encoded together (one code space per key).
_CUSTOMER_KEY: tuple[tuple[str, str], ...] = (
    ("customers", "customer_id"),
    ("transactions", "customer_id"),
    ("support_tickets", "customer_id"),
)
_LEAD_KEY: tuple[tuple[str, str], ...] = (("leads", "lead_id"), ("lead_activities", "lead_id"))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a numeric array (``np.unique`` without its hash path).

    numpy 2.4's ``np.unique`` hashes integer arrays with many distinct values about 50x
    slower than sorting them; this sorts.
    """
    arr = np.sort(np.asarray(values), kind="stable")
    if len(arr) < 2:
        return arr
    keep = np.empty(len(arr), dtype=bool)
    keep[0] = True
    np.not_equal(arr[1:], arr[:-1], out=keep[1:])
    return arr[keep]


def text_codes(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, texts)``: ``texts[codes]`` is ``str(value)`` of each row, code -1 when missing.

    The text is built once per distinct value instead of per row (values whose texts
    coincide keep separate codes: compare texts, not codes).
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    texts = np.array([str(u) for u in np.asarray(uniques, dtype=object)], dtype=object)
    return codes, texts


def categorical_from_text(codes: np.ndarray, texts: np.ndarray, categories: list[str]) -> pd.Categorical:
    """The rows of :func:`text_codes` as a categorical over ``categories`` (others missing)."""
    pos = pd.Index(categories, dtype=object).get_indexer(texts) if len(texts) else np.zeros(0, np.intp)
    cat_codes = np.where(codes >= 0, pos[np.maximum(codes, 0)] if len(pos) else -1, -1)
    return pd.Categorical.from_codes(cat_codes, categories=pd.Index(categories, dtype="str"))


def isin(values: Any, test_values: Any) -> np.ndarray:
    """Boolean mask: which of ``values`` occur in ``test_values`` (like ``Series.isin``).

    Parameters
    ----------
    values : array-like
        Values to look up (a Series, Index or array; ids).
    test_values : array-like
        Values to look them up in (duplicates allowed).

    Returns
    -------
    numpy.ndarray
        ``bool``, one entry per value. Missing values are never members.
    """
    pool = pd.Index(pd.unique(pd.Series(test_values).dropna()))
    probe = values if isinstance(values, pd.Index) else pd.Index(values)
    if len(pool) == 0 or len(probe) == 0:
        return np.zeros(len(probe), dtype=bool)
    if pool.dtype != probe.dtype:
        pool = pool.astype(object) if probe.dtype == object else pool.astype(probe.dtype)
    return pool.get_indexer(probe) >= 0


def id_index(values: Any, name: str, *, sort: bool = False) -> pd.Index:
    """Ids as an Index named ``name``: integer codes (:func:`encode_ids`) kept, others as ``str``.

    ``sort`` sorts them (codes numerically, which is the order of the ids they stand for).
    """
    idx = pd.Index(values)
    if pd.api.types.is_integer_dtype(idx.dtype):
        arr = idx.to_numpy()
        return pd.Index(np.sort(arr) if sort else arr, name=name)
    if sort:
        return pd.Index(np.sort(idx.astype("str").to_numpy()), dtype="str", name=name)
    return pd.Index(idx.astype("str"), name=name)


@dataclass(frozen=True)
class IdCodes:
    """The sorted distinct ids behind the codes of :func:`encode_ids` (None: not encoded)."""

    customers: pd.Index | None = None
    leads: pd.Index | None = None

    def decode(self, index: pd.Index, key: str) -> pd.Index:
        """``index`` of codes of ``key`` (``"customers"`` or ``"leads"``) back to ids."""
        universe = getattr(self, key)
        return index if universe is None else decode_index(index, universe)


def decode_index(index: pd.Index, universe: pd.Index) -> pd.Index:
    """Ids of the codes in ``index`` (same name; ``str`` dtype like the feature tables)."""
    codes = np.asarray(index, dtype=np.int64)
    return pd.Index(universe.take(codes), dtype="str", name=index.name)


def _column_values(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[col].to_numpy(dtype=object, na_value=None)


def _encode_key(
    data: CRMData, pairs: tuple[tuple[str, str], ...]
) -> tuple[dict[str, np.ndarray], pd.Index] | None:
    present = [(t, c) for t, c in pairs if (df := data.get(t)) is not None and c in df.columns]
    if not present:
        return None
    parts = [_column_values(data.get(t), c) for t, c in present]
    values = np.concatenate(parts) if len(parts) > 1 else parts[0]
    codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
    if len(codes) and codes.min() < 0:
        logger.debug("missing ids in %s: not encoded", [t for t, _ in present])
        return None
    uniq = np.asarray(uniques, dtype=object)
    try:
        order = np.argsort(uniq.astype(str), kind="stable") if len(uniq) else np.zeros(0, np.int64)
        ok = bool(np.all(uniq[order][1:] > uniq[order][:-1])) if len(uniq) > 1 else True
    except (TypeError, ValueError):  # mixed types or strings numpy cannot hold
        ok = False
    if not ok:
        return None
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq), dtype=np.int64)
    coded = rank[codes]
    out: dict[str, np.ndarray] = {}
    start = 0
    for (table, _), part in zip(present, parts, strict=True):
        out[table] = coded[start : start + len(part)]
        start += len(part)
    return out, pd.Index(uniq[order], dtype="str")


def encode_ids(data: CRMData) -> tuple[CRMData, IdCodes]:
    """The same tables with ``customer_id`` and ``lead_id`` as ``int64`` codes.

    Customers, transactions and support tickets share one code space of customer ids; leads
    and lead activities one of lead ids. Other columns (and ``leads.customer_id``) are left
    as they are. The input is not modified (the frames are shallow copies).

    Parameters
    ----------
    data : CRMData
        Canonical CRM tables.

    Returns
    -------
    encoded : CRMData
        The tables with coded ids (unchanged tables where a key could not be encoded).
    codes : IdCodes
        The sorted distinct ids of each encoded key (None where not encoded).
    """
    tables = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    universes: dict[str, pd.Index | None] = {"customers": None, "leads": None}
    for key, pairs in (("customers", _CUSTOMER_KEY), ("leads", _LEAD_KEY)):
        enc = _encode_key(data, pairs)
        if enc is None:
            continue
        coded, universe = enc
        universes[key] = universe
        for (table, col), codes in ((p, coded[p[0]]) for p in pairs if p[0] in coded):
            tables[table] = tables[table].assign(**{col: codes})
    return CRMData(**tables), IdCodes(**universes)
