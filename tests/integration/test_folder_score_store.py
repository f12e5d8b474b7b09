"""A folder CRM is a score store: ``score`` writes Parquet scores, a replay writes nothing, and
``report`` shows the numbers of the worklist.

The trained project's models score its CRM exported as a folder of Parquet files
(``data.source: folder``): the first ``crmscore score`` writes the folder store
(:mod:`crmscore.io.score_files`), the second (the same run) is a replay that changes no file,
and ``crmscore report`` reads the store's latest scores, so its at-risk table is the store's
top accounts by value at risk and its rows in the worklist's bands are the worklist's first rows,
with the same values.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from crmscore.io.files import write_folder
from crmscore.io.score_files import read_score_files, read_score_runs
from helpers import run_cli_captured
from projects import AS_OF, logging_restored, write_params


@pytest.fixture
def folder_project(fork_trained_project, monkeypatch):
    project = fork_trained_project("folder-store")
    root = project.root
    write_folder(project.crm.tables, root / "crm", file_format="parquet")
    params = copy.deepcopy(project.params)
    params["data"].update({"source": "folder", "folder": str(root / "crm")})
    params["data"].pop("crm_url", None)
    write_params(root, params)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    return root


def test_folder_store_score_replay_and_report_agree(folder_project, monkeypatch):
    root = folder_project
    store = root / "crm" / "scores"
    score = ["--params", "params.yaml", "score", "--as-of", AS_OF.isoformat(), "--worklist-dir", "wl"]
    with logging_restored():
        code, text = run_cli_captured(score, monkeypatch)
        assert code == 0, text
        latest = read_score_files(store)
        assert len(latest) == 3000 and latest["absent_since"].isna().all()
        assert len(read_score_runs(store)) == 1
        files = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file() and p.name != ".lock"}

        code, text = run_cli_captured(score, monkeypatch)  # the same run: a replay
        assert code == 0, text
        assert "replay: run" in text and "nothing changed" in text
        after = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == files
        assert len(read_score_runs(store)) == 1

        report = ["--params", "params.yaml", "report", "--as-of", AS_OF.isoformat(), "--json", "r.json"]
        report += ["--output", "r.html"]
        code, text = run_cli_captured(report, monkeypatch)
        assert code == 0, text
    at_risk = pd.DataFrame(json.loads((root / "r.json").read_text())["at_risk"])
    top = latest.sort_values("value_at_risk", ascending=False, kind="stable").head(len(at_risk))
    assert len(at_risk) > 0
    assert at_risk["customer_id"].tolist() == top["customer_id"].tolist()
    np.testing.assert_allclose(at_risk["value_at_risk"], top["value_at_risk"], rtol=1e-9)
    np.testing.assert_allclose(at_risk["churn_probability"], top["churn_probability"], rtol=1e-9)
    worklist = pd.read_csv(root / "wl" / "worklist.csv", dtype={"customer_id": str})
    bands = top.set_index("customer_id")["churn_risk"]
    shown = at_risk[at_risk["customer_id"].map(bands).isin(["high", "medium"]).to_numpy()]
    assert len(shown) > 0
    head = worklist.head(len(shown))
    assert head["customer_id"].tolist() == shown["customer_id"].tolist()
    np.testing.assert_allclose(head["value_at_risk"], shown["value_at_risk"], rtol=1e-6)
