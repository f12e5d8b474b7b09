"""Near-replays: what the scores do not depend on is a replay; what they depend on is a new run
(issue #17, item 6).

On a trained SQLite project scored once for day D (the good scores), ``crmscore score`` is run
again on a copy after

(a) the input tables were rewritten in another physical row order (a reorder of the read);
(b) a transaction dated after D was added (a row the cutoff excludes);

each must be a replay: the same run id, the CLI says so, and the score tables (latest and
history) are exactly as they were. And after

(c) ``scoring.health_weights`` changed in ``params.yaml``: a new run id, whose health scores are
    those in the latest table and in ``--output`` alike, with the trends of D's first run
    (against the days before D: none), not all "steady" against the same day;
(d) scoring D + 7: the trend of every customer is computed against their score of D.
"""

from __future__ import annotations

import copy
import re
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import run_cli_captured

pytestmark = pytest.mark.reliability

D = date(2025, 12, 31)
SCORE_TABLES = {
    "customer_scores": "customer_id",
    "customer_score_history": "run_id, as_of, customer_id",
    "lead_scores": "lead_id",
    "lead_score_history": "run_id, as_of, lead_id",
}


def _copy_db(src: Path, dst: Path) -> None:
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _snapshot(db: Path) -> dict[str, pd.DataFrame]:
    con = sqlite3.connect(db)
    try:
        return {
            t: pd.read_sql_query(f"SELECT * FROM {t} ORDER BY {key}", con) for t, key in SCORE_TABLES.items()
        }
    finally:
        con.close()


def _project(src: Path, root: Path, params: dict) -> Path:
    """A copy of the CRM database ``src`` in ``root`` with ``params`` pointed at it."""
    _copy_db(src, root / "crm.sqlite")
    params = copy.deepcopy(params)
    params["data"]["crm_url"] = f"sqlite:///{root / 'crm.sqlite'}"
    params["data"]["quarantine"]["folder"] = str(root / "q")
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def _score(root: Path, day: date = D, *extra: str) -> tuple[str, str]:
    """``crmscore score`` in ``root``: (run id, console output); asserts it succeeded."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        code, text = run_cli_captured(
            ["--params", str(root / "params.yaml"), "score", "--as-of", day.isoformat(), *extra], mp
        )
    assert code == 0, text
    found = re.search(r"^run ([0-9a-f]{32})$", text, re.MULTILINE)
    assert found, text
    return found.group(1), text


@pytest.fixture(scope="module")
def scored(trained_project, tmp_path_factory) -> tuple[Path, str]:
    """The trained project's CRM copied and scored for D once: (its folder, the run id)."""
    root = _project(
        trained_project.root / "crm.sqlite", tmp_path_factory.mktemp("scored-d"), trained_project.params
    )
    run_id, text = _score(root, D, "-o", "first.csv")
    assert "replay:" not in text
    return root, run_id


@pytest.fixture
def project(scored, tmp_path) -> Path:
    """A copy of the scored project (CRM with D's scores), for one test to change."""
    root, _ = scored
    return _project(root / "crm.sqlite", tmp_path, yaml.safe_load((root / "params.yaml").read_text()))


def _shuffle(con: sqlite3.Connection, table: str) -> None:
    """Rewrite ``table`` with its rows in a random physical order (same schema, same rows)."""
    (ddl,) = con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    con.execute(re.sub(rf'^CREATE TABLE "?{table}"?', f'CREATE TABLE "{table}_shuffled"', ddl))
    con.execute(f'INSERT INTO "{table}_shuffled" SELECT * FROM "{table}" ORDER BY random()')
    con.execute(f'DROP TABLE "{table}"')
    con.execute(f'ALTER TABLE "{table}_shuffled" RENAME TO "{table}"')


def _read_order(db: Path, table: str, key: str) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute(f'SELECT "{key}" FROM "{table}"')]
    finally:
        con.close()


def _assert_replay(project: Path, first_id: str) -> None:
    before = _snapshot(project / "crm.sqlite")
    run_id, text = _score(project)
    assert run_id == first_id, text
    flat = " ".join(text.split())  # the console wraps long lines
    assert f"replay: run {first_id} of {D} was already written: nothing changed" in flat, text
    after = _snapshot(project / "crm.sqlite")
    for table, frame in before.items():
        pd.testing.assert_frame_equal(after[table], frame, obj=table)


