"""One run in the score tables: the SQL keyed on ``(run_id, as_of)``, and the run log.

Whether a run is already written (a replay), the run of the nearest earlier ``as_of`` in the
run log (:func:`_previous_run`, :func:`_previous_counts`), the two guards against it — the
input volume guard (:func:`input_drops`, pure; :func:`_check_inputs`, ``scoring.max_input_drop``)
and the shrink guard (:func:`_check_shrink`, ``scoring.min_rows_ratio``) — the upsert of the
latest table from a run's history rows (:func:`_upsert_latest`: only a newer run replaces a
row), the rows of customers (leads) absent from the newest run (:func:`_absent_rows`,
``scoring.absent_rows``), the run log row (:func:`_log_run`, :func:`_seed_runs`), and each
customer's previous score, from the latest table or a window over the history
(:func:`crmscore.io.scores.read_previous_scores`).

"Nearest earlier run" means: the run log's run with the latest ``as_of`` at or before this
run's (a re-run of the same day included), the newest ``scored_at`` among those, other than
this ``(run_id, as_of)``. So a backfill of an older day is compared with the day before it,
never with the newest run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crmscore.core.score_contract import InputGuardError, ScoreValidationError
from crmscore.io.crm import _iso_utc, _read_postgres
from crmscore.io.score_tables import _day_param, _Kind, _qualified

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What the run log keeps of one scoring run (``scoring.runs_table``).

    Attributes
    ----------
    run_id, as_of, scored_at
        The run (as in its score rows).
    model_versions : mapping, optional
        Kind → ``{"name", "version"}`` of the models that scored.
    input_counts : mapping, optional
        The inputs counted (:func:`crmscore.pipelines.score.input_counts`): ``tables`` (rows
        per input table after validation, at or before ``as_of``), ``customers_active_365d``
        (customers with a transaction in the 365 days up to ``as_of``), ``open_leads`` (open
        leads in the scoring population). None: no input volume guard for this run.
    settings_digest : str, optional
        Digest of the settings the run used.
    notes : sequence of str
        What the run left out and why; the writer adds guard overrides.
    """

    run_id: str
    as_of: date
    scored_at: pd.Timestamp
    model_versions: Mapping[str, Any] | None = None
    input_counts: Mapping[str, Any] | None = None
    settings_digest: str | None = None
    notes: Sequence[str] = ()


#: input counts other than the table rows: key → (label, unit) in messages
_COUNT_LABELS: dict[str, tuple[str, str]] = {
    "customers_active_365d": ("customers with a transaction in the 365 days to as_of", "customers"),
    "open_leads": ("open leads to score", "leads"),
}


def _count_items(counts: Mapping[str, Any]) -> dict[str, tuple[str, str, int]]:
    """``counts`` flattened: key → (label, unit, count)."""
    out = {f"tables.{t}": (t, "rows", int(n)) for t, n in (counts.get("tables") or {}).items()}
    for key, (label, unit) in _COUNT_LABELS.items():
        if counts.get(key) is not None:
            out[key] = (label, unit, int(counts[key]))
    return out


def input_drops(
    current: Mapping[str, Any],
    previous: Mapping[str, Any],
    max_drop: float,
    *,
    previous_run: str = "?",
    previous_as_of: Any = "?",
) -> list[str]:
    """The input counts that fell by more than ``max_drop`` since ``previous``, described.

    Pure. Counts have the shape of :attr:`RunRecord.input_counts`. A count of ``previous``
    missing from ``current`` (a table gone) counts as 0; a count new in ``current``, or 0 in
    ``previous``, has nothing to compare with. A drop is ``(previous - current) / previous``;
    only one strictly above ``max_drop`` is reported (``max_drop = 1`` reports nothing).

    Returns
    -------
    list of str
        One line per count, e.g. ``transactions: 1 rows vs 20,626 in run <id> of 2025-11-30
        (-100 %, max_input_drop 50 %)``; empty when nothing dropped beyond ``max_drop``.
    """
    now = _count_items(current)
    out = []
    for key, (label, unit, before) in _count_items(previous).items():
        after = now[key][2] if key in now else 0
        if before <= 0 or after >= before:
            continue
        drop = (before - after) / before
        if drop > max_drop:
            out.append(
                f"{label}: {after:,} {unit} vs {before:,} in run {previous_run} of {previous_as_of} "
                f"(-{drop * 100:.3g} %, max_input_drop {max_drop * 100:.3g} %)"
            )
    return out


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


def _ts_param(ts: Any, backend: str) -> Any:
    """A ``scored_at`` as stored: ISO 8601 UTC text on SQLite, an aware datetime elsewhere."""
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if backend == "sqlite":
        return str(_iso_utc(pd.Series([stamp]))[0])
    return stamp.to_pydatetime()


#: the run log's runs other than ``(run, as_of)`` at or before ``as_of``, nearest first
_EARLIER = "r.as_of <= :as_of AND NOT (r.run_id = :run AND r.as_of = :as_of)"
_NEAREST = "ORDER BY r.as_of DESC, r.scored_at DESC LIMIT 1"


