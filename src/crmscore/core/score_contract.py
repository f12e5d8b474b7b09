"""The score tables' contract and the checks every score set passes before it is written.

:data:`CUSTOMER_SCORE_COLUMNS` / :data:`LEAD_SCORE_COLUMNS` are the columns (and their kinds)
of ``customer_scores`` / ``lead_scores`` and their history tables (shared/design.md §3);
:func:`check_customer_scores` / :func:`check_lead_scores` refuse a score set that must not
reach the CRM (:class:`ScoreValidationError`, naming every problem). Pure: nothing is read or
written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "CLV_COLUMNS",
    "CUSTOMER_SCORE_COLUMNS",
    "LEAD_SCORE_COLUMNS",
    "NO_PURCHASES",
    "TRENDS",
    "InputGuardError",
    "LockTimeoutError",
    "ScoreValidationError",
    "check_customer_scores",
    "check_lead_scores",
]

Kind = Literal["id", "date", "timestamp", "float", "int", "text", "bool"]

#: Column → kind of the ``customer_scores`` / ``customer_score_history`` rows, in order.
CUSTOMER_SCORE_COLUMNS: dict[str, Kind] = {
    "customer_id": "id",
    "as_of": "date",
    "churn_probability": "float",
    "churn_risk": "text",
    "p_alive": "float",
    "expected_purchases": "float",
    "expected_purchases_lower": "float",
    "expected_purchases_upper": "float",
    "predicted_clv": "float",
    "predicted_clv_lower": "float",
    "predicted_clv_upper": "float",
    "value_at_risk": "float",
    "health_score": "float",
    "rfm_segment": "text",
    "top_reasons": "text",
    "trend": "text",
    "cold_start": "bool",
    "churn_model": "text",
    "churn_model_version": "text",
    "clv_model": "text",
    "clv_model_version": "text",
    "run_id": "text",
    "scored_at": "timestamp",
}
#: Column → kind of the ``lead_scores`` / ``lead_score_history`` rows, in order.
LEAD_SCORE_COLUMNS: dict[str, Kind] = {
    "lead_id": "id",
    "as_of": "date",
    "conversion_probability": "float",
    "lead_score": "int",
    "lead_grade": "text",
    "top_reasons": "text",
    "model": "text",
    "model_version": "text",
    "run_id": "text",
    "scored_at": "timestamp",
}
#: CLV columns: missing (NULL) only for customers without any purchase (BG/NBD has no estimate).
CLV_COLUMNS: tuple[str, ...] = (
    "p_alive",
    "expected_purchases",
    "expected_purchases_lower",
    "expected_purchases_upper",
    "predicted_clv",
    "predicted_clv_lower",
    "predicted_clv_upper",
)
#: Columns that may be missing: reasons (only explained rows carry them) and CLV (see above).
_NULLABLE: frozenset[str] = frozenset({"top_reasons", *CLV_COLUMNS})
#: Columns filled by each model of a customer row, keyed by its ``<kind>_model`` column: when
#: that column is NULL on every row (the kind was not scored in this run) they are NULL too.
_MODEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "churn_model": ("churn_probability", "churn_risk", "churn_model_version", "value_at_risk", "trend"),
    "clv_model": (*CLV_COLUMNS, "clv_model_version", "value_at_risk"),
}
NO_PURCHASES = "No purchases"
TRENDS: tuple[str, ...] = ("improving", "steady", "declining", "new")


class ScoreValidationError(ValueError):
    """Scores failed a check before writing; the message names the table, column and problem."""


class InputGuardError(ScoreValidationError):
    """The inputs look truncated or unlike the training data: nothing is written.

    Raised by the input volume guard (``scoring.max_input_drop``) and the input checks against
    a model's training data (``scoring.input_checks``); ``crmscore score --force`` overrides
    both (logged). The CLI exits with code 4.
    """


class LockTimeoutError(RuntimeError):
    """Another run held the score tables' write lock longer than ``scoring.lock_timeout_s``."""


# --------------------------------------------------------------------------------------------
# checks


def _absent_model_columns(df: pd.DataFrame) -> set[str]:
    """Columns of the models absent from the run (their ``<kind>_model`` column all NULL)."""
    out: set[str] = set()
    for model_col, cols in _MODEL_COLUMNS.items():
        if model_col in df.columns and df[model_col].isna().all():
            out |= {model_col, *cols}
    return out


def _problems_common(
    df: pd.DataFrame,
    columns: Mapping[str, Kind],
    key: str,
    expected_ids: Iterable[Any] | None,
    table: str,
    nullable: Iterable[str] = (),
) -> list[str]:
    problems: list[str] = []
    missing = [c for c in columns if c not in df.columns]
    if missing:
        return [f"{table}: missing columns {missing}"]
    if len(df) == 0:
        return [f"{table}: the score set is empty (refusing to write an empty run)"]
    ids = df[key]
    if ids.isna().any():
        problems.append(f"{table}: {int(ids.isna().sum())} rows without {key}")
    dup = ids.duplicated()
    if dup.any():
        problems.append(f"{table}: {int(dup.sum())} duplicate {key} values (e.g. {ids[dup].iloc[0]!r})")
    if expected_ids is not None:
        exp_in = (
            expected_ids
            if isinstance(expected_ids, pd.Index | pd.Series | np.ndarray)
            else list(expected_ids)
        )
        exp = pd.Index(pd.Index(exp_in).astype(str).unique())
        got = pd.Index(ids.dropna().astype(str).unique())
        lost, extra = exp.difference(got), got.difference(exp)
        if len(df) != len(exp) or len(lost) or len(extra):
            problems.append(
                f"{table}: {len(df)} rows for {len(exp)} expected ids "
                f"({len(lost)} missing e.g. {list(lost[:3])}, {len(extra)} unexpected e.g. {list(extra[:3])})"
            )
    for single in ("as_of", "run_id", "scored_at"):
        if df[single].nunique(dropna=False) != 1:
            problems.append(f"{table}: {single} must hold one value per run")
    skip = _NULLABLE | set(nullable)
    for col, kind in columns.items():
        if col in skip:
            continue
        s = df[col]
        n = int(s.isna().sum())
        if n:
            what = "NaN" if kind in ("float", "int") else "missing values"
            problems.append(f"{table}.{col}: {n} {what}")
        if kind in ("float", "int"):
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
            if np.isinf(v).any():
                problems.append(f"{table}.{col}: {int(np.isinf(v).sum())} infinite values")
    return problems


