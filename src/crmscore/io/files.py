"""Read and write CRM tables as a folder of CSV or Parquet files.

One file per table, named after the table (``transactions.csv``, ``customers.parquet``;
the name can be mapped in ``data.tables.<table>.name``). CSV files are read with every
column as text so that type coercion and its quarantine rules (``crmscore.ingest.validation``)
see the original values; Parquet keeps its own types.

Reading rules (each problem is the table's, named, never a crash):

- **Empty files.** A file of 0 bytes (or only blank lines) is read as an empty frame without
  columns, a header-only CSV or a Parquet file without rows as an empty frame with its
  columns; validation treats an empty optional table as absent and an empty required one as
  unusable.
- **Duplicate column names** (a CSV header or a Parquet schema naming a column twice) make the
  file unreadable, with the names. The CSV header is read as written (pandas would rename the
  second ``customer_id`` to ``customer_id.1``).
- **Encoding.** A CSV file is decoded with its table's ``data.tables.<table>.encoding``
  (default UTF-8). When a byte does not decode, the file is read again byte by byte: the
  undecodable bytes are kept as ``\\xNN`` escapes and the rows holding them are listed in the
  frame's ``attrs[BAD_ENCODING]`` (:meth:`BadEncoding.of`), so that validation sets exactly those
  rows aside (reason ``bad_encoding``) and keeps the others. A row is the CSV record holding the
  byte: one line, or several when a quoted field holds line breaks; when records cannot be
  told apart (line breaks inside quotes *and* stray quotes inside unquoted fields) the file is
  unreadable, with the line numbers. A bad byte in the header makes the file unreadable. Only
  encodings that write ASCII as ASCII (UTF-8, Latin-1, cp1252 …) are read this way.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["BAD_ENCODING", "BadEncoding", "find_table_file", "read_folder", "write_folder", "write_table"]

log = logging.getLogger(__name__)

FileFormat = Literal["auto", "csv", "parquet"]
_SUFFIXES = {"csv": (".csv", ".csv.gz"), "parquet": (".parquet", ".pq")}


def find_table_file(folder: Path, name: str, file_format: FileFormat = "auto") -> Path | None:
    """Return the file holding table ``name`` in ``folder``, or ``None``.

    Raises
    ------
    ValueError
        With ``file_format="auto"``, both a CSV and a Parquet file exist for the table.
    """
    formats = ("csv", "parquet") if file_format == "auto" else (file_format,)
    found = [
        folder / f"{name}{suffix}"
        for fmt in formats
        for suffix in _SUFFIXES[fmt]
        if (folder / f"{name}{suffix}").is_file()
    ]
    if len(found) > 1:
        raise ValueError(
            f"table {name!r} is ambiguous in {folder}: {', '.join(p.name for p in found)}; "
            "keep one or set data.file_format"
        )
    return found[0] if found else None


#: ``DataFrame.attrs`` key of a CSV frame some of whose rows held bytes that did not decode
BAD_ENCODING = "crmscore.bad_encoding"


@dataclass(frozen=True)
class BadEncoding:
    """The rows of a CSV file holding bytes that do not decode in its encoding.

    Attributes
    ----------
    rows : tuple of int
        0-based data rows (the header and blank lines not counted), ascending: the ``_row`` of
        the quarantine.
    lines : tuple of int
        1-based lines of the file holding an undecodable byte, ascending.
    encoding : str
        The encoding the file was decoded with.
    file : str
        The file's name.
    """

    rows: tuple[int, ...]
    lines: tuple[int, ...]
    encoding: str
    file: str

    @classmethod
    def of(cls, frame: pd.DataFrame) -> BadEncoding | None:
        """What ``frame.attrs[BAD_ENCODING]`` holds (kept there as plain JSON-ready values)."""
        found = frame.attrs.get(BAD_ENCODING)
        if found is None:
            return None
        return cls(tuple(found["rows"]), tuple(found["lines"]), found["encoding"], found["file"])


def _is_csv_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def _csv_header(path: Path, encoding: str) -> list[str]:
    """The first non-blank record of a CSV file, as written (duplicate names not renamed)."""
    opener = gzip.open if _is_csv_gz(path) else open
    with opener(path, "rt", encoding=encoding, errors="replace", newline="") as fh:  # type: ignore[operator]
        for record in csv.reader(fh):
            if any(field.strip() for field in record):
                return record
    return []


def _duplicates(names: list[str]) -> list[str]:
    return [name for name, n in Counter(names).items() if n > 1]


def _duplicate_message(names: list[str]) -> str:
    listed = ", ".join(repr(n) for n in names)
    return f"duplicate column name(s) {listed}: each column must be named once (rename or drop the copies)"


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    dups = _duplicates(list(pq.read_schema(path).names))
    if dups:
        raise ValueError(_duplicate_message(dups))
    return pd.read_parquet(path)


_CSV_TEXT = {"dtype": str, "keep_default_na": False, "na_values": [""]}


def _read_csv(path: Path, encoding: str, table: str) -> pd.DataFrame:
    """Read a CSV file as text; a byte that does not decode sends it to :func:`_read_csv_bytes`."""
    dups = _duplicates(_csv_header(path, encoding))
    if dups:
        raise ValueError(_duplicate_message(dups))
    # Text in, so coercion can report the original value of anything that fails to parse.
    try:
        return pd.read_csv(path, encoding=encoding, **_CSV_TEXT)
    except pd.errors.EmptyDataError:  # only blank lines
        return pd.DataFrame()
    except UnicodeDecodeError as exc:
        log.debug("%s: a byte does not decode as %s (%s): locating the rows", path.name, encoding, exc.reason)
    return _read_csv_bytes(path, encoding, table)


def _ascii_compatible(encoding: str) -> bool:
    probe = '\n\r\t ",;|azAZ09'
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except UnicodeError:
        return False


#: bytes decoded at a time by :func:`_decode_marking` (cut after a newline)
_DECODE_BLOCK = 1 << 20


def _decode_marking(data: bytes, encoding: str) -> tuple[str, list[int]]:
    """``data`` decoded, each undecodable byte run as ``\\xNN`` escapes; the offsets of those runs.

    Decoded in blocks of about :data:`_DECODE_BLOCK` bytes ending after a newline (in an
    ASCII-compatible encoding no character holds a newline byte). A block that does not decode
    is decoded line by line, and a line that does not decode stretch by stretch between its bad
    bytes. A ``UnicodeDecodeError`` holds a copy of its input: decoding small pieces keeps the
    work linear in the size of the file, whatever the number of bad bytes.
    """
    decode = codecs.getdecoder(encoding)
    view = memoryview(data)
    parts: list[str] = []
    offsets: list[int] = []

    def line(pos: int, stop: int) -> None:
        while True:
            try:
                parts.append(decode(view[pos:stop])[0])
                return
            except UnicodeDecodeError as exc:
                bad, end = pos + exc.start, pos + max(exc.end, exc.start + 1)
            parts.append(decode(view[pos:bad])[0])
            parts.append(decode(view[bad:end], "backslashreplace")[0])
            offsets.append(bad)
            pos = end

    start = 0
    while start < len(data):
        cut = data.find(b"\n", min(start + _DECODE_BLOCK, len(data)) - 1)
        stop = len(data) if cut == -1 else cut + 1
        try:
            parts.append(decode(view[start:stop])[0])
        except UnicodeDecodeError:
            pos = start
            while pos < stop:
                nl = data.find(b"\n", pos, stop)
                end = stop if nl == -1 else nl + 1
                line(pos, end)
                pos = end
        start = stop
    return "".join(parts), offsets


_BLANK = np.frombuffer(b" \t\r", np.uint8)


def _record_rows(arr: np.ndarray, offsets: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, int]:
    """Data row (0-based; ``-1``: the header) of each offset, and the number of data rows.

    ``ends`` are the positions of the newlines that end a record. Records of blank characters
    only (spaces, tabs, ``\\r``) are skipped, as pandas skips blank lines.
    """
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(arr)]))
    length = stops - starts
    content = length > 0
    first = arr[np.minimum(starts, len(arr) - 1)]
    for i in np.flatnonzero(content & np.isin(first, _BLANK)):  # few: records starting blank
        content[i] = not np.isin(arr[starts[i] : stops[i]], _BLANK).all()
    rank = np.cumsum(content)  # records with content up to and including each record
    record = np.searchsorted(ends, offsets)  # the record holding each offset
    return rank[record] - 2, int(rank[-1]) - 1


def _unquoted(arr: np.ndarray, newlines: np.ndarray) -> np.ndarray | None:
    """The newlines outside double quotes (an even number of quotes before them); ``None``: no quotes."""
    quotes = arr == 0x22
    if not quotes.any():
        return None
    # quotes before the first newline, then between consecutive newlines
    per_line = np.add.reduceat(quotes, np.concatenate(([0], newlines)), dtype=np.int64)[: len(newlines)]
    return newlines[np.cumsum(per_line) % 2 == 0]


def _locate(data: bytes, offsets: list[int], frame: pd.DataFrame) -> np.ndarray | None:
    """The data rows of ``frame`` holding the bytes at ``offsets``; ``None`` when not certain.

    Records are told apart at newlines outside double quotes (RFC 4180, as pandas reads them);
    when that does not give pandas' row count (a stray quote in an unquoted field, such as
    ``27" screen``), at every newline. The rows found must hold the ``\\x`` escapes.
    """
    arr = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(arr == 0x0A)
    at = np.asarray(offsets, dtype=np.int64)
    unquoted = _unquoted(arr, newlines)
    for ends in (newlines,) if unquoted is None else (unquoted, newlines):
        rows, n = _record_rows(arr, at, ends)
        if n != len(frame):
            continue
        if (rows < 0).any():
            return rows  # the header: the caller refuses the file
        found = np.unique(rows)
        sub = frame.iloc[found]
        escaped = np.zeros(len(found), dtype=bool)
        for col in sub.columns:
            escaped |= sub[col].str.contains("\\x", regex=False, na=False).to_numpy(dtype=bool)
        if escaped.all():
            return rows
    return None


def _read_csv_bytes(path: Path, encoding: str, table: str) -> pd.DataFrame:
    """The slow path of :func:`_read_csv`: the rows holding undecodable bytes are located.

    Raises
    ------
    ValueError
        The encoding does not write ASCII as ASCII, a byte of the header does not decode, or
        the rows holding the bad bytes cannot be told apart (the message gives their lines).
    """
    data = gzip.decompress(path.read_bytes()) if _is_csv_gz(path) else path.read_bytes()
    if not _ascii_compatible(encoding):
        raise ValueError(
            f"a byte does not decode as {encoding} ({encoding} files are not read row by row): "
            f"fix the file or set data.tables.{table}.encoding"
        )
    if codecs.lookup(encoding).name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # as pandas reads it
    text, offsets = _decode_marking(data, encoding)
    frame = pd.read_csv(
        io.BytesIO(text.encode("utf-8")), encoding="utf-8", **_CSV_TEXT
    )  # C parser's fast path
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 0x0A)
    lines = tuple(sorted(set((np.searchsorted(newlines, offsets) + 1).tolist())))
    shown = ", ".join(map(str, lines[:10])) + (" …" if len(lines) > 10 else "")
    rows = _locate(data, offsets, frame)
    if rows is None:
        raise ValueError(
            f"bytes that do not decode as {encoding} on line(s) {shown}, and its rows cannot be told "
            "apart (quoted line breaks and stray quotes): fix those lines or set "
            f"data.tables.{table}.encoding"
        )
    if (rows < 0).any():
        raise ValueError(
            f"the header (line {lines[0]}) has a byte that does not decode as {encoding}: "
            f"set data.tables.{table}.encoding"
        )
    # plain values: attrs travel where the frame goes (pyarrow keeps them as JSON)
    found = BadEncoding(tuple(np.unique(rows).tolist()), lines, encoding, path.name)
    frame.attrs[BAD_ENCODING] = asdict(found)
    log.debug("%s: %d row(s) with bytes that do not decode as %s", path.name, len(np.unique(rows)), encoding)
    return frame


def _read_one(path: Path, encoding: str = "utf-8", table: str = "<table>") -> pd.DataFrame:
    if path.stat().st_size == 0:
        return pd.DataFrame()  # an empty file: no header, no rows
    if path.name.endswith((".parquet", ".pq")):
        return _read_parquet(path)
    return _read_csv(path, encoding, table)


def read_folder(
    folder: str | Path,
    names: dict[str, str],
    file_format: FileFormat = "auto",
    encodings: Mapping[str, str] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read the tables present in ``folder``.

    Parameters
    ----------
    folder : str or Path
        The folder holding one file per table.
    names : dict
        Canonical table name → file stem (usually the same).
    file_format : {"auto", "csv", "parquet"}
        Which files to look for.
    encodings : mapping, optional
        Canonical table name → text encoding of its CSV file (default UTF-8).

    Returns
    -------
    tables : dict
        Canonical table name → raw frame (source column names), for the tables found. A CSV
        frame with rows whose bytes did not decode says which in ``attrs[BAD_ENCODING]``
        (:meth:`BadEncoding.of`).
    errors : dict
        Canonical table name → why a file that exists could not be read (duplicate column
        names, a header that does not decode, not a CSV or Parquet file ...).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    tables: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    for table, stem in names.items():
        try:
            path = find_table_file(root, stem, file_format)
        except ValueError as exc:
            errors[table] = str(exc)
            continue
        if path is None:
            continue
        try:
            tables[table] = _read_one(path, (encodings or {}).get(table, "utf-8"), table)
        except Exception as exc:
            errors[table] = f"cannot read {path.name}: {exc}"
            continue
        log.debug("read %s: %d rows from %s", table, len(tables[table]), path)
    return tables, errors


def _for_csv(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            # ISO 8601 with an explicit offset: readers never have to guess the zone.
            out[col] = s.dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z").str.replace(
                r"(\+|-)(\d{2})(\d{2})$", r"\1\2:\3", regex=True
            )
    return out


def write_folder(
    tables: dict[str, pd.DataFrame], folder: str | Path, file_format: Literal["csv", "parquet"] = "parquet"
) -> list[Path]:
    """Write each table to ``folder/<table>.<format>`` and return the paths written."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in tables.items():
        if file_format == "parquet":
            path = root / f"{name}.parquet"
            df.to_parquet(path, index=False)
        else:
            path = root / f"{name}.csv"
            _for_csv(df).to_csv(path, index=False)
        paths.append(path)
    return paths


def write_table(df: pd.DataFrame, path: str | Path, *, index: bool) -> Path:
    """Write one frame to ``.csv`` or ``.parquet`` / ``.pq`` (chosen by the extension).

    Raises
    ------
    ValueError
        Any other extension.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"unsupported output extension {p.suffix!r}: use .csv or .parquet")
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(p, index=index)
    else:
        df.to_parquet(p, index=index)
    log.info("wrote %d rows to %s", len(df), p)
    return p
