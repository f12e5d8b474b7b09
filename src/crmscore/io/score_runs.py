"""One run in the score tables: the SQL keyed on ``(run_id, as_of)``.

Whether a run is already in the history (a replay), the previous run and the shrink guard
(:func:`_check_shrink`, ``scoring.min_rows_ratio``), the upsert of the latest table from a
run's history rows (:func:`_upsert_latest`: only a newer run replaces a row), and each
customer's previous score, from the latest table or a window over the history
(:func:`crmscore.io.scores.read_previous_scores`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crmscore.core.score_contract import ScoreValidationError
from crmscore.io.crm import _read_postgres
from crmscore.io.score_tables import _day_param, _Kind, _qualified

log = logging.getLogger(__name__)


def _run_params(df: pd.DataFrame, backend: str) -> dict[str, Any]:
    return {"run": str(df["run_id"].iloc[0]), "as_of": _day_param(df["as_of"].iloc[0], backend)}


def _run_rows(conn: sa.Connection, hist: sa.Table, params: Mapping[str, Any]) -> int:
    """Rows of the run ``(run, as_of)`` already in ``hist`` (a primary-key range count)."""
    q = _qualified(conn, hist)
    return int(
        conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {q} WHERE run_id = :run AND as_of = :as_of"), params
        ).scalar_one()
    )


def _previous_run(
    conn: sa.Connection, hist: sa.Table, params: Mapping[str, Any]
) -> tuple[str, Any, int] | None:
    """``(run_id, as_of, rows)`` of the latest other run in ``hist`` (by ``scored_at``), or None."""
    q = _qualified(conn, hist)
    row = conn.execute(
        sa.text(
            f"SELECT run_id, as_of FROM {q} WHERE NOT (run_id = :run AND as_of = :as_of) "
            "ORDER BY scored_at DESC LIMIT 1"
        ),
        params,
    ).first()
    if row is None:
        return None
    return str(row[0]), row[1], _run_rows(conn, hist, {"run": row[0], "as_of": row[1]})


def _check_shrink(
    conn: sa.Connection,
    hist: sa.Table,
    n_rows: int,
    params: Mapping[str, Any],
    min_ratio: float,
    what: str,
) -> None:
    prev = _previous_run(conn, hist, params)
    if prev is None or prev[2] == 0:
        return
    if n_rows < min_ratio * prev[2]:
        raise ScoreValidationError(
            f"{what}: {n_rows} rows is fewer than {min_ratio:.0%} of the previous run's {prev[2]} rows "
            f"(run {prev[0]!r}, as of {prev[1]}); refusing to write a sharply shrunken score set "
            "(check the input data, or lower scoring.min_rows_ratio knowingly)"
        )


def _upsert_latest(
    conn: sa.Connection,
    kind: _Kind,
    hist: sa.Table,
    latest: sa.Table,
    params: Mapping[str, Any],
    ids: list[str] | None = None,
) -> int:
    """Insert or replace latest rows from the run's history rows; only a newer run replaces a row.

    ``ids`` (PostgreSQL): only the run's rows of these ids (the rows held back for their
    reasons, sent after the others were upserted).
    """
    p = conn.dialect.identifier_preparer
    cols = [p.quote(c) for c in kind.columns]
    key = p.quote(kind.key)
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    newer = (
        "excluded.as_of > cur.as_of OR (excluded.as_of = cur.as_of AND excluded.run_id <> cur.run_id "
        "AND excluded.scored_at >= cur.scored_at)"
    )
    sql = (
        f"INSERT INTO {_qualified(conn, latest)} AS cur ({', '.join(cols)}) "
        f"SELECT {', '.join(cols)} FROM {_qualified(conn, hist)} WHERE run_id = :run AND as_of = :as_of "
        + (f"AND {key} = ANY(:ids) " if ids is not None else "")
        + f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {newer}"
    )
    bound = dict(params) if ids is None else {**params, "ids": ids}
    return max(int(conn.execute(sa.text(sql), bound).rowcount), 0)


#: columns of :func:`read_previous_scores` and their kinds (:func:`_normalise`)
_PREVIOUS_COLUMNS = {"customer_id": "id", "as_of": "date", "churn_probability": "float"}


def _previous_from_latest(engine: sa.Engine, latest: sa.Table, day: Any, run: str) -> pd.DataFrame | None:
    """The latest-score rows, if none is later than ``day`` or of the run ``(run, day)``; else None."""
    later = sa.or_(latest.c.as_of > day, sa.and_(latest.c.run_id == run, latest.c.as_of == day))
    with engine.connect() as conn:
        n_later = conn.execute(sa.select(sa.func.count()).select_from(latest).where(later)).scalar_one()
    if n_later:
        log.debug("%s: %d rows later than %s or of this run: previous scores from the history",
                  latest.name, n_later, day)  # fmt: skip
        return None
    statement = sa.select(
        latest.c.customer_id, sa.cast(latest.c.as_of, sa.Text).label("as_of"), latest.c.churn_probability
    )
    frame = _read_postgres(engine, statement) if engine.dialect.name == "postgresql" else None
    if frame is None:
        with engine.connect() as conn:
            frame = pd.read_sql_query(statement, conn)
    return frame


def _previous_from_history(engine: sa.Engine, hist: sa.Table, day: Any, run: str) -> pd.DataFrame:
    """Each customer's newest history row at or before ``day`` that is not of the run ``(run, day)``."""
    with engine.connect() as conn:
        q = _qualified(conn, hist)
        sql = (
            "SELECT customer_id, as_of, churn_probability FROM ("
            "SELECT customer_id, as_of, churn_probability, ROW_NUMBER() OVER "
            "(PARTITION BY customer_id ORDER BY as_of DESC, scored_at DESC) AS rn "
            f"FROM {q} WHERE as_of <= :as_of AND NOT (run_id = :run AND as_of = :as_of)) AS h WHERE rn = 1"
        )
        return pd.read_sql_query(sa.text(sql), conn, params={"as_of": day, "run": run})