def test_rows_read_in_another_order_are_a_replay(scored, project) -> None:
    _, first_id = scored
    db = project / "crm.sqlite"
    order = {
        t: _read_order(db, t, k)
        for t, k in (("customers", "customer_id"), ("transactions", "transaction_id"))
    }
    con = sqlite3.connect(db)
    with con:
        for table in order:
            _shuffle(con, table)
    con.close()
    for table, key in (("customers", "customer_id"), ("transactions", "transaction_id")):
        now = _read_order(db, table, key)
        assert sorted(now) == sorted(order[table]) and now != order[table]  # same rows, another order
    _assert_replay(project, first_id)


def test_a_transaction_dated_after_the_cutoff_is_a_replay(scored, project) -> None:
    _, first_id = scored
    con = sqlite3.connect(project / "crm.sqlite")
    with con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(transactions)")]
        row = dict(zip(cols, con.execute("SELECT * FROM transactions LIMIT 1").fetchone(), strict=True))
        row.update(transaction_id="T-after-cutoff", ts="2026-01-02T09:30:00+00:00", amount=1234.5)
        marks = ", ".join("?" for _ in cols)
        con.execute(f"INSERT INTO transactions ({', '.join(cols)}) VALUES ({marks})", list(row.values()))
    con.close()
    _assert_replay(project, first_id)


def test_changed_health_weights_are_a_new_run_with_the_new_health_scores(scored, project) -> None:
    root, first_id = scored
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.setdefault("scoring", {})["health_weights"] = {
        "retention": 0.1,
        "alive": 0.1,
        "engagement": 0.7,
        "support": 0.1,
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    before = _snapshot(project / "crm.sqlite")
    run_id, text = _score(project, D, "-o", "second.csv")
    assert run_id != first_id and "replay:" not in text
    after = _snapshot(project / "crm.sqlite")
    latest = after["customer_scores"].set_index("customer_id")
    output = pd.read_csv(project / "second.csv", dtype={"customer_id": str}).set_index("customer_id")
    first = pd.read_csv(root / "first.csv", dtype={"customer_id": str}).set_index("customer_id")
    assert set(latest["run_id"]) == {run_id} and len(latest) == len(output)
    pd.testing.assert_series_equal(
        latest["health_score"].astype(float), output.loc[latest.index, "health_score"], check_names=False
    )
    assert (output["health_score"] != first.loc[output.index, "health_score"]).mean() > 0.5  # new weights
    assert len(after["customer_score_history"]) == len(before["customer_score_history"]) + len(output)
    con = sqlite3.connect(project / "crm.sqlite")
    logged = dict(con.execute("SELECT run_id, settings_digest FROM score_runs").fetchall())
    con.close()
    assert set(logged) == {first_id, run_id} and len(set(logged.values()) - {None}) == 2  # (the run log)
    # the trend of a second run of D is against the days before D, as the first run's was
    pd.testing.assert_series_equal(latest["trend"], first.loc[latest.index, "trend"], check_names=False)
    assert "steady" not in set(latest["trend"])


def test_the_next_week_trends_against_d(scored, project) -> None:
    from crmscore.config import ScoringConfig
    from crmscore.scoring.rows import trend_labels

    _, first_id = scored
    before = _snapshot(project / "crm.sqlite")
    of_d = before["customer_scores"].set_index("customer_id")
    assert set(of_d["run_id"]) == {first_id}
    run_id, _ = _score(project, D + timedelta(days=7))
    latest = _snapshot(project / "crm.sqlite")["customer_scores"].set_index("customer_id")
    assert run_id != first_id and set(latest["run_id"]) == {run_id}
    expected = trend_labels(
        latest["churn_probability"].astype(float),
        of_d["churn_probability"].astype(float),
        ScoringConfig().trend_threshold,
    )
    pd.testing.assert_series_equal(latest["trend"], expected, check_names=False)
    assert set(expected) - {"steady"}  # a week later some customers moved (else: proves little)
