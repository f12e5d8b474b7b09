"""Digests of tables and settings: what a job ran on, without any row leaving the process.

Two families:

* **Content digests** (:func:`table_content_digest`, :func:`content_digests`,
  :func:`settings_digest`): what the scores depend on, the scoring run id
  (:mod:`crmscore.pipelines.score`) and the data summary of training. A table's digest covers
  its *logical* content: the rows known at ``as_of`` (event time before ``cutoff_end(as_of)``,
  :data:`crmscore.core.schema.EVENT_TIME`; a missing event time is kept), dates recorded after
  the cutoff (``churned_at``, ``converted_at``, ``closed_at``, and a lead's ``customer_id`` set
  by such a conversion) counted as missing, as the features read them. It does not depend on
  the row order, on the column order, on how a column is stored (text as Python objects or
  Arrow strings, chunked or not; timestamps in ns or us) or on ``-0.0`` vs ``0.0``: each row
  gets a 64-bit hash (each value hashed by kind, salted by its column's name and kind, mixed
  with splitmix64's finaliser, summed, mixed again), and the table's digest is SHA-256 over
  its column names and kinds, its row count and two sums (mod 2**64) of the row hashes, the
  second after re-mixing them with another key: a multiset hash (duplicates count) that a
  changed row always changes unless its 64-bit hash collides. Text is hashed from the Arrow
  buffers eight bytes at a time (numpy, no Python object per value); the validation computes
  the digests from the Arrow columns it holds anyway
  (:func:`crmscore.ingest.validation.input_digest`). A change detector, not a seal: the hashes
  are not keyed by a secret, so crafted rows could collide on purpose.
* **Byte digests** (:func:`frame_digest`, :func:`tables_digest`, :func:`data_digest`):
  order-sensitive and value-exact SHA-256 of a frame as held: the same rows in the same order,
  with the same column names and dtypes, give the same digest, however the columns are chunked
  in memory (text counts as one dtype, whether held as Python or Arrow strings). Numbers and
  timestamps are hashed as their machine bytes; text from Arrow string buffers (validity, value
  lengths and UTF-8 bytes), zero-copy for Arrow-backed columns; anything else (mixed objects,
  categoricals) through ``pandas.util.hash_pandas_object``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from crmscore.core.schema import CRMData
    from crmscore.core.time import DateLike

__all__ = [
    "combine_digests",
    "content_digests",
    "data_digest",
    "frame_digest",
    "settings_digest",
    "table_content_digest",
    "tables_digest",
]

#: A column as :func:`table_content_digest` takes it: a pandas Series or an Arrow (chunked) array.
Column = pd.Series | pa.Array | pa.ChunkedArray


def _string_chunks(s: pd.Series) -> list[pa.Array] | None:
    """The column as Arrow string chunks, or None when it is not text."""
    if hasattr(s.array, "__arrow_array__") and not isinstance(s.dtype, pd.CategoricalDtype):
        arr = s.array.__arrow_array__()
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        if all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in chunks):
            return list(chunks)
        return None
    if s.dtype == np.dtype(object):
        try:
            return [pa.array(s.to_numpy(), type=pa.large_string(), from_pandas=True)]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    return None


def _hash_strings(h: Any, chunks: list[pa.Array]) -> None:
    """Validity, lengths and bytes of text chunks, in three streams (chunking-independent)."""
    valid, lengths, data = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        valid.update(np.ascontiguousarray(chunk.is_valid().to_numpy(zero_copy_only=False)))
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths.update(np.diff(offsets).astype(np.int64))
        buf = chunk.buffers()[2]
        if buf is not None:
            data.update(memoryview(buf)[int(offsets[0]) : int(offsets[-1])])
    h.update(valid.digest() + lengths.digest() + data.digest())


def _hash_column(h: Any, s: pd.Series) -> None:
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        h.update(f"{s.name}\x1f{dtype}\n".encode())
        h.update(np.ascontiguousarray(pd.DatetimeIndex(s).asi8))
        return
    if pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        h.update(f"{s.name}\x1f{dtype}\n".encode())
        if isinstance(dtype, np.dtype):
            h.update(np.ascontiguousarray(s.to_numpy()).view(np.uint8))
        else:  # nullable extension numbers: mask and values
            h.update(np.ascontiguousarray(s.isna().to_numpy(dtype=bool)))
            h.update(np.ascontiguousarray(s.to_numpy(dtype=np.float64, na_value=np.nan)))
        return
    chunks = _string_chunks(s)
    if chunks is not None:  # text hashes alike whether held as objects or Arrow strings
        h.update(f"{s.name}\x1ftext\n".encode())
        _hash_strings(h, chunks)
        return
    h.update(f"{s.name}\x1f{dtype}\n".encode())
    h.update(pd.util.hash_pandas_object(s, index=False, categorize=False).to_numpy().tobytes())


def frame_digest(df: pd.DataFrame) -> str:
    """SHA-256 (hex) of a frame's shape, column names, dtypes and values (not its index)."""
    h = hashlib.sha256()
    h.update(f"{len(df)}\x1f{df.shape[1]}\n".encode())
    for i in range(df.shape[1]):
        _hash_column(h, df.iloc[:, i])
    return h.hexdigest()