def _logged(conn: sa.Connection, runs: sa.Table, params: Mapping[str, Any]) -> bool:
    """Whether the run log has the run ``(run, as_of)``."""
    q = _qualified(conn, runs)
    sql = f"SELECT 1 FROM {q} WHERE run_id = :run AND as_of = :as_of"
    return conn.execute(sa.text(sql), params).first() is not None


def _previous_run(
    conn: sa.Connection, runs: sa.Table, hist: sa.Table, params: Mapping[str, Any]
) -> tuple[str, Any, int] | None:
    """``(run_id, as_of, rows)`` of the nearest earlier run with rows in ``hist``, or None.

    Nearest earlier: see the module docstring. The run log is small (one row per run) and
    each candidate's rows are a primary-key range of the history.
    """
    qr, qh = _qualified(conn, runs), _qualified(conn, hist)
    row = conn.execute(
        sa.text(
            f"SELECT r.run_id, r.as_of FROM {qr} AS r WHERE {_EARLIER} AND EXISTS "
            f"(SELECT 1 FROM {qh} AS h WHERE h.run_id = r.run_id AND h.as_of = r.as_of) {_NEAREST}"
        ),
        params,
    ).first()
    if row is None:
        return None
    return str(row[0]), row[1], _run_rows(conn, hist, {"run": row[0], "as_of": row[1]})


def _check_shrink(
    conn: sa.Connection,
    runs: sa.Table,
    hist: sa.Table,
    n_rows: int,
    params: Mapping[str, Any],
    min_ratio: float,
    what: str,
) -> None:
    """Refuse ``n_rows`` below ``min_ratio`` of the nearest earlier run's rows in ``hist``."""
    prev = _previous_run(conn, runs, hist, params)
    if prev is None or prev[2] == 0:
        log.info("%s: no earlier run at or before %s to compare the row count with", what, params["as_of"])
        return
    if n_rows < min_ratio * prev[2]:
        raise ScoreValidationError(
            f"{what}: {n_rows} rows is fewer than {min_ratio:.0%} of the previous run's {prev[2]} rows "
            f"(run {prev[0]!r}, as of {prev[1]}); refusing to write a sharply shrunken score set "
            "(check the input data, or lower scoring.min_rows_ratio knowingly)"
        )


def _previous_counts(
    conn: sa.Connection, runs: sa.Table, params: Mapping[str, Any]
) -> tuple[str, Any, dict[str, Any]] | None:
    """``(run_id, as_of, input_counts)`` of the nearest earlier run that counted its inputs."""
    q = _qualified(conn, runs)
    row = conn.execute(
        sa.text(
            f"SELECT r.run_id, r.as_of, r.input_counts FROM {q} AS r "
            f"WHERE {_EARLIER} AND r.input_counts IS NOT NULL {_NEAREST}"
        ),
        params,
    ).first()
    if row is None:
        return None
    return str(row[0]), row[1], json.loads(row[2])


def _check_inputs(
    conn: sa.Connection,
    runs: sa.Table,
    counts: Mapping[str, Any],
    params: Mapping[str, Any],
    max_drop: float,
    force: bool,
) -> list[str]:
    """The input volume guard: ``counts`` against the nearest earlier run's.

    Raises
    ------
    InputGuardError
        A count fell by more than ``max_drop`` and not ``force`` (naming each count, both
        values and the run compared with).

    Returns
    -------
    list of str
        The notes of an override (``force``): empty when nothing dropped.
    """
    prev = _previous_counts(conn, runs, params)
    if prev is None:
        log.info("input volume guard: no earlier run at or before %s to compare with", params["as_of"])
        return []
    drops = input_drops(counts, prev[2], max_drop, previous_run=prev[0], previous_as_of=prev[1])
    if not drops:
        log.info("input volume guard: inputs within %s of run %s of %s", f"{max_drop:.0%}", prev[0], prev[1])
        return []
    text = "; ".join(drops)
    if not force:
        raise InputGuardError(
            f"input volume dropped since the previous run: {text} (a truncated extract? check the "
            "input tables, or raise scoring.max_input_drop knowingly)"
        )
    note = f"input volume guard overridden (--force): {text}"
    log.warning("%s", note)
    return [note]


def _next_run(
    conn: sa.Connection, runs: sa.Table, hist: sa.Table, params: Mapping[str, Any], scored_at: Any
) -> Any | None:
    """``as_of`` of the first logged run newer than ``(run, as_of)`` with rows in ``hist``.

    Newer: a later ``as_of``, or the same one scored later (the order of :func:`_upsert_latest`).
    None: this run is the newest of its kind.
    """
    qr, qh = _qualified(conn, runs), _qualified(conn, hist)
    sql = (
        f"SELECT r.as_of FROM {qr} AS r WHERE (r.as_of > :as_of OR (r.as_of = :as_of AND "
        "r.scored_at > :scored_at)) AND NOT (r.run_id = :run AND r.as_of = :as_of) AND EXISTS "
        f"(SELECT 1 FROM {qh} AS h WHERE h.run_id = r.run_id AND h.as_of = r.as_of) "
        "ORDER BY r.as_of, r.scored_at LIMIT 1"
    )
    row = conn.execute(sa.text(sql), {**params, "scored_at": scored_at}).first()
    return None if row is None else row[0]


