"""Ingestion: map column names, coerce types, check every rule and quarantine bad rows.

Every problem is reported in one pass (not first-error-only). A row that breaks a rule is
*set aside* with the first reason that applies, in this order:

==========================  ===========================================================
reason                      rule
==========================  ===========================================================
``null_id:<col>``           a required id is empty
``null_required:<col>``     another required value is empty
``bad_type:<col>``          a value is present but cannot be read as its type
                            (numbers; ISO 8601 timestamps; booleans true/false/1/0/yes/no)
``non_finite:<col>``        a number is NaN written out, +inf or -inf
``naive_timestamp:<col>``   a timestamp has no UTC offset and ``data.source_timezone`` is
                            not set (date-only values are calendar days in UTC)
``negative_amount``         marketing spend below zero (refunds are negative *transactions*
                            and are allowed)
``in_future``               the row's event time is later than the moment of validation
``after_cutoff``            the row's event time is after the ``as_of`` day
``duplicate_identical``     a further identical copy of a keyed row (one copy is kept)
``duplicate_conflict``      keyed rows sharing an id but differing: every copy set aside
``unknown_customer``        a transaction or ticket whose customer is not in ``customers``
``unknown_lead``            a lead activity whose lead is not in ``leads``
==========================  ===========================================================

Accounting is exact: for every table, rows in = rows kept + rows set aside.
Table-level problems (a required table or column missing, a file that cannot be read,
a timestamp column entirely without time zone, nothing usable left) make the data
*unusable*: ``crmscore validate`` then exits with code 3. A rejected table's rows are
counted under ``table_rejected`` and left where they are (not copied to quarantine).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crmscore.config import Config
from crmscore.core.schema import EVENT_TIME, SCHEMAS, CRMData, TableSpec
from crmscore.core.time import as_of_day, cutoff_end

if TYPE_CHECKING:
    from crmscore.io.crm import LeadScope

__all__ = [
    "Problem",
    "TableReport",
    "ValidationReport",
    "load_raw_tables",
    "load_validated",
    "score_lead_scope",
    "validate_tables",
    "write_quarantine",
]

log = logging.getLogger(__name__)

_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY = r"\d{4}-\d{2}-\d{2}"
_TRUE = {"true", "t", "1", "yes", "y", "1.0"}
_FALSE = {"false", "f", "0", "no", "n", "0.0"}
#: Present values of a text attribute tried as numbers before the whole column is.
_SAMPLE = 64
#: Leading rows of a text column whose distinct count decides whether to share strings.
_DISTINCT_SAMPLE = 10_000
#: Tables checked first because others refer to them.
_ORDER = ("customers", "leads", "transactions", "support_tickets", "lead_activities", "marketing_spend")


@dataclass(frozen=True)
class Problem:
    """A table-level problem. ``fatal`` problems make the data unusable."""

    table: str
    message: str
    column: str | None = None
    fatal: bool = True

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.message}"


@dataclass
class TableReport:
    """Row accounting of one table: ``rows_in == rows_kept + sum(set_aside.values())``."""

    rows_in: int
    rows_kept: int = 0
    set_aside: Counter[str] = field(default_factory=Counter)

    @property
    def rows_set_aside(self) -> int:
        return int(sum(self.set_aside.values()))


@dataclass
class ValidationReport:
    """What ingestion found: per-table accounting, table-level problems, notes."""

    as_of: pd.Timestamp
    validated_at: pd.Timestamp
    tables: dict[str, TableReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    #: SHA-256 of the tables as read and of the settings that shape validation
    #: (:func:`input_digest`): what the job ran on, for lineage and the scoring run id
    input_digest: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def usable(self) -> bool:
        """``False`` when any fatal problem was found."""
        return not any(p.fatal for p in self.problems)

    @property
    def rows_set_aside(self) -> int:
        return sum(t.rows_set_aside for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no data rows)."""
        return {
            "as_of": self.as_of.date().isoformat(),
            "validated_at": self.validated_at.isoformat(),
            "usable": self.usable,
            "input_digest_sha256": self.input_digest.get("all"),
            "tables": {
                name: {
                    "rows_in": t.rows_in,
                    "rows_kept": t.rows_kept,
                    "rows_set_aside": t.rows_set_aside,
                    "set_aside": dict(sorted(t.set_aside.items())),
                }
                for name, t in self.tables.items()
            },
            "problems": [
                {"table": p.table, "column": p.column, "message": p.message, "fatal": p.fatal}
                for p in self.problems
            ],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- coercion


def _is_text_dtype(dtype: Any) -> bool:
    """Object or string columns: their values are read as text (stripped, blank = missing)."""
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _arrow_text(s: pd.Series) -> pa.ChunkedArray:
    """The column as Arrow strings, exactly as ``s.astype("string")`` holds them.

    An Arrow-backed string column is used as it is (no copy); anything else goes through
    ``astype("string")`` once.
    """
    if not (isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"):
        s = s.astype("string")
        if not (isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"):
            s = s.astype(pd.StringDtype("pyarrow"))
    arr = pa.array(s.array)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


class _Text:
    """A coerced id or text column kept in Arrow until the kept rows are known.

    ``values`` holds the stripped strings with blanks as nulls. :meth:`to_series` gives the
    canonical object column (``str`` values, ``None`` for missing) of any subset of rows,
    creating as few Python strings as it can: a repetitive column builds each distinct
    string once, a checked parent reference reuses the parent's strings, and a key column
    reuses the strings built for its duplicate check.
    """

    def __init__(self, values: pa.ChunkedArray) -> None:
        self.values = values
        self._objects: np.ndarray | None = None  # every row as a Python object
        self._parent: tuple[np.ndarray, np.ndarray] | None = None  # (row → parent position, parent strings)

    @classmethod
    def from_raw(cls, raw: pa.ChunkedArray) -> _Text:
        """Strip whitespace (only where there is some) and make blanks missing."""
        edges, empty = _edge_check(raw)
        trimmed = raw
        if edges:  # some value may start or end with whitespace: strip for real
            trimmed = pc.utf8_trim_whitespace(raw)
            if pc.all(pc.equal(trimmed, raw)).as_py() is False:
                empty = True  # values changed; blanks may have appeared
            else:
                trimmed = raw  # nothing stripped: keep the original buffers
        if empty:
            blank = pc.equal(trimmed, "")
            if pc.any(blank).as_py():
                trimmed = pc.if_else(blank, pa.scalar(None, trimmed.type), trimmed)
        return cls(trimmed)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def present(self) -> np.ndarray:
        """Non-null and non-blank."""
        return _bool_array(pc.is_valid(self.values))

    def objects(self) -> np.ndarray:
        """Every row as a Python ``str`` or ``None`` (built once, then kept)."""
        if self._objects is None:
            self._objects = _to_objects(self.values)
        return self._objects

    def link_parent(self, keys: pa.Array, key_objects: np.ndarray) -> np.ndarray:
        """Look each value up in a parent's kept ``keys``; return whether it was found.

        Missing matches missing, as in :meth:`pandas.Series.isin`. The rows found later
        reuse the parent's strings (``key_objects``, aligned with ``keys``).
        """
        if keys.type != self.values.type:
            keys = keys.cast(self.values.type)
        where = _index_in(self.values, keys)
        self._parent = (where, key_objects)
        return where >= 0

    def to_series(self, rows: np.ndarray | None, index: pd.Index) -> pd.Series:
        """Object column of the rows selected by ``rows`` (a boolean mask or positions; all when ``None``)."""
        if self._parent is not None:
            where = self._parent[0] if rows is None else self._parent[0][rows]
            if len(where) == 0 or where.min() >= 0:
                return pd.Series(self._parent[1][where], index=index, dtype=object, copy=False)
        if self._objects is not None:
            objects = self._objects if rows is None else self._objects[rows]
            return pd.Series(objects, index=index, dtype=object, copy=False)
        values = self.values
        if rows is not None:
            values = values.filter(pa.array(rows)) if rows.dtype == bool else values.take(pa.array(rows))
        return pd.Series(_to_objects(values), index=index, dtype=object, copy=False)


def _edge_check(arr: pa.ChunkedArray) -> tuple[bool, bool]:
    """Whether any string *may* start or end with whitespace, and whether any is empty.

    Looks only at the first and last byte of each value (numpy on the Arrow buffers).
    Conservative: every control or non-ASCII byte counts as possible whitespace, so
    ``False`` proves that stripping would change nothing.
    """
    if not (pa.types.is_large_string(arr.type) or pa.types.is_string(arr.type)):
        return True, True
    edges = empty = False
    for chunk in arr.chunks:
        if len(chunk) == 0:
            continue
        kind = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=kind)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = chunk.buffers()[2]
        starts, ends = offsets[:-1], offsets[1:]
        nonempty = ends > starts
        if not nonempty.all():
            valid = _bool_array(pc.is_valid(chunk))
            empty = empty or bool((valid & ~nonempty).any())
            starts, ends = starts[nonempty], ends[nonempty]
        if len(starts) == 0 or data is None:
            continue
        raw = np.frombuffer(data, dtype=np.uint8)
        first, last = raw[starts], raw[ends - 1]
        if (_MAYBE_SPACE[first] | _MAYBE_SPACE[last]).any():
            edges = True
    return edges, empty


#: Bytes that could begin or end a whitespace character: ASCII controls, space, DEL, non-ASCII.
_MAYBE_SPACE = np.zeros(256, dtype=bool)
_MAYBE_SPACE[:33] = True
_MAYBE_SPACE[127:] = True


def _index_in(values: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """Position of each value in ``keys`` (``-1`` when absent; missing matches missing).

    Values sorted or grouped by key (a common export order) are looked up once per run.
    """
    sample = values.slice(0, _DISTINCT_SAMPLE)
    runs = len(sample) and 1 + int(pc.sum(pc.not_equal(sample[1:], sample[:-1])).as_py() or 0)
    if len(values) > _DISTINCT_SAMPLE and runs < len(sample) // 2:
        run_values, lengths = [], []
        for chunk in pc.run_end_encode(values).chunks:
            ends = chunk.run_ends.to_numpy()
            if chunk.offset != 0 or len(ends) != len(chunk.values) or (len(ends) and ends[-1] != len(chunk)):
                break  # not the plain layout expected: look every row up instead
            run_values.append(chunk.values)
            lengths.append(np.diff(ends, prepend=0))
        else:
            if run_values:
                where = _positions(pa.chunked_array(run_values, type=values.type), keys)
                return np.repeat(where, np.concatenate(lengths))
    return _positions(values, keys)


def _positions(values: pa.Array | pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    return np.asarray(pc.index_in(values, value_set=keys).fill_null(-1).to_numpy(zero_copy_only=False))


def _to_objects(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow strings as an object array of ``str`` (``None`` for null).

    A repetitive column (judged on a sample) is dictionary encoded first, so each distinct
    string is created once and shared.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    sample = values.slice(0, _DISTINCT_SAMPLE)
    if len(values) > _DISTINCT_SAMPLE and pc.count_distinct(sample).as_py() < len(sample) // 2:
        enc = pc.dictionary_encode(values)
        uniques = np.empty(len(enc.dictionary) + 1, dtype=object)
        uniques[:-1] = enc.dictionary.to_numpy(zero_copy_only=False)  # the last stays None
        return uniques[enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)]
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)


_Coerced = pd.Series | _Text


def _bool_array(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow booleans as a numpy bool array, nulls as ``False``."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _present(s: pd.Series) -> np.ndarray:
    """Non-null and, for text, non-blank."""
    if _is_text_dtype(s.dtype):
        txt = pc.utf8_trim_whitespace(_arrow_text(s))
        return _bool_array(pc.not_equal(txt, ""))
    return s.notna().to_numpy()


def _coerce_float_id(s: pd.Series) -> pd.Series:
    """Float ids: integral values lose their ``.0`` (``1.0`` → ``"1"``)."""
    vals = s.to_numpy()
    integral = np.isfinite(vals) & (np.floor(vals) == vals)
    out = pd.Series(
        np.where(integral, np.nan_to_num(vals).astype(np.int64).astype(str), s.astype(str)),
        index=s.index,
        dtype=object,
    )
    return out.where(s.notna(), None)


def _coerce_text(s: pd.Series) -> tuple[_Text, np.ndarray]:
    """Return (stripped text with blanks missing, present mask)."""
    txt = _Text.from_raw(_arrow_text(s))
    present = txt.present if _is_text_dtype(s.dtype) else s.notna().to_numpy()
    return txt, present


def _coerce_number(s: pd.Series, present: np.ndarray) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (float values, bad-type mask, non-finite mask)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype(float)
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = pd.Series(s.to_numpy(dtype=float, na_value=np.nan), index=s.index)
        return vals, np.zeros(len(s), bool), np.isinf(vals.to_numpy())
    txt = s.astype("string").str.strip()
    vals = pd.to_numeric(txt, errors="coerce").astype(float)
    arr = vals.to_numpy()
    written_nan = txt.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy(dtype=bool, na_value=False)
    non_finite = present & (np.isinf(arr) | written_nan)
    bad = present & np.isnan(arr) & ~non_finite
    return vals, bad, non_finite


def _coerce_bool(s: pd.Series, present: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), np.zeros(len(s), bool)
    txt = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[txt.isin(_TRUE).to_numpy(dtype=bool, na_value=False)] = True
    out[txt.isin(_FALSE).to_numpy(dtype=bool, na_value=False)] = False
    bad = present & out.isna().to_numpy()
    return out, bad


def _coerce_timestamp(
    s: pd.Series, tz: str | None, present: np.ndarray
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (UTC timestamps, bad-type mask, naive mask).

    Aware values are converted to UTC. Naive values are localised to ``tz`` when given;
    without it, date-only values are taken as UTC calendar days and any other naive
    value is flagged.
    """
    n = len(s)
    none = np.zeros(n, bool)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC"), none, none
    if pd.api.types.is_datetime64_dtype(s.dtype):
        if tz is not None:
            loc = s.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
            return loc, s.notna().to_numpy() & loc.isna().to_numpy(), none
        midnight = (s == s.dt.normalize()).to_numpy(dtype=bool, na_value=False)
        naive = s.notna().to_numpy() & ~midnight
        return s.dt.tz_localize("UTC"), none, naive
    txt = s.astype("string").str.strip()
    has_offset = txt.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool, na_value=False)
    date_only = txt.str.fullmatch(_DATE_ONLY).to_numpy(dtype=bool, na_value=False)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    aware = present & has_offset
    if aware.any():
        out[aware] = pd.to_datetime(txt[aware], utc=True, errors="coerce", format="ISO8601")
    naive_txt = present & ~has_offset
    naive = none
    if naive_txt.any():
        parsed = pd.to_datetime(txt[naive_txt], errors="coerce", format="ISO8601")
        if tz is not None:
            out[naive_txt] = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
                "UTC"
            )
        else:
            day = naive_txt & date_only
            out[day] = parsed[day[naive_txt]].dt.tz_localize("UTC")
            naive = naive_txt & ~date_only & parsed.reindex(s.index).notna().to_numpy()
    bad = present & out.isna().to_numpy() & ~naive
    return out, bad, naive


# --------------------------------------------------------------------------- one table


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


def _rename(raw: pd.DataFrame, table: str, cfg: Config, problems: list[Problem]) -> pd.DataFrame | None:
    mapping = cfg.data.column_map(table)
    unknown = [
        c
        for c in mapping
        if c not in {col.name for col in SCHEMAS[table].columns} and not SCHEMAS[table].keeps_extra
    ]
    for c in unknown:
        problems.append(Problem(table, f"data.tables.{table}.columns maps unknown column {c!r}", c))
    missing_src = {canon: src for canon, src in mapping.items() if src not in raw.columns}
    for canon, src in missing_src.items():
        problems.append(Problem(table, f"mapped source column {src!r} not found", canon))
    inverse = {src: canon for canon, src in mapping.items() if src in raw.columns}
    df = raw.rename(columns=inverse) if inverse else raw
    missing = [c for c in SCHEMAS[table].required if c not in df.columns and c not in missing_src]
    for c in missing:
        problems.append(Problem(table, "required column missing", c))
    if missing or missing_src or unknown:
        return None
    return df


def _label_columns(table: str, cfg: Config) -> set[str]:
    if table == "customers":
        return {cfg.churn.label_column}
    if table == "leads" and cfg.leads.label_column:
        return {cfg.leads.label_column}
    return set()


def _coerce_table(
    df: pd.DataFrame, spec: TableSpec, cfg: Config, rows: _Rows, problems: list[Problem]
) -> dict[str, _Coerced]:
    """Coerce every column and mark the rows that break a column rule, in column order."""
    out: dict[str, _Coerced] = {}
    tz = cfg.data.source_timezone
    labels = _label_columns(spec.name, cfg)
    for col in df.columns:
        s = df[col]
        kind = spec.kind_of(col)
        required = col in spec.required
        if kind == "id":
            if pd.api.types.is_float_dtype(s.dtype):
                out[col], present = _coerce_float_id(s), s.notna().to_numpy()
            else:
                out[col], present = _coerce_text(s)
            if required:
                rows.mark(~present, f"null_id:{col}")
        elif kind == "timestamp":
            present = _present(s)
            vals, bad, naive = _coerce_timestamp(s, tz, present)
            out[col] = vals
            if required:
                rows.mark(~present, f"null_required:{col}")
            rows.mark(bad, f"bad_type:{col}")
            rows.mark(naive, f"naive_timestamp:{col}")
            if naive.any() and naive.sum() == present.sum():
                problems.append(
                    Problem(
                        spec.name,
                        "timestamps have no time zone; "
                        "set data.source_timezone (e.g. 'Europe/Berlin' or 'UTC')",
                        col,
                    )
                )
            elif present.any() and bad.sum() == present.sum():
                problems.append(Problem(spec.name, "no value could be read as an ISO 8601 timestamp", col))
        elif kind == "number":
            present = _present(s)
            vals, bad, non_finite = _coerce_number(s, present)
            out[col] = vals
            if required:
                rows.mark(~present, f"null_required:{col}")
            rows.mark(bad, f"bad_type:{col}")
            rows.mark(non_finite, f"non_finite:{col}")
            if present.any() and bad.sum() == present.sum():
                problems.append(Problem(spec.name, "no value could be read as a number", col))
        elif kind == "text" or (kind is None and col not in labels):
            if kind is None and not spec.keeps_extra:
                continue  # columns outside the contract of a non-attribute table are dropped
            if kind is None:
                out[col], present = _coerce_attribute(s)
            else:
                out[col], present = _coerce_text(s)
            if required:
                rows.mark(~present, f"null_required:{col}")
        else:  # a label column
            vals, bad = _coerce_bool(s, _present(s))
            out[col] = vals
            rows.mark(bad, f"bad_type:{col}")
    return out


def _coerce_attribute(s: pd.Series) -> tuple[_Coerced, np.ndarray]:
    """Attribute columns: numeric when every present value is a number, else text.

    Returns the values and the present mask.
    """
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float), s.notna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype):
        return s, s.notna().to_numpy()
    txt, present = _coerce_text(s)
    if not present.any():
        return txt, present
    # A few present values that are not numbers already decide "text" (the usual case).
    sample = s.iloc[np.flatnonzero(present)[:_SAMPLE]].astype("string").str.strip()
    if pd.to_numeric(sample, errors="coerce").isna().any():
        return txt, present
    vals = pd.to_numeric(s.astype("string").str.strip(), errors="coerce")
    if vals[present].notna().all():
        return vals.astype(float), present
    return txt, present


def _materialise(col: _Coerced, rows: np.ndarray | None, index: pd.Index) -> pd.Series:
    """The canonical series of ``col`` for the selected rows (all when ``None``), on ``index``."""
    if isinstance(col, _Text):
        return col.to_series(rows, index)
    if rows is None:
        return col if col.index.equals(index) else col.set_axis(index)
    return col.iloc[rows].set_axis(index) if rows.dtype != bool else col[rows].set_axis(index)


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


def _original_values(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows set aside with their original values as Python objects (``None`` for missing)."""
    if not rows.columns.is_unique:
        return rows.astype(object).where(rows.notna(), None)
    cols = {}
    for col in rows.columns:
        s = rows[col]
        if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
            cols[col] = pd.Series(_to_objects(pa.array(s.array)), index=rows.index, dtype=object, copy=False)
        else:
            cols[col] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(cols, index=rows.index, columns=rows.columns, copy=False)


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


def _validate_table(
    name: str,
    raw: pd.DataFrame,
    cfg: Config,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    parents: dict[str, _Keys],
    report: ValidationReport,
) -> pd.DataFrame | None:
    spec = SCHEMAS[name]
    treport = TableReport(rows_in=len(raw))
    report.tables[name] = treport
    problems: list[Problem] = []
    df = _rename(raw, name, cfg, problems)
    if df is None:
        report.problems.extend(problems)
        treport.set_aside["table_rejected"] = len(raw)
        return None
    n = len(df)
    if not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1):
        df = df.reset_index(drop=True)
    rows = _Rows(n)
    cols = _coerce_table(df, spec, cfg, rows, problems)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The parent lookup (Arrow, no GIL) runs while the other rules are checked.
        lookup = _start_parent_lookup(spec, cols, parents, pool)
        _mark_rules(name, spec, cols, rows, as_of, now)
        if spec.parent is not None:
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
            elif parent in report.tables:
                report.notes.append(
                    f"{name}: {parent} could not be validated; {col} was not checked against it"
                )
            else:
                report.notes.append(f"{name}: no {parent} table; {col} was not checked against it")

    ok = rows.ok
    treport.rows_kept = int(ok.sum())
    treport.set_aside.update(rows.counts())
    aside_mask = ~ok
    if aside_mask.any():
        aside = _original_values(df.loc[aside_mask])
        aside.insert(0, "_reason", rows.reasons(aside_mask))
        aside.insert(1, "_row", np.flatnonzero(aside_mask))
        report.quarantine[name] = aside
    report.problems.extend(problems)
    if treport.rows_kept == 0 and treport.rows_in > 0 and not problems:
        report.problems.append(Problem(name, "no usable rows left after validation"))
    if any(p.fatal for p in problems):
        return None
    assert treport.rows_in == treport.rows_kept + treport.rows_set_aside  # exact accounting
    all_ok = treport.rows_kept == n
    index = pd.RangeIndex(treport.rows_kept)
    keep = None if all_ok else ok
    # copy=False: every column is fresh or shared copy-on-write; no consolidation copies.
    clean = pd.DataFrame({c: _materialise(v, keep, index) for c, v in cols.items()}, index=index, copy=False)
    if spec.key is not None and name in ("customers", "leads") and spec.key in cols:
        key = cols[spec.key]
        values = None
        if isinstance(key, _Text):
            values = (key.values if all_ok else key.values.filter(pa.array(ok))).combine_chunks()
        parents[name] = _Keys(clean[spec.key], values)
    return clean


# --------------------------------------------------------------------------- public API


def _now_utc(now: datetime | pd.Timestamp | None) -> pd.Timestamp:
    ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def validate_tables(
    raw: dict[str, pd.DataFrame],
    cfg: Config,
    as_of: date | str | pd.Timestamp | None = None,
    now: datetime | pd.Timestamp | None = None,
    read_errors: dict[str, str] | None = None,
) -> tuple[CRMData, ValidationReport]:
    """Validate raw tables and return the canonical data with its report.

    Parameters
    ----------
    raw : dict
        Canonical table name → frame with the source's column names.
    cfg : Config
        Uses ``data`` (column maps, required tables, source time zone), and the label
        column names of ``churn`` and ``leads``.
    as_of : date-like, optional
        The cutoff day: rows whose event time is after it are set aside. Defaults to the
        UTC day of ``now`` (stated in the report).
    now : datetime, optional
        The moment of validation, for the ``in_future`` rule. Defaults to the clock.
    read_errors : dict, optional
        Tables that exist but could not be read (reported as problems).

    Returns
    -------
    data : CRMData
        The kept rows, canonical columns and dtypes. Tables with fatal problems are ``None``.
    report : ValidationReport
        Accounting, problems, notes and the rows set aside (``report.quarantine``).
    """
    return _validate_all(raw, cfg, as_of, now, read_errors, consume=False)


def input_digest(raw: dict[str, pd.DataFrame], cfg: Config, as_of: pd.Timestamp) -> dict[str, str]:
    """SHA-256 of the raw tables (:mod:`crmscore.core.digest`) and of what shapes their validation.

    ``"all"`` also covers the cutoff day, the ``data`` settings (column maps, time zone,
    required tables; not the store's location) and the label column names: the same
    inputs under the same settings give the same validated data. Hashing the tables as read
    is fast where they are Arrow-backed (Parquet, PostgreSQL ``COPY``).
    """
    from crmscore.core.digest import tables_digest

    settings = cfg.data.model_dump(mode="json", exclude={"crm_url", "folder", "quarantine"})
    extra = {
        "as_of": as_of.date().isoformat(),
        "data": settings,
        "labels": [cfg.churn.label_column, cfg.leads.label_column],
    }
    return tables_digest(raw, extra=extra)


def _validate_all(
    raw: dict[str, pd.DataFrame],
    cfg: Config,
    as_of: date | str | pd.Timestamp | None,
    now: datetime | pd.Timestamp | None,
    read_errors: dict[str, str] | None,
    *,
    consume: bool,
) -> tuple[CRMData, ValidationReport]:
    """:func:`validate_tables`; with ``consume`` each raw table is removed from ``raw`` once validated."""
    now_ts = _now_utc(now)
    as_of_ts = as_of_day(now_ts.normalize().tz_localize(None) if as_of is None else as_of)
    report = ValidationReport(as_of=as_of_ts, validated_at=now_ts)
    report.input_digest = input_digest(raw, cfg, as_of_ts)
    if as_of is None:
        report.notes.append(f"no as_of given: the cutoff is today, {as_of_ts.date().isoformat()} (UTC)")
    for name, msg in (read_errors or {}).items():
        report.problems.append(Problem(name, msg))
    for name in cfg.data.required_tables:
        if name not in raw and name not in (read_errors or {}):
            report.problems.append(Problem(name, "required table missing"))
    data = CRMData()
    parents: dict[str, _Keys] = {}  # kept keys of customers and leads
    for name in _ORDER:
        if name not in raw:
            if name not in cfg.data.required_tables and name not in (read_errors or {}):
                report.notes.append(f"{name}: optional table absent; its features will be absent")
            continue
        started = time.perf_counter()
        clean = _validate_table(name, raw[name], cfg, as_of_ts, now_ts, parents, report)
        if consume:
            del raw[name]  # the caller handed the raw tables over: free each once validated
        log.debug("validated %s in %.2f s", name, time.perf_counter() - started)
        if clean is not None:
            setattr(data, name, clean)
    for t, r in report.tables.items():
        if r.rows_set_aside:
            log.info("%s: %d of %d rows set aside %s", t, r.rows_set_aside, r.rows_in, dict(r.set_aside))
    return data, report


def score_lead_scope(cfg: Config, as_of: date | str | pd.Timestamp) -> LeadScope | None:
    """The :class:`crmscore.io.crm.LeadScope` of a scoring run at ``as_of``, or ``None``.

    Scoring uses the leads open at the cutoff whose conversion window is still running
    (:func:`crmscore.pipelines.features.build_lead_features`): created at or after
    ``cutoff_end - leads.conversion_window_days`` and not converted before ``cutoff_end``.
    The scope reads those with one day of margin on each bound. ``None`` (read every lead)
    with ``leads.include_stale`` or a ``leads.label_column``, which score every open lead.
    """
    from crmscore.io.crm import LeadScope

    lc = cfg.leads
    if lc.include_stale or lc.label_column is not None:
        return None
    end = cutoff_end(as_of)
    margin = pd.Timedelta(days=1)
    return LeadScope(
        created_since=(end - pd.Timedelta(days=lc.conversion_window_days) - margin).to_pydatetime(),
        open_since=(end - margin).to_pydatetime(),
        leads_columns=cfg.data.column_map("leads"),
        activities_columns=cfg.data.column_map("lead_activities"),
    )


def load_raw_tables(
    cfg: Config, lead_scope: LeadScope | None = None, notes: list[str] | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read every table present at the configured source (CRM store or folder).

    ``lead_scope`` (:func:`score_lead_scope`) limits the leads and activities read from a
    PostgreSQL store; ``notes`` receives what it left unread, or why it read every lead.
    """
    from crmscore.io.crm import create_engine, read_sql_tables, unscoped_note

    names = {t: cfg.data.table_name(t) for t in SCHEMAS}
    if cfg.data.source == "folder":
        from crmscore.io.files import read_folder

        if lead_scope is not None and notes is not None:
            notes.append(unscoped_note("files are read whole"))
        return read_folder(cfg.data.folder, names, cfg.data.file_format)

    engine = create_engine(cfg.data.resolved_crm_url())
    try:
        return read_sql_tables(engine, names, cfg.data.db_schema, lead_scope=lead_scope, notes=notes)
    finally:
        engine.dispose()


def load_validated(
    cfg: Config,
    as_of: date | str | pd.Timestamp | None = None,
    now: datetime | pd.Timestamp | None = None,
    *,
    for_scoring: bool = False,
) -> tuple[CRMData, ValidationReport]:
    """Read the configured source and validate it (see :func:`validate_tables`).

    With ``for_scoring`` (and ``as_of``), a PostgreSQL store is read in the scope of a
    scoring run (:func:`score_lead_scope`): only the leads that can be scored and their
    activities. What was not read is counted in ``report.notes``.
    """
    notes: list[str] = []
    scope = score_lead_scope(cfg, as_of) if for_scoring and as_of is not None else None
    raw, errors = load_raw_tables(cfg, lead_scope=scope, notes=notes)
    # The raw tables are ours alone: each is released as soon as it is validated.
    data, report = _validate_all(raw, cfg, as_of, now, errors, consume=True)
    report.notes.extend(notes)
    return data, report


def write_quarantine(report: ValidationReport, folder: str | Path) -> list[Path]:
    """Write the rows set aside (``<table>.csv`` with ``_reason`` and ``_row``) and ``report.json``.

    Files of an earlier run for tables that now have nothing set aside are removed, so the
    folder always describes the latest validation.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = root / f"{name}.csv"
        if name in report.quarantine:
            report.quarantine[name].to_csv(path, index=False)
            paths.append(path)
        elif path.exists():
            path.unlink()
    summary = root / "report.json"
    summary.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    paths.append(summary)
    return paths
