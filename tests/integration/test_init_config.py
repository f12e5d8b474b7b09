"""``crmscore init`` on a renamed export and ``crmscore config`` (resolved, secrets masked)."""

from __future__ import annotations

import sys

import pytest
import yaml

from crmscore.cli import main
from crmscore.config import Config, load_config
from crmscore.ingest.synth import generate
from crmscore.io.files import write_folder
from helpers import run_cli_captured

AS_OF = "2025-12-31"


def run(args: list[str], monkeypatch) -> tuple[int, str]:
    """The CLI's exit code and output, line wrapping undone."""
    code, text = run_cli_captured(args, monkeypatch)
    return code, " ".join(text.split())


@pytest.fixture(scope="module")
def renamed_export(tmp_path_factory):
    """The synthetic CRM as CSV files, customers and transactions renamed as an export names them."""
    folder = tmp_path_factory.mktemp("export") / "crm"
    tables = generate(1500, seed=3).tables
    customers = tables["customers"].rename(columns={"customer_id": "CustomerID", "created_at": "signup_date"})
    orders = tables["transactions"].rename(
        columns={
            "customer_id": "CustomerID",
            "ts": "InvoiceDate",
            "amount": "Total",
            "transaction_id": "InvoiceNo",
        }
    )
    write_folder({"customers": customers, "orders": orders, "leads": tables["leads"]}, folder, "csv")
    return folder, {name: len(frame) for name, frame in (("customers", customers), ("transactions", orders))}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_init_writes_params_that_validate(renamed_export, workdir, monkeypatch):
    folder, rows = renamed_export
    params = workdir / "mine.yaml"
    code, text = run(["init", "--folder", str(folder), "--output", str(params)], monkeypatch)
    assert code == 0, text
    assert "transactions <- orders.csv" in text and "ts=InvoiceDate" in text and "amount=Total" in text
    assert "models the data supports: churn, leads, clv" in text

    cfg = load_config(params)  # the written file is a valid params file
    assert cfg.data.source == "folder" and cfg.data.folder == folder
    assert cfg.data.table_name("transactions") == "orders"
    assert cfg.data.column_map("transactions") == {
        "customer_id": "CustomerID",
        "ts": "InvoiceDate",
        "amount": "Total",
        "transaction_id": "InvoiceNo",
        "currency": "currency",
        "quantity": "quantity",
        "product": "product",
    }
    assert cfg.data.column_map("customers")["created_at"] == "signup_date"
    assert cfg.data.required_tables == ("customers", "transactions")
    assert cfg.training.models == ("churn", "leads", "clv")
    assert cfg.report.currency == "EUR"  # the synthetic CRM's currency column
    assert "# Proposed by 'crmscore init" in params.read_text(encoding="utf-8")

    report_json = workdir / "validation.json"
    code, text = run(
        ["--params", str(params), "validate", "--as-of", AS_OF, "--json", str(report_json)], monkeypatch
    )
    assert code == 0, text
    report = yaml.safe_load(report_json.read_text(encoding="utf-8"))  # JSON is YAML
    for table, n in rows.items():
        assert report["tables"][table]["rows_in"] == n
        assert report["tables"][table]["rows_kept"] == n


def test_init_refuses_to_overwrite_without_force(renamed_export, workdir, monkeypatch):
    folder, _ = renamed_export
    params = workdir / "params.yaml"
    params.write_text("# mine\n", encoding="utf-8")
    code, text = run(["init", "--folder", str(folder)], monkeypatch)
    assert code == 2 and "--force" in text
    assert params.read_text(encoding="utf-8") == "# mine\n"
    code, text = run(["init", "--folder", str(folder), "--force"], monkeypatch)
    assert code == 0, text
    assert load_config(params).data.source == "folder"


def test_init_exit_codes_for_a_missing_or_unknown_folder(workdir, monkeypatch):
    code, text = run(["init", "--folder", str(workdir / "nope")], monkeypatch)
    assert code == 2 and "no such folder" in text
    odd = workdir / "odd"
    odd.mkdir()
    (odd / "misc.csv").write_text("foo,bar\n1,2\n", encoding="utf-8")
    (odd / "readme.txt").write_text("hello\n", encoding="utf-8")
    code, text = run(["init", "--folder", str(odd)], monkeypatch)
    assert code == 3 and "no file" in text
    assert "readme.txt: not a CSV or Parquet file" in text
    assert not (workdir / "params.yaml").exists()


def test_config_prints_every_block_and_masks_the_password(workdir, monkeypatch):
    monkeypatch.setenv(
        "CRMSCORE_CRM_URL", "postgresql+psycopg://crm:pa@ss-w0rd@db.example.com/crm?sslpassword=k3y"
    )
    code, text = run_cli_captured(["config"], monkeypatch)
    assert code == 0, text
    assert "pa@ss-w0rd" not in text and "w0rd" not in text and "k3y" not in text
    resolved = yaml.safe_load(text)
    assert resolved["data"]["crm_url"] == "postgresql+psycopg://crm:***@db.example.com/crm?sslpassword=***"
    assert set(resolved) == set(Config.model_fields)
    assert resolved["churn"]["horizon_days"] == 90  # defaults are shown


def test_config_names_a_bad_key(workdir, monkeypatch):
    (workdir / "bad.yaml").write_text("data:\n  sauce: folder\n", encoding="utf-8")
    code, text = run(["--params", "bad.yaml", "config"], monkeypatch)
    assert code == 2 and "data.sauce" in text


@pytest.mark.parametrize("command", ["init", "config"])
def test_help_documents_the_exit_codes(command, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["crmscore", command, "--help"])
    with pytest.raises(SystemExit) as info:
        main()
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "Exit codes: 0" in text
