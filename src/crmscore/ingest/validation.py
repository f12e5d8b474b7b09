"""Ingestion: map column names, coerce types, check every rule and quarantine bad rows.

Every problem is reported in one pass (not first-error-only). A row that breaks a rule is
*set aside* with the first reason that applies, in this order:

==========================  ===========================================================
reason                      rule
==========================  ===========================================================
``bad_encoding``            a CSV row holds a byte that does not decode in the table's
                            ``data.tables.<table>.encoding`` (:mod:`crmscore.io.files`)
``null_id:<col>``           a required id is empty
``null_required:<col>``     another required value is empty
``bad_type:<col>``          a value is present but cannot be read as its type
                            (numbers; ISO 8601 timestamps, or the column's
                            ``data.tables.<table>.formats`` / ``dayfirst`` dates;
                            ``YYYYMMDD`` numbers; booleans true/false/1/0/yes/no)
``non_finite:<col>``        a number is NaN written out, +inf or -inf
``naive_timestamp:<col>``   a timestamp has no UTC offset and ``data.source_timezone`` is
                            not set (date-only and ``YYYYMMDD`` values are calendar days
                            in UTC)
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
Table-level problems (a required table or column missing, a required table without rows,
a file that cannot be read, a column name twice in the source or two source columns mapped
onto one name, a timestamp column entirely without time zone, nothing usable left) make the
data *unusable*: ``crmscore validate`` then exits with code 3. An optional table without rows
(an empty file, a header only, an empty SQL table) is treated as absent, with a note. A
rejected table's rows are counted under ``table_rejected`` and left where they are (not
copied to quarantine).

This module holds the reports (:class:`Problem`, :class:`TableReport`,
:class:`ValidationReport`), the validation of one table and of all tables
(:func:`validate_tables`), reading the configured source (:func:`load_raw_tables`,
:func:`load_validated`, :func:`score_lead_scope`), the digest of the inputs
(:func:`input_digest`) and the quarantine files (:func:`write_quarantine`). The type
coercion is in :mod:`crmscore.ingest.coerce`, the row rules in :mod:`crmscore.ingest.rules`.
Once the tables are validated, the feature role of every column of ``customers`` and ``leads``
is decided on the whole tables (:mod:`crmscore.ingest.roles`, stored in ``CRMData.roles``) and
each column that is not a feature gets a note saying why and how to opt it back in.
A cutoff after the moment of validation or after the newest event time of the kept rows
(:func:`newest_event`) is warned about (``ValidationReport.cutoff_warnings``, also in the notes).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.core.schema import EVENT_TIME, SCHEMAS, CRMData, TableSpec
from crmscore.core.time import as_of_day, cutoff_end
from crmscore.ingest.coerce import (
    _coerce_attribute,
    _coerce_bool,
    _coerce_float_id,
    _coerce_number,
    _coerce_text,
    _coerce_timestamp,
    _Coerced,
    _materialise,
    _original_values,
    _present,
    _Text,
)
from crmscore.ingest.rules import _Keys, _mark_bad_encoding, _mark_row_rules, _parent_keys, _Rows
from crmscore.io.files import BadEncoding

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
    #: digest of each validated table's logical content at ``as_of`` and ``"all"`` over them
    #: and the settings that shape validation (:func:`input_digest`): what the job ran on, for
    #: lineage and the scoring run id
    input_digest: dict[str, str] = field(default_factory=dict, repr=False)
    #: the newest event time of the kept rows (``EVENT_TIME`` of each table), when any
    newest_event: pd.Timestamp | None = None
    #: warnings about the cutoff (after today, after the newest data); also in ``notes``
    cutoff_warnings: list[str] = field(default_factory=list)

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


# --------------------------------------------------------------------------- one table


def _rename(raw: pd.DataFrame, table: str, cfg: Config, problems: list[Problem]) -> pd.DataFrame | None:
    mapping = cfg.data.column_map(table)
    if _duplicate_names(raw, table, mapping, problems):
        return None
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


def _duplicate_names(raw: pd.DataFrame, table: str, mapping: dict[str, str], problems: list[Problem]) -> bool:
    """Report a name the source has twice or two columns the mapping would give one name; any?"""
    found = False
    for name in dict.fromkeys(raw.columns[raw.columns.duplicated()]):
        n = int((raw.columns == name).sum())
        problems.append(
            Problem(table, f"the source has {n} columns named {name!r}: name each column once", str(name))
        )
        found = True
    by_source: dict[str, list[str]] = {}
    for canon, src in mapping.items():
        by_source.setdefault(src, []).append(canon)
    for src, canons in by_source.items():
        if len(canons) > 1:
            problems.append(
                Problem(table, f"data.tables.{table}.columns maps {canons} all onto source column {src!r}")
            )
            found = True
    inverse = {src: canon for canon, src in mapping.items()}
    renamed = [inverse.get(c, c) for c in raw.columns]
    for name in dict.fromkeys(n for n in renamed if renamed.count(n) > 1):
        sources = [c for c, r in zip(raw.columns, renamed, strict=True) if r == name]
        if len(set(sources)) > 1:
            problems.append(
                Problem(
                    table,
                    f"source columns {sources} would all be named {name!r} "
                    f"(data.tables.{table}.columns): map or drop the others",
                    str(name),
                )
            )
            found = True
    return found


def _label_columns(table: str, cfg: Config) -> set[str]:
    if table == "customers":
        return {cfg.churn.label_column}
    if table == "leads" and cfg.leads.label_column:
        return {cfg.leads.label_column}
    return set()


def _coerce_table(
    df: pd.DataFrame,
    spec: TableSpec,
    cfg: Config,
    rows: _Rows,
    problems: list[Problem],
    notes: list[str] | None = None,
) -> dict[str, _Coerced]:
    """Coerce every column and mark the rows that break a column rule, in column order.

    Timestamp columns use the table's ``formats`` and ``dayfirst`` (``data.tables.<table>``);
    the values that do not match a format get a note in ``notes``.
    """
    notes = [] if notes is None else notes
    out: dict[str, _Coerced] = {}
    tz = cfg.data.source_timezone
    labels = _label_columns(spec.name, cfg)
    tcfg = cfg.data.tables.get(spec.name)  # type: ignore[call-overload]
    formats = dict(tcfg.formats) if tcfg is not None else {}
    dayfirst = tcfg.dayfirst if tcfg is not None else None
    stamps = [c.name for c in spec.columns if c.kind == "timestamp"]
    for col in formats:
        if col not in stamps:
            problems.append(
                Problem(
                    spec.name,
                    f"data.tables.{spec.name}.formats names {col!r}, not a timestamp column of "
                    f"{spec.name} (its timestamp columns: {', '.join(stamps) or 'none'})",
                    col,
                )
            )
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
            fmt = formats.get(col)
            vals, bad, naive = _coerce_timestamp(s, tz, present, fmt, dayfirst)
            out[col] = vals
            if fmt is not None and bad.any():
                notes.append(
                    f"{spec.name}.{col}: {int(bad.sum()):,} values do not match the format {fmt!r} "
                    f"(data.tables.{spec.name}.formats): set aside as bad_type:{col}"
                )
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
                what = f"with the format {fmt!r}" if fmt is not None else "as an ISO 8601 timestamp"
                problems.append(Problem(spec.name, f"no value could be read {what}", col))
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
                blanks = int((s.notna().to_numpy() & ~present).sum())
                if blanks and not isinstance(out[col], _Text):  # numbers written as text, some blank
                    notes.append(
                        f"{spec.name}.{col}: {blanks:,} blank value(s) read as missing (numeric column)"
                    )
            else:
                out[col], present = _coerce_text(s)
            if required:
                rows.mark(~present, f"null_required:{col}")
        else:  # a label column
            vals, bad = _coerce_bool(s, _present(s))
            out[col] = vals
            rows.mark(bad, f"bad_type:{col}")
    return out


def _validate_table(
    name: str,
    raw: pd.DataFrame,
    cfg: Config,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    parents: dict[str, _Keys],
    report: ValidationReport,
) -> pd.DataFrame | None:
    """One table: rename, coerce, mark the rules, account; the kept rows, or None when unusable."""
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
    _mark_bad_encoding(name, BadEncoding.of(raw), rows, report.notes)
    cols = _coerce_table(df, spec, cfg, rows, problems, report.notes)
    _mark_row_rules(name, spec, cols, rows, as_of, now, parents, report.tables, report.notes)
    ok = _account(name, df, rows, treport, problems, report)
    if any(p.fatal for p in problems):
        return None
    assert treport.rows_in == treport.rows_kept + treport.rows_set_aside  # exact accounting
    all_ok = treport.rows_kept == n
    index = pd.RangeIndex(treport.rows_kept)
    keep = None if all_ok else ok
    # copy=False: every column is fresh or shared copy-on-write; no consolidation copies.
    clean = pd.DataFrame({c: _materialise(v, keep, index) for c, v in cols.items()}, index=index, copy=False)
    if spec.key is not None and name in ("customers", "leads") and spec.key in cols:
        parents[name] = _parent_keys(cols[spec.key], clean[spec.key], keep)
    report.input_digest[name] = _table_digest(name, cols, keep, as_of)
    return clean


def _account(
    name: str,
    df: pd.DataFrame,
    rows: _Rows,
    treport: TableReport,
    problems: list[Problem],
    report: ValidationReport,
) -> np.ndarray:
    """Count the rows kept and set aside, quarantine the latter and report the problems.

    Returns the mask of the rows kept.
    """
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
    return ok


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


def input_digest(tables: dict[str, str], cfg: Config, as_of: pd.Timestamp) -> dict[str, str]:
    """The validated tables' content digests and ``"all"`` over them and what shapes validation.

    ``tables`` holds each validated table's :func:`crmscore.core.digest.table_content_digest`
    (its rows known at ``as_of``, in any order: :func:`_table_digest`). ``"all"`` also covers
    the cutoff day, the ``data`` settings (column maps, time zone, required tables; not the
    store's location) and the label column names.
    """
    from crmscore.core.digest import combine_digests

    settings = cfg.data.model_dump(mode="json", exclude={"crm_url", "folder", "quarantine"})
    extra = {
        "as_of": as_of.date().isoformat(),
        "data": settings,
        "labels": [cfg.churn.label_column, cfg.leads.label_column],
    }
    return {**tables, "all": combine_digests(tables, extra)}


def _table_digest(name: str, cols: dict[str, _Coerced], keep: np.ndarray | None, as_of: pd.Timestamp) -> str:
    """The content digest of the kept rows of one table, from its coerced columns.

    Text is digested from the Arrow strings validation holds (before they become Python
    objects): the same digest as :func:`crmscore.core.digest.content_digests` of the
    validated table, at a fraction of the cost.
    """
    from crmscore.core.digest import table_content_digest
    from crmscore.ingest.coerce import _Text

    columns = {c: v.values if isinstance(v, _Text) else v for c, v in cols.items()}
    return table_content_digest(name, columns, as_of=as_of, rows=keep)


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
        if _empty_table(name, raw[name], cfg, report):
            if consume:
                del raw[name]
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
    report.input_digest = input_digest(report.input_digest, cfg, as_of_ts)
    _check_cutoff(data, report, given=as_of is not None)
    _decide_roles(data, cfg, report)
    return data, report


def newest_event(data: CRMData) -> tuple[pd.Timestamp, str] | None:
    """The newest event time of the validated tables and where it is (``table.column``).

    The maximum of each table's event-time column (``crmscore.core.schema.EVENT_TIME``);
    ``None`` when no table has one.
    """
    found: tuple[pd.Timestamp, str] | None = None
    for name, col in EVENT_TIME.items():
        table = getattr(data, name, None)
        if table is None or col not in table.columns or not len(table):
            continue
        top = table[col].max()
        if pd.notna(top) and (found is None or top > found[0]):
            found = (pd.Timestamp(top), f"{name}.{col}")
    return found


def _check_cutoff(data: CRMData, report: ValidationReport, *, given: bool) -> None:
    """Warn (log and ``report.cutoff_warnings``/``notes``) about a cutoff after today or the data."""
    newest = newest_event(data)
    report.newest_event = None if newest is None else newest[0]
    day = report.as_of.date()
    warnings = []
    today = report.validated_at.date()
    if given and day > today:
        warnings.append(f"as_of {day} is after today ({today}, UTC): the cutoff is in the future")
    if newest is not None and day > newest[0].date():
        gap = (day - newest[0].date()).days
        warnings.append(
            f"as_of {day} is after the newest data ({newest[0].date()}, {newest[1]}): the {gap} days "
            "between count as days without activity; check --as-of"
        )
    for w in warnings:
        log.warning("%s", w)
    report.cutoff_warnings.extend(warnings)
    report.notes.extend(warnings)


def _decide_roles(data: CRMData, cfg: Config, report: ValidationReport) -> None:
    """Store the feature roles of the attribute tables on ``data`` (:mod:`crmscore.ingest.roles`),
    decided once on the whole validated tables, and note every column that is not a feature."""
    from crmscore.ingest.roles import dataset_roles, role_notes

    started = time.perf_counter()
    decided = dataset_roles(data, cfg)
    data.roles = {t: r.roles for t, r in decided.items()}
    for name, tc in cfg.data.tables.items():
        if tc.roles and not SCHEMAS[name].keeps_extra:
            report.notes.append(
                f"data.tables.{name}.roles: ignored (only customers and leads have attribute columns)"
            )
    for r in decided.values():
        report.notes.extend(role_notes(r))
    log.debug("feature roles decided in %.2f s", time.perf_counter() - started)


def _empty_table(name: str, table: pd.DataFrame, cfg: Config, report: ValidationReport) -> bool:
    """Report a table without rows; ``True`` when it is not to be validated further.

    An optional table without rows is treated as absent (a note). A required one
    (``data.required_tables``) is a fatal problem; its columns, if any, are still checked.
    """
    if len(table):
        return False
    what = "file" if cfg.data.source == "folder" else "table"
    if name not in cfg.data.required_tables:
        report.notes.append(f"{name}: the {what} has no rows: treated as absent")
        return True
    shape = (
        "has no rows"
        if len(table.columns)
        else ("is empty (no header, no rows)" if what == "file" else "has no columns and no rows")
    )
    report.problems.append(
        Problem(
            name,
            f"the {what} {shape}: a required table (data.required_tables) needs at least one row; "
            "check the export",
        )
    )
    if len(table.columns):
        return False
    report.tables[name] = TableReport(rows_in=0)
    return True


def score_lead_scope(cfg: Config, as_of: date | str | pd.Timestamp) -> LeadScope | None:
    """The :class:`crmscore.io.crm.LeadScope` of a scoring run at ``as_of``, or ``None``.

    Scoring uses the leads open at the cutoff whose conversion window is still running
    (:func:`crmscore.features.tables.build_lead_features`): created at or after
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
        encodings = {t: tc.encoding for t, tc in cfg.data.tables.items()}
        return read_folder(cfg.data.folder, names, cfg.data.file_format, encodings)

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
