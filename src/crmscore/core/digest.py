"""SHA-256 digests of tables, column by column, from their raw bytes.

A digest identifies the data a job ran on (MLflow's data summary, the scoring run id) without
any row leaving the process. It is order-sensitive and value-exact: the same rows in the same
order, with the same column names and dtypes, give the same digest, however the columns are
chunked in memory (text counts as one dtype, whether held as Python or Arrow strings).

Numbers and timestamps are hashed as their machine bytes. Text is hashed from Arrow string
buffers (validity, value lengths and UTF-8 bytes), zero-copy for Arrow-backed columns such as
those read from Parquet or a PostgreSQL ``COPY``; object columns are converted to Arrow first.
Anything else (mixed objects, categoricals) goes through ``pandas.util.hash_pandas_object``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from crmscore.core.schema import CRMData

__all__ = ["data_digest", "frame_digest", "tables_digest"]


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
    total = hashlib.sha256()
    out: dict[str, str] = {}
    for name in sorted(tables):
        df = tables[name]
        if df is None:
            continue
        out[name] = frame_digest(df)
        total.update(f"{name}:{out[name]}\n".encode())
    if extra:
        total.update(json.dumps(extra, sort_keys=True, default=str).encode())
    out["all"] = total.hexdigest()
    return out


def data_digest(data: CRMData) -> dict[str, str]:
    """SHA-256 of every validated table of ``data`` (and ``"all"`` over them), column by column.

    Order-sensitive and value-exact: the same rows in the same order give the same digest.
    No row content leaves this function.
    """
    return tables_digest({name: data.get(name) for name in data.table_names()})
