"""Row rules after coercion: which rows are set aside, with the first reason that applies.

:class:`_Rows` keeps one reason per row (the first marked wins). First of all,
:func:`_mark_bad_encoding` sets aside the CSV rows holding a byte that did not decode
(``bad_encoding``, found by :mod:`crmscore.io.files`). :func:`_mark_row_rules`
checks, in order, negative spend, ``in_future``, ``after_cutoff``, duplicate keys
(``duplicate_identical``, ``duplicate_conflict``) and references to a parent that is not
among its kept rows (``unknown_customer``, ``unknown_lead``). The column rules (missing,
unreadable, non-finite, naive values) are marked before, by
:mod:`crmscore.ingest.validation` from the masks of :mod:`crmscore.ingest.coerce`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from crmscore.core.schema import EVENT_TIME, TableSpec
from crmscore.core.time import cutoff_end
from crmscore.ingest.coerce import _Coerced, _materialise, _Text
from crmscore.io.files import BadEncoding


class _Rows:
    """Per-row reason bookkeeping: the first reason that applies wins.

    Reasons are small integer codes (``0`` = no reason yet) into :attr:`names`.
    """

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, dtype=np.uint8)
        self.names: list[str | None] = [None]

    def mark(self, mask: np.ndarray, reason: str) -> None:
        if not mask.any():
            return
        free = mask & (self.code == 0)
        if not free.any():
            return
        if reason not in self.names:
            self.names.append(reason)
            if len(self.names) > np.iinfo(self.code.dtype).max:
                self.code = self.code.astype(np.uint32)
        self.code[free] = self.names.index(reason)

    @property
    def ok(self) -> np.ndarray:
        return self.code == 0

    def reasons(self, rows: np.ndarray) -> np.ndarray:
        """The reason strings (object array) of the rows selected by ``rows``."""
        return np.array(self.names, dtype=object)[self.code[rows]]

    def counts(self) -> Counter[str]:
        """How many rows each reason set aside, in order of first occurrence."""
        counts = np.bincount(self.code, minlength=len(self.names))
        found = [c for c in range(1, len(self.names)) if counts[c]]
        first = {c: int(np.argmax(self.code == c)) for c in found}
        return Counter({self.names[c]: int(counts[c]) for c in sorted(found, key=first.__getitem__)})


def _mark_bad_encoding(name: str, bad: BadEncoding | None, rows: _Rows, notes: list[str]) -> None:
    """Set aside the rows of ``name`` whose bytes did not decode (``bad_encoding``) and note their lines.

    ``bad``: what the CSV reader found (``None``: every byte decoded). The note gives the file's
    lines (at most ten), never their content.
    """
    if bad is None or not bad.rows:
        return
    mask = np.zeros(len(rows.code), dtype=bool)
    mask[np.asarray(bad.rows, dtype=np.int64)] = True
    rows.mark(mask, "bad_encoding")
    shown = ", ".join(map(str, bad.lines[:10])) + (
        f" and {len(bad.lines) - 10:,} more" if len(bad.lines) > 10 else ""
    )
    notes.append(
        f"{name}: {len(bad.rows):,} row(s) set aside as bad_encoding: bytes that do not decode as "
        f"{bad.encoding} on line(s) {shown} of {bad.file}; if the file is in another encoding, set "
        f"data.tables.{name}.encoding"
    )


def _mark_duplicates(cols: dict[str, _Coerced], key: str, rows: _Rows) -> None:
    col = cols[key]
    if isinstance(col, _Text):
        ids, notna = col.objects(), col.present
    else:
        ids = col.to_numpy()
        notna = pd.notna(ids)
    ok = rows.ok & notna
    if not ok.any():
        return
    # Usual case first: no id repeats at all (a sorted key is checked without hashing).
    if pd.Index(ids if notna.all() else ids[notna], dtype=object, copy=False).is_unique:
        return
    codes = pd.factorize(ids, use_na_sentinel=True)[0]
    sub_codes = codes[ok]
    dup_key = np.bincount(sub_codes)[sub_codes] > 1
    if not dup_key.any():
        return
    pos = np.flatnonzero(ok)[dup_key]
    # Only the rows whose key repeats are compared in full (as text, hashed per row).
    dups = pd.DataFrame({c: _materialise(v, pos, pd.Index(pos)) for c, v in cols.items()})
    hashes = pd.util.hash_pandas_object(dups.astype(str), index=False)
    distinct = hashes.groupby(dups[key].to_numpy()).transform("nunique").to_numpy()
    conflict = np.zeros(len(codes), bool)
    identical_extra = np.zeros(len(codes), bool)
    conflict[pos[distinct > 1]] = True
    extra = dups[key].duplicated(keep="first").to_numpy() & (distinct == 1)
    identical_extra[pos[extra]] = True
    rows.mark(conflict, "duplicate_conflict")
    rows.mark(identical_extra, "duplicate_identical")


@dataclass
class _Keys:
    """The kept keys of a parent table: canonical column and, when text, its Arrow values."""

    series: pd.Series
    values: pa.Array | None


def _known_parent(col: _Coerced, parent: _Keys) -> np.ndarray:
    """Whether each value of ``col`` is one of the parent's (kept) keys."""
    if isinstance(col, _Text) and parent.values is not None:
        return col.link_parent(parent.values, parent.series.to_numpy())
    child = _materialise(col, None, pd.RangeIndex(len(col)))
    return child.isin(parent.series).to_numpy()