def _out_of_range(df: pd.DataFrame, col: str, lo: float | None, hi: float | None, table: str) -> list[str]:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.zeros(len(v), dtype=bool)
    with np.errstate(invalid="ignore"):
        if lo is not None:
            bad |= v < lo
        if hi is not None:
            bad |= v > hi
    if not bad.any():
        return []
    rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
    return [f"{table}.{col}: {int(bad.sum())} values outside {rng} (e.g. {v[bad][0]!r})"]


def check_customer_scores(
    df: pd.DataFrame, expected_ids: Iterable[Any] | None = None, table: str = "customer_scores"
) -> None:
    """Refuse customer scores that must not reach the CRM.

    Checks: all columns present; not empty; ids unique, and equal to ``expected_ids`` when given
    (row count against the input); one ``as_of`` / ``run_id`` / ``scored_at``; no NaN in
    required columns; probabilities (``churn_probability``, ``p_alive``) in [0, 1]; CLV,
    expected purchases and value at risk >= 0; ``lower <= point <= upper`` for expected
    purchases and CLV; CLV columns present for every customer with a purchase (NULL only for
    ``rfm_segment == "No purchases"``); health in [0, 100]; known risk bands and trends. The
    columns of a model absent from the run (its ``<kind>_model`` NULL on every row: no
    champion, or no data for it) may be NULL; at least one of churn and CLV must be there.

    Raises
    ------
    ScoreValidationError
        Naming every problem found (table, column, count, an example).
    """
    absent = _absent_model_columns(df) if not [c for c in CUSTOMER_SCORE_COLUMNS if c not in df] else set()
    problems = _problems_common(df, CUSTOMER_SCORE_COLUMNS, "customer_id", expected_ids, table, absent)
    if problems and ("missing columns" in problems[0] or "empty" in problems[0]):
        raise ScoreValidationError("; ".join(problems))
    if "churn_model" in absent and "clv_model" in absent:
        problems.append(f"{table}: neither a churn nor a CLV model scored these rows")
    for col in ("churn_probability", "p_alive"):
        problems += _out_of_range(df, col, 0.0, 1.0, table)
    for col in (*CLV_COLUMNS[1:], "value_at_risk"):
        problems += _out_of_range(df, col, 0.0, None, table)
    problems += _out_of_range(df, "health_score", 0.0, 100.0, table)
    buyer = (df["rfm_segment"] != NO_PURCHASES).to_numpy()
    for col in () if "clv_model" in absent else CLV_COLUMNS:
        n = int((df[col].isna().to_numpy() & buyer).sum())
        if n:
            problems.append(f"{table}.{col}: {n} NaN for customers with purchases")
    with np.errstate(invalid="ignore"):
        for base in ("expected_purchases", "predicted_clv"):
            lo, pt, hi = (df[c].to_numpy(dtype=np.float64) for c in (f"{base}_lower", base, f"{base}_upper"))
            tol = 1e-9 * np.maximum(1.0, np.abs(pt))
            bad = (lo > pt + tol) | (pt > hi + tol)
            if bad.any():
                problems.append(
                    f"{table}.{base}: {int(bad.sum())} rows where not lower <= point <= upper "
                    f"(e.g. {lo[bad][0]:.6g} <= {pt[bad][0]:.6g} <= {hi[bad][0]:.6g})"
                )
    for col, allowed in (("churn_risk", {"high", "medium", "low"}), ("trend", set(TRENDS))):
        bad_vals = set(df[col].dropna().unique()) - allowed
        if bad_vals:
            problems.append(f"{table}.{col}: unknown values {sorted(map(str, bad_vals))[:5]}")
    if problems:
        raise ScoreValidationError("; ".join(problems))


def check_lead_scores(
    df: pd.DataFrame, expected_ids: Iterable[Any] | None = None, table: str = "lead_scores"
) -> None:
    """Refuse lead scores that must not reach the CRM (see :func:`check_customer_scores`).

    Checks: columns, not empty, unique ids equal to ``expected_ids``, no NaN, conversion
    probability in [0, 1], lead score in [0, 100], grade in A–D.
    """
    problems = _problems_common(df, LEAD_SCORE_COLUMNS, "lead_id", expected_ids, table)
    if problems and ("missing columns" in problems[0] or "empty" in problems[0]):
        raise ScoreValidationError("; ".join(problems))
    problems += _out_of_range(df, "conversion_probability", 0.0, 1.0, table)
    problems += _out_of_range(df, "lead_score", 0.0, 100.0, table)
    bad_vals = set(df["lead_grade"].dropna().unique()) - {"A", "B", "C", "D"}
    if bad_vals:
        problems.append(f"{table}.lead_grade: unknown values {sorted(map(str, bad_vals))[:5]}")
    if problems:
        raise ScoreValidationError("; ".join(problems))
