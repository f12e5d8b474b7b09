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
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.features.time import as_of_day, cutoff_end
from crmscore.schema import EVENT_TIME, SCHEMAS, CRMData, TableSpec

__all__ = [
    "Problem",
    "TableReport",
    "ValidationReport",
    "load_raw_tables",
    "load_validated",
    "validate_tables",
    "write_quarantine",
]

log = logging.getLogger(__name__)

_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY = r"\d{4}-\d{2}-\d{2}"
_TRUE = {"true", "t", "1", "yes", "y", "1.0"}
_FALSE = {"false", "f", "0", "no", "n", "0.0"}
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


def _present(s: pd.Series) -> np.ndarray:
    """Non-null and, for text, non-blank."""
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        txt = s.astype("string").str.strip()
        return (txt.notna() & (txt != "")).to_numpy(dtype=bool, na_value=False)
    return s.notna().to_numpy()


def _coerce_id(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy()
        integral = np.isfinite(vals) & (np.floor(vals) == vals)
        out = pd.Series(
            np.where(integral, np.nan_to_num(vals).astype(np.int64).astype(str), s.astype(str)),
            index=s.index,
            dtype=object,
        )
        return out.where(s.notna(), None)
    txt = s.astype("string").str.strip()
    return txt.astype(object).where(txt.notna() & (txt != ""), None)


def _coerce_number(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (float values, bad-type mask, non-finite mask)."""
    present = _present(s)
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


def _coerce_bool(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    present = _present(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), np.zeros(len(s), bool)
    txt = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[txt.isin(_TRUE).to_numpy(dtype=bool, na_value=False)] = True
    out[txt.isin(_FALSE).to_numpy(dtype=bool, na_value=False)] = False
    bad = present & out.isna().to_numpy()
    return out, bad


def _coerce_timestamp(s: pd.Series, tz: str | None) -> tuple[pd.Series, np.ndarray, np.ndarray]:
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
    present = _present(s)
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
    """Per-row reason bookkeeping: the first reason that applies wins."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)

    def mark(self, mask: np.ndarray, reason: str) -> None:
        free = mask & (self.reason == None)  # noqa: E711 - elementwise on an object array
        self.reason[free] = reason

    @property
    def ok(self) -> np.ndarray:
        return self.reason == None  # noqa: E711


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
    df = raw.rename(columns=inverse)
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
) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    tz = cfg.data.source_timezone
    for col in df.columns:
        s = df[col]
        kind = spec.kind_of(col)
        required = col in spec.required
        present = _present(s)
        if kind == "id":
            out[col] = _coerce_id(s)
            if required:
                rows.mark(~present, f"null_id:{col}")
        elif kind == "timestamp":
            vals, bad, naive = _coerce_timestamp(s, tz)
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
            vals, bad, non_finite = _coerce_number(s)
            out[col] = vals
            if required:
                rows.mark(~present, f"null_required:{col}")
            rows.mark(bad, f"bad_type:{col}")
            rows.mark(non_finite, f"non_finite:{col}")
            if present.any() and bad.sum() == present.sum():
                problems.append(Problem(spec.name, "no value could be read as a number", col))
        elif kind == "text" or (kind is None and col not in _label_columns(spec.name, cfg)):
            if kind is None and not spec.keeps_extra:
                continue  # columns outside the contract of a non-attribute table are dropped
            out[col] = _coerce_attribute(s) if kind is None else _coerce_text(s)
            if required:
                rows.mark(~present, f"null_required:{col}")
        else:  # a label column
            vals, bad = _coerce_bool(s)
            out[col] = vals
            rows.mark(bad, f"bad_type:{col}")
    return pd.DataFrame(out, index=df.index)


def _coerce_text(s: pd.Series) -> pd.Series:
    txt = s.astype("string").str.strip()
    return txt.astype(object).where(txt.notna() & (txt != ""), None)


def _coerce_attribute(s: pd.Series) -> pd.Series:
    """Attribute columns: numeric when every present value is a number, else text."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s
    present = _present(s)
    vals = pd.to_numeric(s.astype("string").str.strip(), errors="coerce")
    if present.any() and vals[present].notna().all():
        return vals.astype(float)
    return _coerce_text(s)


def _mark_duplicates(df: pd.DataFrame, key: str, rows: _Rows) -> None:
    ok = rows.ok & df[key].notna().to_numpy()
    if not ok.any():
        return
    sub = df.loc[ok]
    dup_key = sub[key].duplicated(keep=False).to_numpy()
    if not dup_key.any():
        return
    dups = sub.loc[dup_key]
    hashes = pd.util.hash_pandas_object(dups.astype(str), index=False)
    distinct = hashes.groupby(dups[key].to_numpy()).transform("nunique").to_numpy()
    conflict = np.zeros(len(df), bool)
    identical_extra = np.zeros(len(df), bool)
    pos = np.flatnonzero(ok)[dup_key]
    conflict[pos[distinct > 1]] = True
    extra = dups[key].duplicated(keep="first").to_numpy() & (distinct == 1)
    identical_extra[pos[extra]] = True
    rows.mark(conflict, "duplicate_conflict")
    rows.mark(identical_extra, "duplicate_identical")


def _validate_table(
    name: str,
    raw: pd.DataFrame,
    cfg: Config,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    parents: dict[str, pd.DataFrame],
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
    df = df.reset_index(drop=True)
    rows = _Rows(len(df))
    clean = _coerce_table(df, spec, cfg, rows, problems)

    if name == "marketing_spend":
        rows.mark((clean["amount"] < 0).to_numpy(dtype=bool, na_value=False), "negative_amount")
    event = EVENT_TIME[name]
    if event in clean.columns:
        ts = clean[event]
        rows.mark((ts > now).to_numpy(dtype=bool, na_value=False), "in_future")
        rows.mark((ts >= cutoff_end(as_of)).to_numpy(dtype=bool, na_value=False), "after_cutoff")
    if spec.key is not None and spec.key in clean.columns:
        _mark_duplicates(clean, spec.key, rows)
    if spec.parent is not None:
        col, parent = spec.parent
        if parent in parents:
            known = clean[col].isin(parents[parent][SCHEMAS[parent].key]).to_numpy()
            rows.mark(rows.ok & ~known, f"unknown_{parent.rstrip('s')}")
        elif parent in report.tables:
            report.notes.append(f"{name}: {parent} could not be validated; {col} was not checked against it")
        else:
            report.notes.append(f"{name}: no {parent} table; {col} was not checked against it")

    ok = rows.ok
    treport.rows_kept = int(ok.sum())
    treport.set_aside.update(Counter(rows.reason[~ok].tolist()))
    if (~ok).any():
        aside = df.loc[~ok].astype(object).where(df.loc[~ok].notna(), None).copy()
        aside.insert(0, "_reason", rows.reason[~ok])
        aside.insert(1, "_row", np.flatnonzero(~ok))
        report.quarantine[name] = aside
    report.problems.extend(problems)
    if treport.rows_kept == 0 and treport.rows_in > 0 and not problems:
        report.problems.append(Problem(name, "no usable rows left after validation"))
    if any(p.fatal for p in problems):
        return None
    assert treport.rows_in == treport.rows_kept + treport.rows_set_aside  # exact accounting
    return clean.loc[ok].reset_index(drop=True)


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
    now_ts = _now_utc(now)
    as_of_ts = as_of_day(now_ts.normalize().tz_localize(None) if as_of is None else as_of)
    report = ValidationReport(as_of=as_of_ts, validated_at=now_ts)
    if as_of is None:
        report.notes.append(f"no as_of given: the cutoff is today, {as_of_ts.date().isoformat()} (UTC)")
    for name, msg in (read_errors or {}).items():
        report.problems.append(Problem(name, msg))
    for name in cfg.data.required_tables:
        if name not in raw and name not in (read_errors or {}):
            report.problems.append(Problem(name, "required table missing"))
    data = CRMData()
    parents: dict[str, pd.DataFrame] = {}
    for name in _ORDER:
        if name not in raw:
            if name not in cfg.data.required_tables and name not in (read_errors or {}):
                report.notes.append(f"{name}: optional table absent; its features will be absent")
            continue
        clean = _validate_table(name, raw[name], cfg, as_of_ts, now_ts, parents, report)
        if clean is not None:
            setattr(data, name, clean)
            if SCHEMAS[name].key and name in ("customers", "leads"):
                parents[name] = clean
    for t, r in report.tables.items():
        if r.rows_set_aside:
            log.info("%s: %d of %d rows set aside %s", t, r.rows_set_aside, r.rows_in, dict(r.set_aside))
    return data, report


def load_raw_tables(cfg: Config) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read every table present at the configured source (CRM store or folder)."""
    names = {t: cfg.data.table_name(t) for t in SCHEMAS}
    if cfg.data.source == "folder":
        from crmscore.io.files import read_folder

        return read_folder(cfg.data.folder, names, cfg.data.file_format)
    from crmscore.io.crm import create_engine, read_sql_tables

    engine = create_engine(cfg.data.resolved_crm_url())
    try:
        return read_sql_tables(engine, names, cfg.data.db_schema)
    finally:
        engine.dispose()


def load_validated(
    cfg: Config, as_of: date | str | pd.Timestamp | None = None, now: datetime | pd.Timestamp | None = None
) -> tuple[CRMData, ValidationReport]:
    """Read the configured source and validate it (see :func:`validate_tables`)."""
    raw, errors = load_raw_tables(cfg)
    return validate_tables(raw, cfg, as_of=as_of, now=now, read_errors=errors)


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