def tables_digest(
    tables: Mapping[str, pd.DataFrame | None], extra: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Digest of each present table and ``"all"`` over them (and over ``extra``, JSON-encoded).

    Parameters
    ----------
    tables : mapping
        Table name to frame (``None``: absent, skipped).
    extra : mapping, optional
        Settings that change what the tables mean (e.g. the ``data`` config block); they
        enter ``"all"`` only.

    Returns
    -------
    dict
        ``{table: hex digest, ..., "all": hex digest}``.
    """
    out = {name: frame_digest(df) for name in sorted(tables) if (df := tables[name]) is not None}
    out["all"] = combine_digests(out, extra)
    return out


def combine_digests(parts: Mapping[str, str], extra: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) over named digests (in name order) and ``extra`` (JSON-encoded).

    Parameters
    ----------
    parts : mapping
        Name (e.g. a table) to hex digest; an ``"all"`` entry is ignored.
    extra : mapping, optional
        Settings that change what the parts mean (e.g. the ``data`` config block).
    """
    total = hashlib.sha256()
    for name in sorted(parts):
        if name != "all":
            total.update(f"{name}:{parts[name]}\n".encode())
    if extra:
        total.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return total.hexdigest()


def data_digest(data: CRMData) -> dict[str, str]:
    """SHA-256 of every validated table of ``data`` (and ``"all"`` over them), column by column.

    Order-sensitive and value-exact: the same rows in the same order give the same digest.
    No row content leaves this function.
    """
    return tables_digest({name: data.get(name) for name in data.table_names()})


# --------------------------------------------------------------------------- content digests

_U64 = np.uint64
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser constants
_MIX2 = np.uint64(0x94D049BB133111EB)
_LENGTH = np.uint64(0x9E3779B97F4A7C15)  # seeds a text hash with the value's length
_SECONDS = np.uint64(0xC2B2AE3D27D4EB4F)  # separates a timestamp's seconds from its nanoseconds
#: the hash of a missing value, whatever its kind (a column's salt then tells columns apart)
_MISSING = np.uint64(0x6A09E667F3BCC908)
#: the key of the second sum of a table's row hashes
_SECOND_SUM = np.uint64(0x3C6EF372FE94F82B)
#: bytes masks of the last, partial word of a text value (0 to 8 bytes)
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
#: rows hashed at a time (the temporaries stay in cache)
_BLOCK_ROWS = 1 << 16
#: text values up to this many words are hashed on the whole block at once; longer ones after
_SHORT_WORDS = 4
#: a text chunk of values of several lengths with at most one distinct value in ten among its
#: first rows is hashed per distinct value (Arrow dictionary encoding: up to 2x faster)
_DISTINCT_SAMPLE = 10_000
#: dates recorded after the event itself: unknown at a cutoff before them (counted as missing)
_RECORDED_LATER = ("churned_at", "converted_at", "closed_at")
#: the nanoseconds in one tick of each datetime unit
_TICK_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of 64-bit words), in place; returns ``x``."""
    x ^= x >> _U64(30)
    x *= _MIX1
    x ^= x >> _U64(27)
    x *= _MIX2
    x ^= x >> _U64(31)
    return x


def _salt(name: str, kind: str) -> np.uint64:
    """64 bits of SHA-256 of a column's name and kind: the same value in two columns differs."""
    return np.uint64(int.from_bytes(hashlib.sha256(f"{name}\x1f{kind}".encode()).digest()[:8], "little"))


