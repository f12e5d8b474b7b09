"""``--as-of`` on the command line: ISO days only, a future day refused by ``score``, warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from tests.helpers import run_cli_captured


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the CLI: (exit code, its console output and what click wrote for a usage error)."""

    def run(args: list[str]) -> tuple[int, str]:
        code, text = run_cli_captured(args, monkeypatch)
        captured = capsys.readouterr()
        return code, text + captured.out + captured.err

    return run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    return tmp_path


@pytest.fixture
def folder(workdir):
    """A tiny CRM folder whose newest event is 1997-03-05 (CDNOW style YYYYMMDD dates)."""
    crm = workdir / "crm"
    crm.mkdir()
    pd.DataFrame({"customer_id": ["C1", "C2"], "created_at": [19970101, 19970102]}).to_csv(
        crm / "customers.csv", index=False
    )
    pd.DataFrame(
        {"customer_id": ["C1", "C2", "C1"], "ts": [19970101, 19970102, 19970305], "amount": [10.0, 20.0, 5.5]}
    ).to_csv(crm / "transactions.csv", index=False)
    return crm


def _tomorrow() -> str:
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize("command", ["validate", "score", "features", "train", "report"])
@pytest.mark.parametrize("value", ["01-02-1998", "1998/01/02", "19980102", "2 Jan 1998", "1998-1-2"])
def test_a_non_iso_as_of_is_a_usage_error_saying_the_form(command, value, workdir, cli):
    extra = ["--output", "features.parquet"] if command == "features" else []
    code, text = cli([command, "--as-of", value, *extra])
    assert code == 2
    assert "YYYY-MM-DD" in text


def test_an_impossible_iso_day_is_a_usage_error(workdir, cli):
    code, text = cli(["validate", "--as-of", "1998-02-30"])
    assert code == 2 and "1998-02-30" in text


def test_score_refuses_a_day_after_today_without_allow_future(folder, cli):
    code, text = cli(["score", "--folder", str(folder), "--as-of", _tomorrow()])
    assert code == 2
    assert "--allow-future" in text and "after today" in text


def test_allow_future_lets_score_go_on_with_a_warning(folder, cli):
    args = ["score", "--folder", str(folder), "--as-of", _tomorrow(), "--allow-future", "--no-write"]
    code, text = cli(args)
    assert "pass --allow-future" not in text  # not refused: it went on to validate and score
    assert "is after today" in text  # the console note of validation
    assert code != 2


def test_as_of_after_the_newest_data_warns(folder, workdir, cli):
    out = workdir / "features.parquet"
    args = ["features", "--folder", str(folder), "--as-of", "1997-12-31", "--output", str(out)]
    code, text = cli(args)
    assert code == 0, text
    assert "after the newest data (1997-03-05, transactions.ts)" in text  # console note
    # and the log warning (the CLI logs to its error console)
    assert "WARNING" in text and text.count("after the newest data") == 2
    code, text = cli(["validate", "--folder", str(folder), "--as-of", "1997-03-05"])
    assert code == 0, text
    assert "newest data" not in text  # data up to the cutoff day: no warning
