"""A truncated input extract never overwrites good scores (the input volume guard, end to end).

The trained project is scored through the CLI as of 2025-11-30; then its ``transactions`` table
is cut to one row (a broken extract: the rest of the CRM is intact, so every customer would
still be scored, all but one as "No purchases" with no CLV) and scored as of 2025-12-31.
Asserted: ``crmscore score`` exits 4, the message names ``transactions`` with both counts and
the run compared with, and **nothing is written** (latest scores, history and run log exactly
as before); ``--force`` then writes, with the override logged as a warning and kept in the
run's notes and the run log.

The checks of the inputs against each model's training data (``scoring.input_checks``) would
refuse this extract too (almost every customer's purchase features go missing); they are set
not to refuse here, so that what is measured is the volume guard alone.
"""

from __future__ import annotations

import copy
import sqlite3

import pandas as pd
import pytest

from helpers import assert_same_scores, run_cli_captured, score_snapshot
from projects import logging_restored, write_params

DAY_1, DAY_2 = "2025-11-30", "2025-12-31"
#: the training-data checks never refuse here (see the module docstring)
NO_INPUT_CHECKS = {"unseen_warn": 1.0, "unseen_refuse": 1.0, "missing_warn": 1.0, "missing_refuse": 1.0}


@pytest.fixture
def project(fork_trained_project, tmp_path):
    """The trained project on its own copy of the CRM database (the shared one is never cut)."""
    from crmscore.io.crm import create_engine, write_sql_tables

    fork = fork_trained_project("truncated")
    db = fork.root / "crm-own.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    write_sql_tables(engine, fork.crm.tables)
    engine.dispose()
    params = copy.deepcopy(fork.params)
    params["data"]["crm_url"] = f"sqlite:///{db}"
    params.setdefault("scoring", {})["input_checks"] = NO_INPUT_CHECKS
    write_params(fork.root, params)
    return fork.root, params, db


def _score(root, day: str, *extra: str) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        return run_cli_captured(["--params", str(root / "params.yaml"), "score", "--as-of", day, *extra], mp)


def _state(params):
    from crmscore.config import config_from_mapping
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import read_runs

    cfg = config_from_mapping(params)
    engine = create_engine(cfg.data.resolved_crm_url())
    try:
        return score_snapshot(engine, None, cfg.scoring), read_runs(engine, cfg.scoring)
    finally:
        engine.dispose()


def test_truncated_transactions_are_refused_and_force_writes(project):
    root, params, db = project
    code, text = _score(root, DAY_1)
    assert code == 0, text
    tables, runs = _state(params)
    assert len(runs) == 1 and len(tables["customer_scores"]) > 0
    day_1_run = runs.loc[0, "run_id"]
    n_tx = runs.loc[0, "input_counts"]["tables"]["transactions"]
    assert n_tx > 1000

    with sqlite3.connect(db) as conn:  # the broken extract: one row of transactions left
        conn.execute("DELETE FROM transactions WHERE rowid <> (SELECT MIN(rowid) FROM transactions)")
    code, text = _score(root, DAY_2)
    flat = " ".join(text.split())  # (the console wraps long lines)
    assert code == 4, text
    assert f"transactions: 1 rows vs {n_tx:,} in run {day_1_run} of {DAY_1}" in flat
    assert "max_input_drop 50 %" in flat and "--force writes anyway" in flat
    after_tables, after_runs = _state(params)
    assert_same_scores(tables, after_tables)  # latest and history exactly as before
    pd.testing.assert_frame_equal(after_runs, runs)

    code, text = _score(root, DAY_2, "--force")
    assert code == 0, text
    flat = " ".join(text.split())
    # the CLI's log (its console): the override as a warning, then the run's note
    assert "WARNING input volume guard overridden (--force): transactions: 1 rows" in flat, text
    assert "note: input volume guard overridden (--force): transactions: 1 rows" in flat
    forced_tables, forced_runs = _state(params)
    assert list(forced_runs["as_of"].astype(str)) == [DAY_1, DAY_2]
    forced = forced_runs.iloc[1]
    assert forced["input_counts"]["tables"]["transactions"] == 1
    assert any("overridden (--force)" in note for note in forced["notes"])
    assert set(forced_tables["customer_scores"]["run_id"]) == {forced["run_id"]}
