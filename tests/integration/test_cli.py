"""The command line: help, exit codes, generate → validate, and a folder of broken files."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from crmscore.cli import main


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["crmscore", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out + captured.err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    return tmp_path


def test_help_lists_every_command(monkeypatch, capsys):
    code, text = run_cli(["--help"], monkeypatch, capsys)
    assert code == 0
    for command in ("generate", "validate", "train", "score", "report", "demo", "features"):
        assert command in text


@pytest.mark.parametrize("command", ["generate", "validate", "features", "train", "score", "report", "demo"])
def test_every_command_has_help(command, monkeypatch, capsys):
    code, text = run_cli([command, "--help"], monkeypatch, capsys)
    assert code == 0 and "Usage" in text


@pytest.mark.parametrize("command", ["train", "score", "report"])
def test_commands_need_an_explicit_day(command, workdir, monkeypatch, capsys):
    code, text = run_cli([command], monkeypatch, capsys)
    assert code == 2
    assert "--as-of" in text


def test_usage_and_config_errors_exit_2(workdir, monkeypatch, capsys):
    assert run_cli(["no-such-command"], monkeypatch, capsys)[0] == 2
    assert run_cli(["validate", "--as-of", "2025-02-30"], monkeypatch, capsys)[0] == 2
    (workdir / "bad.yaml").write_text("churn:\n  definiton: inactivity\n")
    code, text = run_cli(["--params", "bad.yaml", "validate"], monkeypatch, capsys)
    assert code == 2 and "churn.definiton: unknown key" in text


def test_generate_into_default_sqlite_then_validate_finds_no_problem(workdir, monkeypatch, capsys):
    code, text = run_cli(["generate", "--customers", "400", "--seed", "3"], monkeypatch, capsys)
    assert code == 0, text
    assert (workdir / "data" / "crm.sqlite").exists()
    assert (workdir / "data" / "crm_truth" / "truth.json").exists()
    code, text = run_cli(["validate", "--json", "v.json"], monkeypatch, capsys)
    assert code == 0, text
    assert "no problem found" in text
    report = json.loads((workdir / "v.json").read_text())
    assert report["usable"] and report["problems"] == []
    assert report["tables"]["customers"]["rows_kept"] == 400
    assert all(t["rows_set_aside"] == 0 for t in report["tables"].values())


def test_generate_to_csv_folder_then_validate(workdir, monkeypatch, capsys):
    code, _ = run_cli(
        ["generate", "-n", "300", "--to", "folder", "--folder", "crm", "--format", "csv"], monkeypatch, capsys
    )
    assert code == 0
    assert (workdir / "crm" / "transactions.csv").exists() and (
        workdir / "crm" / "truth" / "truth.json"
    ).exists()
    code, text = run_cli(["validate", "--folder", "crm"], monkeypatch, capsys)
    assert code == 0 and "no problem found" in text, text


def write_broken_folder(folder) -> None:
    folder.mkdir()
    pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C2", "", "C4"],
            "created_at": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-01", "2024-01-01 08:00"],
        }
    ).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C1", "C1", "C9", "C1", "C1", "C1", "C1"],
            "ts": ["2024-02-01T00:00:00Z"] * 5
            + ["yesterday", "2099-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-02-01T00:00:00Z"],
            "amount": ["10", "10", "inf", "ten", "5", "1", "1", "3", "4"],
            "transaction_id": ["T1", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T7"],
        }
    ).to_csv(folder / "transactions.csv", index=False)
    # a required column missing entirely:
    pd.DataFrame({"ticket_id": ["K1"], "opened_at": ["2024-03-01T00:00:00Z"]}).to_csv(
        folder / "support_tickets.csv", index=False
    )


def test_broken_folder_reports_every_problem_with_counts_and_exits_3(workdir, monkeypatch, capsys):
    write_broken_folder(workdir / "broken")
    code, text = run_cli(
        ["validate", "--folder", "broken", "--as-of", "2025-01-01", "--json", "r.json"], monkeypatch, capsys
    )
    assert code == 3, text
    report = json.loads((workdir / "r.json").read_text())
    assert report["tables"]["customers"]["set_aside"] == {
        "duplicate_conflict": 2,
        "null_id:customer_id": 1,
        "naive_timestamp:created_at": 1,
    }
    assert report["tables"]["transactions"]["set_aside"] == {
        "duplicate_identical": 1,
        "duplicate_conflict": 2,
        "non_finite:amount": 1,
        "bad_type:amount": 1,
        "bad_type:ts": 1,
        "in_future": 1,
        "unknown_customer": 1,
    }
    assert report["tables"]["transactions"]["rows_kept"] == 1
    assert [p["column"] for p in report["problems"]] == ["customer_id"]
    assert "support_tickets.customer_id: required column missing" in text
    assert "unusable" in text
    for reason, n in report["tables"]["transactions"]["set_aside"].items():
        assert reason in text and str(n) in text
    aside = pd.read_csv(workdir / "data" / "quarantine" / "transactions.csv")
    assert len(aside) == 8 and set(aside["_reason"]) == set(report["tables"]["transactions"]["set_aside"])


def test_missing_folder_is_invalid_data(workdir, monkeypatch, capsys):
    code, text = run_cli(["validate", "--folder", "nowhere"], monkeypatch, capsys)
    assert code == 3 and "not found" in text


def test_features_command_writes_one_row_per_known_customer(workdir, monkeypatch, capsys):
    code, _ = run_cli(["generate", "-n", "500", "--to", "folder", "--folder", "crm"], monkeypatch, capsys)
    assert code == 0
    code, text = run_cli(
        ["features", "--folder", "crm", "--as-of", "2025-06-30", "--output", "f.csv"], monkeypatch, capsys
    )
    assert code == 0, text
    table = pd.read_csv(workdir / "f.csv")
    for col in ("customer_id", "frequency", "recency", "T", "monetary_value", "rfm_segment"):
        assert col in table.columns
    assert table["customer_id"].is_unique
    customers = pd.read_parquet(workdir / "crm" / "customers.parquet")
    known = customers["created_at"] < pd.Timestamp("2025-07-01", tz="UTC")
    assert len(table) == int(known.sum())


def test_features_needs_a_cutoff(workdir, monkeypatch, capsys):
    code, text = run_cli(["features", "--output", "f.csv"], monkeypatch, capsys)
    assert code == 2 and "--as-of" in text


def test_python_dash_m_and_console_script_exit_codes():
    import subprocess

    ok = subprocess.run([sys.executable, "-m", "crmscore", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "generate" in ok.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "crmscore", "validate", "--bogus"], capture_output=True, text=True
    )
    assert usage.returncode == 2
