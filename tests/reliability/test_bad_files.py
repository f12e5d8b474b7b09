"""Bad files end to end through the CLI with a folder CRM (``data.source: folder``).

A header-only required table stops ``validate`` and ``score`` with exit 3 before any model
runs, and the score files of the last good run stay exactly as they were; an empty optional file is
an absent table (a note) and the run succeeds; a byte that does not decode sets its row aside
as ``bad_encoding`` and keeps every other row, counted.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pandas as pd

from crmscore.io.files import write_folder
from helpers import run_cli_captured
from projects import AS_OF, write_params

DAY = AS_OF.isoformat()


def _project(fork, name: str) -> Path:
    """A fork of the trained project reading a CSV folder of its CRM (scores go to files only:
    a folder source is never written back)."""
    project = fork(name)
    root = project.root
    write_folder(project.crm.tables, root / "crm", "csv")
    params = copy.deepcopy(project.params)
    params["data"].update({"source": "folder", "folder": str(root / "crm")})
    write_params(root, params)
    return root


def _cli(root: Path, monkeypatch, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(root)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return run_cli_captured(["--params", str(root / "params.yaml"), *args], monkeypatch)


def _score(root: Path, monkeypatch) -> tuple[int, str]:
    return _cli(
        root, monkeypatch, "score", "--as-of", DAY, "--output", "scores.parquet", "--worklist-dir", "wl"
    )


def _outputs(root: Path) -> dict[str, str]:
    """SHA-256 of every file a scoring run writes (scores, lead scores, worklist)."""
    files = [*root.glob("scores*.parquet"), *(root / "wl").glob("*")]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files)}


def test_header_only_transactions_stop_validate_and_score_and_keep_the_scores(
    fork_trained_project, monkeypatch
):
    root = _project(fork_trained_project, "bad-files-header-only")
    code, text = _score(root, monkeypatch)
    assert code == 0, text
    before = _outputs(root)
    assert "scores.parquet" in before and "wl/worklist.csv" in before, text

    (root / "crm" / "transactions.csv").write_text("customer_id,ts,amount,transaction_id\n")
    code, text = _cli(root, monkeypatch, "validate", "--as-of", DAY, "--json", "v.json")
    assert code == 3, text
    assert "transactions: the file has no rows" in text and "unusable" in text
    report = json.loads((root / "v.json").read_text())
    assert [p["table"] for p in report["problems"] if p["fatal"]] == ["transactions"]

    code, text = _score(root, monkeypatch)  # the same output paths as the good run
    assert code == 3, text
    assert "transactions: the file has no rows" in text
    assert "ValueError" not in text and "loading crmscore" not in text  # stopped before any model
    assert _outputs(root) == before  # nothing written: the good scores stay as they were


def test_an_empty_optional_file_is_an_absent_table_and_the_run_succeeds(fork_trained_project, monkeypatch):
    root = _project(fork_trained_project, "bad-files-empty-optional")
    (root / "crm" / "leads.csv").write_bytes(b"")  # 0 bytes
    (root / "crm" / "lead_activities.csv").write_text("lead_id,ts,activity,channel\n")  # a header only
    code, text = _cli(root, monkeypatch, "validate", "--as-of", DAY, "--json", "v.json")
    assert code == 0, text
    notes = json.loads((root / "v.json").read_text())["notes"]
    assert "leads: the file has no rows: treated as absent" in notes
    assert "lead_activities: the file has no rows: treated as absent" in notes

    code, text = _score(root, monkeypatch)
    assert code == 0, text
    assert "leads: not scored" in text  # the lead model has no leads to score: a note, no failure
    scores = pd.read_parquet(root / "scores.parquet")
    assert len(scores) > 0 and scores["churn_probability"].notna().all()


def test_a_bad_byte_in_customers_csv_sets_that_row_aside_as_bad_encoding(fork_trained_project, monkeypatch):
    root = _project(fork_trained_project, "bad-files-encoding")
    path = root / "crm" / "customers.csv"
    lines = path.read_bytes().split(b"\n")
    row = 41  # the 42nd customer: file line 43
    victim = lines[row + 1].split(b",")[0].decode()
    lines[row + 1] = lines[row + 1] + b"\xff"  # a stray byte at the end of its last field
    path.write_bytes(b"\n".join(lines))
    n = len(pd.read_csv(root / "crm" / "customers.csv", encoding="latin-1"))

    code, text = _cli(root, monkeypatch, "validate", "--as-of", DAY, "--json", "v.json")
    assert code == 0, text
    report = json.loads((root / "v.json").read_text())
    customers = report["tables"]["customers"]
    assert customers["rows_in"] == n and customers["rows_kept"] == n - 1
    assert customers["set_aside"] == {"bad_encoding": 1}
    assert any(note.startswith("customers: 1 row(s) set aside as bad_encoding") and "line(s) 43 " in note
               for note in report["notes"])  # fmt: skip
    aside = pd.read_csv(root / "q" / "customers.csv", dtype=str)
    assert aside[["_reason", "_row", "customer_id"]].values.tolist() == [["bad_encoding", str(row), victim]]
