"""Coercion of raw columns to their contract types, over Arrow and pandas.

Each ``_coerce_*`` function reads one raw column as its kind (id and text, number, boolean,
timestamp, the free attributes of ``customers`` and ``leads``) and returns the values with
the masks of the rows that break a column rule (``bad_type``, ``non_finite``,
``naive_timestamp``); :mod:`crmscore.ingest.validation` marks those rows.

Timestamps: calendar days (``YYYY-MM-DD``, and ``YYYYMMDD`` as numbers or eight-digit text, a
year 1900–2100 with a real month and day: :func:`is_yyyymmdd`) are that day in UTC; a table's
strftime ``formats`` and ``dayfirst`` (``data.tables.<table>``) read other layouts. A value
read no declared way is bad, never guessed.

Id and text columns stay in Arrow (:class:`_Text`) until the kept rows are known, and
:func:`_materialise` then builds the canonical object column of just those rows, creating as
few Python strings as it can. :func:`_original_values` gives the rows set aside as they
were read, for the quarantine files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY = r"\d{4}-\d{2}-\d{2}"
_COMPACT = r"\d{8}"
#: ``D/M/YYYY`` or ``M/D/YYYY`` (either order; ``data.tables.<table>.dayfirst`` decides) and the rest.
_DAY_MONTH = r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})((?:[ T].*)?)$"
_TRUE = {"true", "t", "1", "yes", "y", "1.0"}
_FALSE = {"false", "f", "0", "no", "n", "0.0"}
#: Present values of a text attribute tried as numbers before the whole column is.
_SAMPLE = 64
#: Leading rows of a text column whose distinct count decides whether to share strings.
_DISTINCT_SAMPLE = 10_000


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


def _yyyymmdd(values: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Read integral numbers ``YYYYMMDD`` (years 1900–2100, a real month and day) as UTC days.

    Returns the timestamps (``NaT`` where not such a date) and the mask of the valid ones.
    """
    vals = np.asarray(values, dtype=float)
    ok = np.isfinite(vals) & (np.floor(vals) == vals) & (vals >= 19000101) & (vals <= 21001231)
    n = np.where(ok, vals, 0).astype(np.int64)
    year, month, day = n // 10_000, n // 100 % 100, n % 100
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    parts = pd.DataFrame({"year": np.where(ok, year, 2000), "month": np.where(ok, month, 1), "day": 1})
    first = pd.to_datetime(parts)
    ok &= day <= first.dt.days_in_month.to_numpy()
    days = first + pd.to_timedelta(np.where(ok, day - 1, 0), unit="D")
    out = days.where(ok).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    return out, ok


def is_yyyymmdd(s: pd.Series) -> bool:
    """Whether a column holds ``YYYYMMDD`` calendar days (CDNOW's ``19970101``).

    The rule: integer numbers, or text of exactly eight digits, every present value a date of
    the years 1900–2100 with a real month and day (at least one present value).
    """
    if pd.api.types.is_bool_dtype(s.dtype):
        return False
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.dropna().to_numpy(dtype=float)
    else:
        txt = s.dropna().astype("string").str.strip()
        txt = txt[txt != ""]
        if not txt.str.fullmatch(_COMPACT).all():
            return False
        vals = txt.astype(float).to_numpy()
    return len(vals) > 0 and bool(_yyyymmdd(vals)[1].all())


#: Directives of a strftime format that read a time of day (without them: calendar days).
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%X", "%c", "%T", "%R", "%z", "%Z")