def _start_parent_lookup(
    spec: TableSpec, cols: dict[str, _Coerced], parents: dict[str, _Keys], pool: ThreadPoolExecutor
) -> Future[np.ndarray] | None:
    """Start looking the parent reference up in a worker thread when both sides are Arrow text."""
    if spec.parent is None or spec.parent[1] not in parents:
        return None
    col, keys = cols[spec.parent[0]], parents[spec.parent[1]]
    if not isinstance(col, _Text) or keys.values is None:
        return None
    return pool.submit(col.link_parent, keys.values, keys.series.to_numpy())


def _mark_rules(
    name: str,
    spec: TableSpec,
    cols: dict[str, _Coerced],
    rows: _Rows,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
) -> None:
    """The row rules after coercion, in order: negative spend, future, after cutoff, duplicates."""
    if name == "marketing_spend":
        amount = cols["amount"]
        assert isinstance(amount, pd.Series)
        rows.mark((amount < 0).to_numpy(dtype=bool, na_value=False), "negative_amount")
    event = EVENT_TIME[name]
    if event in cols:
        ts = cols[event]
        assert isinstance(ts, pd.Series)
        rows.mark((ts > now).to_numpy(dtype=bool, na_value=False), "in_future")
        rows.mark((ts >= cutoff_end(as_of)).to_numpy(dtype=bool, na_value=False), "after_cutoff")
    if spec.key is not None and spec.key in cols:
        _mark_duplicates(cols, spec.key, rows)


def _mark_row_rules(
    name: str,
    spec: TableSpec,
    cols: dict[str, _Coerced],
    rows: _Rows,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    parents: dict[str, _Keys],
    validated: Container[str],
    notes: list[str],
) -> None:
    """Every row rule of one table, the parent reference last.

    The parent lookup (Arrow, no GIL) runs in a worker thread while the other rules are
    checked. ``validated`` holds the tables validated so far (``parents`` only those whose
    keys were kept); ``notes`` receives why a reference could not be checked.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        lookup = _start_parent_lookup(spec, cols, parents, pool)
        _mark_rules(name, spec, cols, rows, as_of, now)
        if spec.parent is None:
            return
        col, parent = spec.parent
        if parent in parents:
            if lookup is not None:
                for other, values in cols.items():  # build the other text columns meanwhile
                    if other != col and isinstance(values, _Text):
                        values.objects()
                known = lookup.result()
            else:
                known = _known_parent(cols[col], parents[parent])
            rows.mark(rows.ok & ~known, f"unknown_{parent.rstrip('s')}")
        elif parent in validated:
            notes.append(f"{name}: {parent} could not be validated; {col} was not checked against it")
        else:
            notes.append(f"{name}: no {parent} table; {col} was not checked against it")


def _parent_keys(col: _Coerced, clean: pd.Series, ok: np.ndarray | None) -> _Keys:
    """The kept keys of a parent table: ``clean`` and, for Arrow text, the kept values.

    ``ok`` selects the kept rows of ``col``; ``None`` when every row was kept.
    """
    values = None
    if isinstance(col, _Text):
        values = (col.values if ok is None else col.values.filter(pa.array(ok))).combine_chunks()
    return _Keys(clean, values)