def _absorb(
    h: np.ndarray, words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, k0: int, k1: int
) -> None:
    """Absorb words ``k0`` to ``k1 - 1`` of each value into its hash ``h``, in place.

    ``words`` are the column's bytes as little-endian 64-bit words, zero-padded by
    ``_SHORT_WORDS + 1`` words, ``starts`` the values' byte offsets into them: the word at an
    unaligned offset is two aligned words shifted, each aligned word read once. Bytes past a
    value's end are masked out; a value without a ``k``-th word keeps its hash. At most
    ``_SHORT_WORDS`` words past those every value has (the padding).
    """
    q = starts >> 3
    shift = ((starts & 7) << 3).astype(np.uint64)
    back = _U64(64) - shift  # (a shift by 64 gives 0 in numpy: an aligned value needs no high part)
    low = words[q + k0]
    shortest = int(lengths.min(initial=0))
    for k in range(k0, k1):
        high = words[q + (k + 1)]
        w = low >> shift
        w |= high << back
        if shortest < 8 * (k + 1):  # some value ends within this word
            w &= _BYTE_MASKS[np.clip(lengths - 8 * k, 0, 8)]
        if shortest > 8 * k:  # every value has this word
            h ^= w
            _mix(h)
        else:
            absorbed = _mix(h ^ w)
            np.copyto(h, absorbed, where=lengths > 8 * k)
        low = high


def _absorb_fixed(h: np.ndarray, data: np.ndarray, length: int) -> None:
    """:func:`_absorb` of every word of values that all have ``length`` bytes (``data``, in order).

    The values are rows of a ``(n, length)`` byte matrix, copied block by block into whole
    zero-padded words: no gathers (about twice as fast as :func:`_absorb`).
    """
    n, words = len(h), (length + 7) // 8
    values = data.reshape(n, length)
    for r0 in range(0, n, _BLOCK_ROWS):
        rows = slice(r0, min(n, r0 + _BLOCK_ROWS))
        padded = np.zeros((rows.stop - r0, 8 * words), dtype=np.uint8)
        padded[:, :length] = values[rows]
        block, w = h[rows], padded.view(np.uint64)
        for k in range(words):
            block ^= w[:, k]
            _mix(block)


