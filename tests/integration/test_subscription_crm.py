"""A subscription CRM end to end through the CLI (issue #18, items 1 and 2).

A customers-only SQLite CRM like the public telecom churn export (contract type, tenure in
months, monthly charges, total charges as text with blanks ``" "``, a Yes/No churn label; no
transactions) trains churn (``churn.definition: label``) and the contractual lifetime value
(sBG, kind ``clv_contractual``, chosen by ``clv.kind: auto``), and ``crmscore score`` writes
churn probability, CLV, value at risk, health score and the worklist for every customer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine
from tests.projects import FAST

from crmscore.cli import main

AS_OF = "2025-12-31"
N = 3000
BLANKS = 11
NEW = 40
#: true sBG parameters per contract type (monthly contracts churn much faster)
TRUE = {"Month-to-month": (0.7, 2.5), "One year": (0.6, 8.0), "Two year": (0.5, 20.0)}


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["crmscore", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, " ".join((captured.out + captured.err).split())


def _telecom(n: int, seed: int = 0) -> pd.DataFrame:
    """Telecom-like customers: sBG tenures, censored by the months each has been a customer."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(list(TRUE), n, p=[0.55, 0.25, 0.2])
    a = np.array([TRUE[c][0] for c in contract])
    b = np.array([TRUE[c][1] for c in contract])
    theta = rng.beta(a, b)
    lifetime = rng.geometric(np.clip(theta, 1e-6, 1))  # churns at the end of this month
    age = rng.integers(1, 73, n)  # she is in her age-th month now (age - 1 renewals made)
    churned = lifetime <= age - 1
    tenure = np.where(churned, lifetime, age)
    monthly = rng.normal(65, 25, n).clip(18, 120).round(2)
    total = (monthly * tenure).round(2).astype(str).astype(object)
    total[rng.choice(n, BLANKS, replace=False)] = " "
    return pd.DataFrame(
        {
            "customerID": [f"{i:04d}-TEL" for i in range(n)],
            "gender": rng.choice(["Female", "Male"], n),
            "Contract": contract,
            "tenure": tenure,
            "MonthlyCharges": monthly,
            "TotalCharges": total,
            "Churn": np.where(churned, "Yes", "No"),
        }
    )


@pytest.fixture
def subscription_crm(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    _telecom(N).to_sql("customers", engine, index=False)
    engine.dispose()
    params = {
        "data": {
            "crm_url": f"sqlite:///{tmp_path / 'crm.sqlite'}",
            "required_tables": ["customers"],
            "quarantine": {"folder": str(tmp_path / "q")},
            "tables": {
                "customers": {
                    "columns": {
                        "customer_id": "customerID",
                        "contract": "Contract",
                        "tenure_months": "tenure",
                        "monthly_charges": "MonthlyCharges",
                        "total_charges": "TotalCharges",
                        "churn": "Churn",
                    }
                }
            },
        },
        "churn": {"definition": "label", "label_column": "churn", **FAST},
        "clv": {
            "kind": "auto",
            "tenure_column": "tenure_months",
            "revenue_column": "monthly_charges",
            "segment_column": "contract",
        },
        "training": {"log_plots": False},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return tmp_path


def test_subscription_crm_trains_churn_and_contractual_clv_and_scores_every_customer(
    subscription_crm, monkeypatch, capsys
):
    root = subscription_crm
    code, text = run_cli(["validate", "--as-of", AS_OF, "--json", "validation.json"], monkeypatch, capsys)
    assert code == 0, text
    report = json.loads((root / "validation.json").read_text())
    assert report["tables"]["customers"]["rows_kept"] == N
    blanks = json.dumps(report)
    assert f"{BLANKS}" in blanks and "total_charges" in blanks, blanks

    code, text = run_cli(["train", "--as-of", AS_OF, "--report-json", "train.json"], monkeypatch, capsys)
    assert code == 0, text
    models = json.loads((root / "train.json").read_text())["models"]
    assert models["churn"]["status"] == "trained", models["churn"]
    assert models["clv_contractual"]["status"] == "trained", models["clv_contractual"]
    assert models["clv"]["status"] == "skipped" and "contractual" in models["clv"]["reason"]
    assert models["clv_contractual"]["promoted"], models["clv_contractual"]
    # the sBG beats a constant-churn geometric model on the held-out customers
    assert models["clv_contractual"]["metrics"]["holdout_nll_gain_vs_geometric"] > 0

    # customers who joined after the training file (no churn label yet) are scored too
    engine = create_engine(f"sqlite:///{root / 'crm.sqlite'}")
    new = _telecom(NEW, seed=1).assign(customerID=[f"{i:04d}-NEW" for i in range(NEW)], Churn=None, tenure=1)
    new.to_sql("customers", engine, index=False, if_exists="append")
    engine.dispose()
    code, text = run_cli(["score", "--as-of", AS_OF, "--output", "scores.csv"], monkeypatch, capsys)
    assert code == 0, text
    scores = pd.read_csv(root / "scores.csv")
    assert len(scores) == N + NEW and scores["customer_id"].is_unique
    assert scores["customer_id"].str.endswith("-NEW").sum() == NEW
    for col in ("churn_probability", "predicted_clv", "value_at_risk", "health_score"):
        assert scores[col].notna().all(), col
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["predicted_clv"] > 0).all()
    assert np.allclose(scores["value_at_risk"], scores["churn_probability"] * scores["predicted_clv"])
    assert scores["p_alive"].isna().all()
    assert scores["clv_model"].eq("crmscore-clv-contractual").all()
    # a two-year customer is worth more than a month-to-month one at the same charges and tenure
    feats = pd.read_sql("SELECT * FROM customers", create_engine(f"sqlite:///{root / 'crm.sqlite'}"))
    merged = scores.merge(feats, left_on="customer_id", right_on="customerID")
    per_month = (merged["predicted_clv"] / merged["MonthlyCharges"]).groupby(merged["Contract"]).median()
    assert per_month["Two year"] > per_month["Month-to-month"]
    worklist = pd.read_csv(root / "reports" / "worklist.csv")
    assert len(worklist) > 0
    code, text = run_cli(["export", "--folder", "exported"], monkeypatch, capsys)
    assert code == 0, text
    assert any((root / "exported" / "clv_contractual").rglob("sbg.json"))
    code, text = run_cli(["report", "--as-of", AS_OF], monkeypatch, capsys)
    assert code == 0, text
