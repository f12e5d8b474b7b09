"""Every model kind is optional, end to end through the CLI, on CRMs not shaped like the generator's.

* the README's own example (10,000 synthetic customers) trains with exit 0 although the lead
  model has too few conversions;
* a CRM with only customers and transactions trains churn and CLV, scores and reports;
* a subscription-style snapshot (customers with attributes and a Yes/No churn label, no
  transactions) trains churn only and scores with the churn champion alone;
* what the user asks for explicitly (``--only``, ``training.required``) must train;
* ``demo -n`` below the minimum is refused with the minimum in the message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from crmscore.cli import main

AS_OF = "2025-12-31"


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["crmscore", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, " ".join((captured.out + captured.err).split())  # rich wraps long lines


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _params(path: Path, **blocks) -> Path:
    path.write_text(yaml.safe_dump(blocks), encoding="utf-8")
    return path


def test_readme_example_trains_with_exit_0_without_enough_lead_conversions(workdir, monkeypatch, capsys):
    code, text = run_cli(["-q", "generate", "--customers", "10000"], monkeypatch, capsys)
    assert code == 0, text
    code, text = run_cli(["train", "--as-of", AS_OF, "--report-json", "train.json"], monkeypatch, capsys)
    assert code == 0, text
    report = json.loads((workdir / "train.json").read_text())
    models = report["models"]
    assert models["churn"]["status"] == "trained" and models["clv"]["status"] == "trained"
    assert models["leads"]["status"] == "failed" and "min_positives" in models["leads"]["reason"]
    assert report["ok"] is True and report["required"] == []
    # asked for explicitly, the lead model must train: exit 1, and the message says why
    code, text = run_cli(["train", "--as-of", AS_OF, "--only", "leads"], monkeypatch, capsys)
    assert code == 1 and "leads was required but failed" in text


@pytest.fixture
def transactional_crm(workdir, monkeypatch, capsys) -> Path:
    """A folder CRM with customers and transactions only (no leads, tickets or spend)."""
    code, text = run_cli(
        ["-q", "generate", "-n", "3000", "--seed", "5", "--to", "folder", "--folder", "crm"],
        monkeypatch,
        capsys,
    )
    assert code == 0, text
    for table in ("leads", "lead_activities", "support_tickets", "marketing_spend"):
        (workdir / "crm" / f"{table}.parquet").unlink()
    return _params(
        workdir / "params.yaml",
        data={"source": "folder", "folder": "crm"},
        training={"log_plots": False},
    )


def test_customers_and_transactions_train_churn_and_clv_score_and_report(
    transactional_crm, workdir, monkeypatch, capsys
):
    code, text = run_cli(["train", "--as-of", AS_OF, "--report-json", "train.json"], monkeypatch, capsys)
    assert code == 0, text
    models = json.loads((workdir / "train.json").read_text())["models"]
    assert {k: m["status"] for k, m in models.items()} == {
        "churn": "trained",
        "leads": "skipped",
        "clv": "trained",
        "clv_contractual": "skipped",  # clv.kind auto: transactions, so the transactional CLV
    }
    assert "leads table" in models["leads"]["reason"]
    code, text = run_cli(["score", "--as-of", AS_OF, "--output", "scores.parquet"], monkeypatch, capsys)
    assert code == 0, text
    assert "note: leads: not scored" in text
    scores = pd.read_parquet(workdir / "scores.parquet")
    customers = pd.read_parquet(workdir / "crm" / "customers.parquet")
    assert len(scores) == customers["customer_id"].nunique()
    assert scores["churn_probability"].notna().all() and scores["clv_model"].notna().all()
    buyers = scores["rfm_segment"] != "No purchases"
    assert scores.loc[buyers, "predicted_clv"].notna().all()
    assert not (workdir / "scores_leads.parquet").exists()
    assert (workdir / "reports" / "worklist.csv").exists()
    code, text = run_cli(["report", "--as-of", AS_OF, "--train-json", "train.json"], monkeypatch, capsys)
    assert code == 0, text
    html = (workdir / "reports" / "report.html").read_text(encoding="utf-8")
    assert "no data" in html and "leads" in html
    json.loads((workdir / "reports" / "report.json").read_text(), parse_constant=pytest.fail)


@pytest.fixture
def snapshot_crm(workdir) -> Path:
    """Customers with plan, tenure and charges and a Yes/No churn label; nothing else."""
    rng = np.random.default_rng(0)
    n = 3000
    plan = rng.choice(["monthly", "annual", "two-year"], n, p=[0.55, 0.3, 0.15])
    tenure = rng.integers(1, 72, n)
    charges = rng.normal(70, 25, n).clip(18, 120).round(2)
    logit = -0.8 + 1.6 * (plan == "monthly") - 0.04 * tenure + 0.015 * (charges - 70)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    (workdir / "crm").mkdir()
    pd.DataFrame(
        {
            "CustomerID": [f"K{i:05d}" for i in range(n)],
            "plan": plan,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "churn": np.where(churn, "Yes", "No"),
        }
    ).to_csv(workdir / "crm" / "customers.csv", index=False)
    return _params(
        workdir / "params.yaml",
        data={
            "source": "folder",
            "folder": "crm",
            "required_tables": ["customers"],
            "tables": {"customers": {"columns": {"customer_id": "CustomerID"}}},
        },
        churn={"definition": "label", "label_column": "churn", "min_rows": 500},
        training={"log_plots": False},
    )


def test_a_churn_only_champion_scores_every_customer(snapshot_crm, workdir, monkeypatch, capsys):
    code, text = run_cli(["train", "--as-of", AS_OF, "--report-json", "train.json"], monkeypatch, capsys)
    assert code == 0, text
    models = json.loads((workdir / "train.json").read_text())["models"]
    assert models["churn"]["status"] == "trained"
    assert models["clv"]["status"] == "skipped" and "transactions" in models["clv"]["reason"]
    assert models["leads"]["status"] == "skipped"
    code, text = run_cli(["score", "--as-of", AS_OF, "--output", "scores.csv"], monkeypatch, capsys)
    assert code == 0, text
    assert "note: clv: not scored" in text and "worklist ranks by churn probability" in text
    scores = pd.read_csv(workdir / "scores.csv")
    assert len(scores) == 3000
    assert scores["churn_probability"].between(0, 1).all() and scores["churn_risk"].notna().all()
    assert scores["churn_model"].eq("crmscore-churn").all()
    for col in ("predicted_clv", "p_alive", "value_at_risk", "clv_model"):
        assert scores[col].isna().all(), col
    assert scores["health_score"].between(0, 100).all()
    worklist = pd.read_csv(workdir / "reports" / "worklist.csv")
    assert len(worklist) > 0
    assert worklist["churn_probability"].is_monotonic_decreasing
    code, text = run_cli(["report", "--as-of", AS_OF], monkeypatch, capsys)
    assert code == 0, text
    assert "no data" in (workdir / "reports" / "report.html").read_text(encoding="utf-8")


def test_score_without_any_champion_says_what_to_do(transactional_crm, monkeypatch, capsys):
    code, text = run_cli(["score", "--as-of", AS_OF], monkeypatch, capsys)
    assert code == 1  # no training yet: no model store either (and none is created)
    assert "no model store at" in text and "run crmscore train first" in text
    assert not (Path.cwd() / "mlruns" / "mlflow.db").exists()


def test_training_required_makes_a_skipped_kind_fail_the_job(transactional_crm, workdir, monkeypatch, capsys):
    params = yaml.safe_load(transactional_crm.read_text())
    params["training"]["required"] = ["leads"]
    _params(workdir / "required.yaml", **params)
    code, text = run_cli(["--params", "required.yaml", "train", "--as-of", AS_OF], monkeypatch, capsys)
    assert code == 1 and "leads was required but skipped" in text


def test_demo_refuses_too_few_customers_with_the_minimum(workdir, monkeypatch, capsys):
    code, text = run_cli(["demo", "-n", "1000"], monkeypatch, capsys)
    assert code == 2
    assert "at least 3,000 customers" in text
    assert not (workdir / "data").exists()  # refused before generating anything
