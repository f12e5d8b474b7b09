"""Read and write CRM tables as a folder of CSV or Parquet files.

One file per table, named after the table (``transactions.csv``, ``customers.parquet``;
the name can be mapped in ``data.tables.<table>.name``). CSV files are read with every
column as text so that type coercion and its quarantine rules (``crmscore.ingest.validation``)
see the original values; Parquet keeps its own types.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pandas as pd

__all__ = ["find_table_file", "read_folder", "write_folder", "write_table"]

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


def _read_one(path: Path) -> pd.DataFrame:
    if path.name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    # Text in, so coercion can report the original value of anything that fails to parse.
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def read_folder(
    folder: str | Path, names: dict[str, str], file_format: FileFormat = "auto"
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

    Returns
    -------
    tables : dict
        Canonical table name → raw frame (source column names), for the tables found.
    errors : dict
        Canonical table name → why a file that exists could not be read.
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
            tables[table] = _read_one(path)
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
