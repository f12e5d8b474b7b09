"""The documented exit codes: README.md "Exit codes" lists exactly the CLI's codes, unusable data
exits 3 (a header-only required table), and SIGINT exits 130 and SIGTERM 143 with their
messages, nothing written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crmscore import cli
from helpers import REPO_ROOT, run_cli_captured

GOOD_TS = "2025-01-01T10:00:00+00:00"


def test_readme_documents_every_exit_code_of_the_cli():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| \*\*(\d+)\*\* \|", section, flags=re.M)}
    constants = {v for k, v in vars(cli).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert documented == constants == {0, 1, 2, 3, 4, 130, 143}
    assert "130 interrupted" in cli.app.info.help and "4 refused by an input guard" in cli.app.info.help


@pytest.fixture
def crm_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "customers.csv").write_text("customer_id,created_at\nC1,2024-01-01\nC2,2024-01-01\n")
    (folder / "transactions.csv").write_text(f"customer_id,ts,amount\nC1,{GOOD_TS},5\n")
    return folder


def test_validate_exits_0_on_usable_data(crm_folder, monkeypatch):
    code, text = run_cli_captured(
        ["validate", "--folder", str(crm_folder), "--as-of", "2025-06-30"], monkeypatch
    )
    assert code == 0, text


def test_validate_exits_3_on_a_header_only_required_table(crm_folder, monkeypatch):
    (crm_folder / "transactions.csv").write_text("customer_id,ts,amount\n")
    code, text = run_cli_captured(
        ["validate", "--folder", str(crm_folder), "--as-of", "2025-06-30", "--json", "r.json"], monkeypatch
    )
    assert code == 3, text
    assert "transactions: the file has no rows" in text and "unusable" in text
    report = json.loads(Path("r.json").read_text())
    assert not report["usable"]
    assert [p["table"] for p in report["problems"] if p["fatal"]] == ["transactions"]


def test_validate_exits_0_when_an_optional_file_is_empty(crm_folder, monkeypatch):
    (crm_folder / "leads.csv").write_bytes(b"")
    code, text = run_cli_captured(
        ["validate", "--folder", str(crm_folder), "--as-of", "2025-06-30"], monkeypatch
    )
    assert code == 0, text
    assert "leads: the file has no rows: treated as absent" in text


@pytest.mark.parametrize(
    ("sig", "exit_code", "message"),
    [
        (signal.SIGINT, 130, "interrupted: nothing of this run was committed"),
        (signal.SIGTERM, 143, "terminated (SIGTERM): nothing of this run was committed"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_stop_signal_exits_with_its_code_and_message_and_nothing_written(tmp_path, sig, exit_code, message):
    env = {k: v for k, v in os.environ.items() if k != "CRMSCORE_CRM_URL"}
    env["COLUMNS"] = "200"  # one log line per record
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmscore", "generate", "-n", "1000000", "--to", "folder", "--folder", "crm"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "simulating" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), "".join(lines)  # the long step is under way
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    text = "".join(lines)
    assert code == exit_code, text
    assert message in text
    assert "Traceback" not in text
    assert not list((tmp_path / "crm").glob("*.parquet"))  # interrupted before any table was written