def _chunk_text_hashes(chunk: pa.Array, salt: np.uint64, *, by_distinct: bool = True) -> np.ndarray:
    """The hash of each value of an Arrow string chunk (missing: ``mix(_MISSING ^ salt)``).

    A value's hash depends on its UTF-8 bytes (and ``salt``) only: ``h = length * c ^ salt``,
    then each 8-byte word ``w`` (the last one zero-padded) absorbed as ``h = mix(h ^ w)``.
    Values of one length (ids) are hashed as whole words (:func:`_absorb_fixed`); a repetitive
    chunk of values of several lengths (``by_distinct``: at most one distinct value in ten among
    its first rows) once per distinct value (Arrow dictionary encoding); the rest
    (:func:`_absorb`) eight bytes at a time from the Arrow buffers.
    """
    n = len(chunk)
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + n + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    fixed = n > 0 and not chunk.null_count and lengths.min() == lengths.max()
    repetitive = (
        not fixed
        and by_distinct
        and n > _DISTINCT_SAMPLE
        and pc.count_distinct(chunk.slice(0, _DISTINCT_SAMPLE)).as_py() <= _DISTINCT_SAMPLE // 10
    )
    if repetitive:
        enc = pc.dictionary_encode(chunk)
        distinct = np.append(_chunk_text_hashes(enc.dictionary, salt, by_distinct=False), _missing(salt))
        return distinct[enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)]
    first, last = int(offsets[0]), int(offsets[-1])
    words = np.zeros((last - first + 7) // 8 + _SHORT_WORDS + 1, dtype=np.uint64)  # (see _absorb)
    data = chunk.buffers()[2]
    if data is not None and last > first:
        words.view(np.uint8)[: last - first] = np.frombuffer(data, dtype=np.uint8)[first:last]
    out = lengths.astype(np.uint64)
    out *= _LENGTH
    out ^= salt  # mixed with the first word (the row hash mixes an empty value's)
    if fixed:
        _absorb_fixed(out, words.view(np.uint8)[: last - first], int(lengths[0]))
        return out
    starts = offsets[:-1] - first
    for r0 in range(0, n, _BLOCK_ROWS):
        rows = slice(r0, min(n, r0 + _BLOCK_ROWS))
        h, s, ln = out[rows], starts[rows], lengths[rows]
        longest = int(ln.max(initial=0))
        _absorb(h, words, s, ln, 0, min(_SHORT_WORDS, (longest + 7) // 8))
        k = _SHORT_WORDS
        longer = np.flatnonzero(ln > 8 * k)  # the rest of longer values, a few words at a time
        while len(longer):
            part = h[longer]
            _absorb(part, words, s[longer], ln[longer], k, k + _SHORT_WORDS)
            h[longer] = part
            k += _SHORT_WORDS
            longer = longer[ln[longer] > 8 * k]
    if chunk.null_count:
        out[~np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)] = _missing(salt)
    return out


def _missing(salt: np.uint64) -> np.uint64:
    """The contribution of a missing value to a row's hash in the column of ``salt``."""
    return _mix(np.array([_MISSING ^ salt], dtype=np.uint64))[0]


def _text_hashes(chunks: list[pa.Array], salt: np.uint64) -> np.ndarray:
    """Per-row hashes of text chunks (:func:`_chunk_text_hashes`), concatenated."""
    parts = [_chunk_text_hashes(chunk, salt) for chunk in chunks if len(chunk)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)


def _time_values(s: pd.Series) -> np.ndarray:
    """Instants as nanoseconds since the epoch, whatever the unit held (naive taken as UTC).

    A column with an instant beyond the nanosecond range (years before 1678 or after 2261) is
    counted in seconds and nanoseconds of the second instead: the same for any unit.
    """
    idx = pd.DatetimeIndex(s)
    ticks = idx.asi8
    missing = np.asarray(idx.isna())
    tick = _TICK_NS[idx.unit]
    limit = np.iinfo(np.int64).max // tick
    present = ticks[~missing] if missing.any() else ticks
    if tick == 1 or not len(present) or (-limit <= present.min() and present.max() <= limit):
        out = (ticks * tick).view(np.uint64)
    else:
        seconds, rest = np.divmod(ticks, 1_000_000_000 // tick)
        out = _mix(seconds.astype(np.uint64) ^ _SECONDS)
        out += (rest * tick).astype(np.uint64)
    out[missing] = _MISSING
    return out


def _number_values(s: pd.Series) -> np.ndarray:
    """Numbers as float64 bits (``-0.0`` is ``0.0``; NaN and NA are missing)."""
    values = s.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # a fresh array; -0.0 + 0.0 == 0.0
    out = values.view(np.uint64)
    out[np.isnan(values)] = _MISSING
    return out


def _bool_values(s: pd.Series) -> np.ndarray:
    out = s.to_numpy(dtype=bool, na_value=False).astype(np.uint64)
    out[s.isna().to_numpy()] = _MISSING
    return out


def _column_hashes(name: str, values: Column, unknown: np.ndarray | None = None) -> tuple[str, np.ndarray]:
    """``(kind, each row's contribution)`` of one column to the row hashes.

    The kind is ``text``, ``time``, ``number``, ``bool`` or ``other:<dtype>`` (hashed by
    ``pandas.util.hash_pandas_object``); the contributions are salted by the column's name and
    kind and mixed. ``unknown`` marks values to count as missing.
    """
    if isinstance(values, pa.Array | pa.ChunkedArray):
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        if all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in chunks):
            return _text_contributions(name, list(chunks), unknown)
        values = values.to_pandas()
    s = values
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        kind, h = "time", _time_values(s)
    elif pd.api.types.is_bool_dtype(dtype):
        kind, h = "bool", _bool_values(s)
    elif pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        kind, h = "number", _number_values(s)
    elif (chunks := _string_chunks(s)) is not None:
        return _text_contributions(name, chunks, unknown)
    else:
        kind = f"other:{dtype}"
        h = pd.util.hash_pandas_object(s, index=False).to_numpy(dtype=np.uint64, copy=True)
    if unknown is not None:
        h[unknown] = _MISSING
    h ^= _salt(name, kind)
    return kind, _mix(h)


def _text_contributions(
    name: str, chunks: list[pa.Array], unknown: np.ndarray | None
) -> tuple[str, np.ndarray]:
    """``("text", contributions)``: text hashes are salted from the start (no second mix)."""
    salt = _salt(name, "text")
    h = _text_hashes(chunks, salt)
    if unknown is not None:
        h[unknown] = _missing(salt)
    return "text", h


def _at_or_after(values: Column, end: pd.Timestamp) -> np.ndarray | None:
    """Rows whose instant is at or after ``end`` (missing: no); None when not timestamps."""
    s = values.to_pandas() if isinstance(values, pa.Array | pa.ChunkedArray) else values
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        s = s.dt.tz_localize("UTC")
    elif not isinstance(dtype, pd.DatetimeTZDtype):
        return None
    return (s >= end).to_numpy(dtype=bool, na_value=False)


def table_content_digest(
    table: str,
    columns: Mapping[str, Column],
    *,
    as_of: DateLike | None = None,
    rows: np.ndarray | None = None,
) -> str:
    """SHA-256 (hex) of the logical content of one table (see the module docstring).

    Parameters
    ----------
    table : str
        Canonical table name: picks its event time (:data:`crmscore.core.schema.EVENT_TIME`)
        and enters the digest.
    columns : mapping
        Column name to values (a pandas Series, or Arrow string arrays), all of one length.
    as_of : date-like, optional
        The cutoff day: rows whose event time is at or after ``cutoff_end(as_of)`` are left
        out, and the dates recorded after it count as missing. None: every row as it is.
    rows : numpy.ndarray, optional
        Boolean mask of the rows to digest (e.g. the rows validation keeps); default all.

    Returns
    -------
    str
        64 hex digits; the same for the same rows in any order.
    """
    from crmscore.core.schema import EVENT_TIME
    from crmscore.core.time import cutoff_end

    n = len(rows) if rows is not None else len(next(iter(columns.values()))) if columns else 0
    keep = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool).copy()
    unknown: dict[str, np.ndarray] = {}
    if as_of is not None:
        end = cutoff_end(as_of)
        event = EVENT_TIME.get(table)
        later = _at_or_after(columns[event], end) if event in columns else None
        if later is not None:
            keep &= ~later
        for name in _RECORDED_LATER:
            if name in columns and (later := _at_or_after(columns[name], end)) is not None:
                unknown[name] = later
        if table == "leads" and "converted_at" in unknown and "customer_id" in columns:
            unknown["customer_id"] = unknown["converted_at"]  # known from the conversion on
    row_hash = np.zeros(n, dtype=np.uint64)
    described = []
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"{table}.{name}: {len(values)} values, expected {n}")
        kind, h = _column_hashes(name, values, unknown.get(name))
        row_hash += h
        described.append([name, kind])
    _mix(row_hash)
    kept = row_hash if keep.all() else row_hash[keep]
    first = int(kept.sum(dtype=np.uint64))
    kept ^= _SECOND_SUM
    second = int(_mix(kept).sum(dtype=np.uint64))
    payload = {"table": table, "rows": len(kept), "columns": sorted(described), "sums": [first, second]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def content_digests(data: CRMData, as_of: DateLike | None) -> dict[str, str]:
    """:func:`table_content_digest` of every present table of ``data`` at ``as_of``.

    The same values as the validation's (``ValidationReport.input_digest``, computed from
    the columns before they become Python objects, which is faster) for the tables it kept.

    Raises
    ------
    ValueError
        A table has two columns of one name.
    """
    out = {}
    for name, df in data.tables().items():
        if not df.columns.is_unique:
            raise ValueError(f"{name}: duplicate column names {sorted(df.columns[df.columns.duplicated()])}")
        out[name] = table_content_digest(name, {str(c): s for c, s in df.items()}, as_of=as_of)
    return out


def settings_digest(settings: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of settings as canonical JSON (keys sorted; dates and paths as text).

    Parameters
    ----------
    settings : mapping
        Plain values (e.g. config blocks dumped with ``model_dump(mode="json")``).
    """
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
