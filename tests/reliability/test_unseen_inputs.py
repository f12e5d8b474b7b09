"""Inputs the models never saw are refused before anything is written (issue #17, item 5).

On a trained SQLite project scored once (the good scores), the CRM is changed the way an
upstream export breaks, and ``crmscore score`` is run again:

(a) a categorical attribute of every customer replaced by levels unseen at training;
(b) a numeric feature column set to NULL for every customer;
(c) a numeric attribute column retyped to text (``'x12'``).

Each must exit 4, name the column and leave the score tables (latest and history) exactly as
they were; ``--force`` then writes and the run's notes say what was forced.
"""

from __future__ import annotations

import copy
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import run_cli_captured

pytestmark = pytest.mark.reliability

SCORE_TABLES = {
    "customer_scores": "customer_id",
    "customer_score_history": "run_id, customer_id",
    "lead_scores": "lead_id",
    "lead_score_history": "run_id, lead_id",
}
#: change of the CRM → (the column the refusal names, SQL applied to the copy of the CRM)
BREAKAGES = {
    "unseen_levels": ("plan", "UPDATE customers SET plan = 'legacy-' || plan WHERE plan IS NOT NULL"),
    "all_null": ("acquisition_cost", "UPDATE customers SET acquisition_cost = NULL"),
    # a free attribute (a contract column such as acquisition_cost is refused by validation)
    "retyped": (
        "onboarding_score",
        "UPDATE customers SET onboarding_score = 'x' || CAST(CAST(onboarding_score AS INTEGER) AS TEXT) "
        "WHERE onboarding_score IS NOT NULL",
    ),
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


def _score(root: Path, *extra: str) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        return run_cli_captured(
            ["--params", str(root / "params.yaml"), "score", "--as-of", "2025-12-31", *extra], mp
        )


@pytest.fixture(scope="module")
def scored(trained_project, tmp_path_factory) -> Path:
    """The trained project's CRM copied and scored once (good inputs): its database file."""
    root = tmp_path_factory.mktemp("unseen-good")
    _copy_db(trained_project.root / "crm.sqlite", root / "crm.sqlite")
    params = copy.deepcopy(trained_project.params)
    params["data"]["crm_url"] = f"sqlite:///{root / 'crm.sqlite'}"
    params["data"]["quarantine"]["folder"] = str(root / "q")
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    code, text = _score(root)
    assert code == 0, text
    assert "input features checked" in text  # the summary line of every kind's checks
    return root


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_inputs_unlike_training_exit_4_write_nothing_and_force_writes(scored, tmp_path, breakage):
    column, sql = BREAKAGES[breakage]
    root = tmp_path
    _copy_db(scored / "crm.sqlite", root / "crm.sqlite")
    params = yaml.safe_load((scored / "params.yaml").read_text())
    params["data"]["crm_url"] = f"sqlite:///{root / 'crm.sqlite'}"
    params["data"]["quarantine"]["folder"] = str(root / "q")
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    con = sqlite3.connect(root / "crm.sqlite")
    with con:
        changed = con.execute(sql).rowcount
    n_customers = con.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    con.close()
    assert changed > 2000  # most of the 3,000 customers
    before = _snapshot(root / "crm.sqlite")

    code, text = _score(root)
    flat = " ".join(text.split())  # the console wraps long lines
    assert code == 4, text
    named = re.compile(rf"churn model: input (column )?'{column}'")
    assert named.search(flat), text
    assert "--force" in flat and "nothing was written" in flat
    after = _snapshot(root / "crm.sqlite")
    for table, frame in before.items():
        pd.testing.assert_frame_equal(after[table], frame, obj=table)

    code, text = _score(root, "--force")
    flat = " ".join(text.split())
    assert code == 0, text
    assert re.search(rf"note: forced \(--force\): churn model: input (column )?'{column}'", flat), text
    assert re.search(
        r"note: churn: \d+ input features checked on 3,000 rows: .* \(written anyway: --force\)", flat
    )
    written = _snapshot(root / "crm.sqlite")
    assert len(written["customer_score_history"]) == len(before["customer_score_history"]) + n_customers
    assert set(written["customer_scores"]["run_id"]) != set(before["customer_scores"]["run_id"])