def _with_format(
    txt: pd.Series, fmt: str, tz: str | None, present: np.ndarray
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Read text with the strftime ``fmt``: a value that does not match is bad, never guessed."""
    n = len(txt)
    none = np.zeros(n, bool)
    aware = "%z" in fmt or "%Z" in fmt
    out = pd.Series(pd.NaT, index=txt.index, dtype="datetime64[us, UTC]")
    naive = none
    if present.any():
        parsed = pd.to_datetime(txt[present], format=fmt, errors="coerce", utc=aware)
        if aware:
            out[present] = parsed
        elif not any(d in fmt for d in _TIME_DIRECTIVES):  # a calendar day: UTC
            out[present] = parsed.dt.tz_localize("UTC")
        elif tz is not None:
            out[present] = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
        else:
            naive = present.copy()
            naive[present] = parsed.notna().to_numpy()
    bad = present & out.isna().to_numpy() & ~naive
    return out, bad, naive


def _numeric_text(s: pd.Series) -> pd.Series:
    """Numbers as text, integral floats without their ``.0`` (``19970101.0`` → ``"19970101"``)."""
    vals = s.to_numpy(dtype=float, na_value=np.nan)
    integral = np.isfinite(vals) & (np.floor(vals) == vals)
    txt = np.where(integral, np.nan_to_num(vals).astype(np.int64).astype(str), s.astype(str))
    return pd.Series(txt, index=s.index, dtype="string").where(s.notna())


def _day_month_to_iso(txt: pd.Series, dayfirst: bool) -> pd.Series:
    """Rewrite ``D/M/YYYY`` (``dayfirst``) or ``M/D/YYYY`` values as ISO ``YYYY-MM-DD``.

    Separators ``/``, ``.`` or ``-``; a four-digit year; what follows the date (a time, an
    offset) is kept. Other values are left as they are.
    """
    parts = txt.str.extract(_DAY_MONTH)
    found = parts[0].notna().to_numpy()
    if not found.any():
        return txt
    day, month = (parts[0], parts[1]) if dayfirst else (parts[1], parts[0])
    iso = parts[2] + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + parts[3].fillna("")
    return txt.where(~found, iso)


def _coerce_timestamp(
    s: pd.Series,
    tz: str | None,
    present: np.ndarray,
    fmt: str | None = None,
    dayfirst: bool | None = None,
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (UTC timestamps, bad-type mask, naive mask).

    Aware values are converted to UTC. Calendar days (date-only ``YYYY-MM-DD``, ``YYYYMMDD``
    numbers or text) are that day in UTC, whatever ``tz``. Other naive values are localised
    to ``tz`` when given, else flagged. With ``fmt`` (a strftime format) text is read with it
    only; with ``dayfirst`` numeric ``D/M/YYYY`` (``True``) or ``M/D/YYYY`` (``False``) dates
    are read too. A value read no way is bad, never guessed.
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
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if numeric and fmt is None:  # numbers are YYYYMMDD calendar days or nothing
        out, ok = _yyyymmdd(s.to_numpy(dtype=float, na_value=np.nan))
        return out.set_axis(s.index), present & ~ok, none
    txt = _numeric_text(s) if numeric else s.astype("string").str.strip()
    if fmt is not None:
        return _with_format(txt, fmt, tz, present)
    if dayfirst is not None:
        txt = _day_month_to_iso(txt, dayfirst)
    compact = txt.str.fullmatch(_COMPACT).to_numpy(dtype=bool, na_value=False)
    if compact.any():  # YYYYMMDD text: a calendar day, or bad
        days, ok = _yyyymmdd(txt[compact].astype(float).to_numpy())
        txt = txt.copy()
        txt[compact] = days.dt.strftime("%Y-%m-%d").to_numpy()
    has_offset = txt.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool, na_value=False)
    date_only = txt.str.fullmatch(_DATE_ONLY).to_numpy(dtype=bool, na_value=False)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    aware = present & has_offset
    if aware.any():
        out[aware] = pd.to_datetime(txt[aware], utc=True, errors="coerce", format="ISO8601")
    day = present & ~has_offset & date_only
    if day.any():
        out[day] = pd.to_datetime(txt[day], errors="coerce", format="ISO8601").dt.tz_localize("UTC")
    naive_txt = present & ~has_offset & ~date_only
    naive = none
    if naive_txt.any():
        parsed = pd.to_datetime(txt[naive_txt], errors="coerce", format="ISO8601")
        if tz is not None:
            out[naive_txt] = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
                "UTC"
            )
        else:
            naive = naive_txt & parsed.reindex(s.index).notna().to_numpy()
    bad = present & out.isna().to_numpy() & ~naive
    return out, bad, naive


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