def _is_empty(conn: sa.Connection, table: sa.Table) -> bool:
    """Whether ``table`` has no row (one probe, no scan)."""
    return conn.execute(sa.text(f"SELECT 1 FROM {_qualified(conn, table)} LIMIT 1")).first() is None


def _absent_rows(
    conn: sa.Connection, latest: sa.Table, params: Mapping[str, Any], mode: str, since: Any = None
) -> int:
    """Latest rows of customers (leads) absent from the newest run: marked or deleted.

    ``since`` None (the run ``(run, as_of)`` is the newest): the rows of other runs are the
    absent ones; ``mark`` sets ``absent_since = as_of`` where it is NULL (a row absent since an
    earlier run keeps its day). Otherwise (a backfill; ``since`` is the ``as_of`` of the next
    newer run): the rows this run inserted or replaced are of customers every newer run left
    out (a newer run's row would not have been replaced), so they are marked absent since
    ``since``; no other row is touched. ``delete`` deletes instead (the history keeps them).
    Returns the rows marked or deleted.
    """
    q = _qualified(conn, latest)
    rows = "NOT (run_id = :run AND as_of = :as_of)" if since is None else "run_id = :run AND as_of = :as_of"
    bound = {**params, "since": params["as_of"] if since is None else since}
    if mode == "delete":
        sql = f"DELETE FROM {q} WHERE {rows}"
    else:
        sql = f"UPDATE {q} SET absent_since = :since WHERE absent_since IS NULL AND {rows}"
    return max(int(conn.execute(sa.text(sql), bound).rowcount), 0)


def _log_run(
    conn: sa.Connection,
    runs: sa.Table,
    params: Mapping[str, Any],
    scored_at: Any,
    rows: Mapping[str, int],
    record: RunRecord | None,
    notes: Sequence[str],
) -> bool:
    """Insert the run log row of ``(run, as_of)`` unless there is one; whether it was inserted."""
    if _logged(conn, runs, params):
        return False

    def as_json(value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    all_notes = [*(record.notes if record is not None else ()), *notes]
    values = {
        "run_id": params["run"],
        "as_of": params["as_of"],
        "scored_at": scored_at,
        "model_versions": as_json(None if record is None else dict(record.model_versions or {}) or None),
        "settings_digest": None if record is None else record.settings_digest,
        "input_counts": as_json(None if record is None else record.input_counts),
        "rows": as_json(dict(rows)),
        "notes": as_json(all_notes or None),
    }
    p = conn.dialect.identifier_preparer
    cols = ", ".join(p.quote(c) for c in values)
    marks = ", ".join(f":{c}" for c in values)
    conn.execute(sa.text(f"INSERT INTO {_qualified(conn, runs)} ({cols}) VALUES ({marks})"), values)
    return True


def _seed_runs(conn: sa.Connection, runs: sa.Table, histories: Sequence[sa.Table]) -> int:
    """Fill a new run log with the runs already in ``histories`` (no counts: not compared)."""
    if not histories:
        return 0
    union = " UNION ALL ".join(
        f"SELECT run_id, as_of, scored_at FROM {_qualified(conn, h)}" for h in histories
    )
    sql = (
        f"INSERT INTO {_qualified(conn, runs)} (run_id, as_of, scored_at, notes) "
        f"SELECT run_id, as_of, MAX(scored_at), :note FROM ({union}) AS h GROUP BY run_id, as_of"
    )
    note = json.dumps(["logged from the score history when the run log was created"])
    n = max(int(conn.execute(sa.text(sql), {"note": note}).rowcount), 0)
    if n:
        log.info("%s: created with the %d runs of the score history", runs.name, n)
    return n


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
    # a row replaced is that of a customer (lead) in this run: no longer absent
    sets = ", ".join([*(f"{c} = excluded.{c}" for c in cols if c != key), "absent_since = NULL"])
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


def _previous_from_latest(engine: sa.Engine, latest: sa.Table, day: Any) -> pd.DataFrame | None:
    """The latest-score rows, if all are of days before ``day``; else None."""
    later = latest.c.as_of >= day
    with engine.connect() as conn:
        n_later = conn.execute(sa.select(sa.func.count()).select_from(latest).where(later)).scalar_one()
    if n_later:
        log.debug("%s: %d rows of %s or later: previous scores from the history",
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


def _previous_from_history(engine: sa.Engine, hist: sa.Table, day: Any) -> pd.DataFrame:
    """Each customer's newest history row of a day before ``day`` (a run of ``day`` itself never)."""
    with engine.connect() as conn:
        q = _qualified(conn, hist)
        sql = (
            "SELECT customer_id, as_of, churn_probability FROM ("
            "SELECT customer_id, as_of, churn_probability, ROW_NUMBER() OVER "
            "(PARTITION BY customer_id ORDER BY as_of DESC, scored_at DESC) AS rn "
            f"FROM {q} WHERE as_of < :as_of) AS h WHERE rn = 1"
        )
        return pd.read_sql_query(sa.text(sql), conn, params={"as_of": day})
