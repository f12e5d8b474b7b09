"""``crmscore train`` end to end into a temporary SQLite tracking store; promotion gate; registry
commands; export; the registered pyfunc reproducing the fitted model without pickle.

The trained CRM is the session's shared one (``trained_project``, tests/integration/conftest.py:
3,000 customers, few trees, trained once through the command line). Tests that add versions,
promote or roll back work on a copy of its registry (``mutable``), so the shared store keeps
version 1 of every model as champion. The promotion rule itself: unit/pipelines/test_train.py.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.pipelines.train import train_models
from helpers import run_cli_captured as run_cli

AS_OF = date(2025, 12, 31)
KINDS = ("churn", "leads", "clv")


@pytest.fixture
def project(trained_project):
    """``(root, report.json, console text)`` of the session's trained CRM (read-only registry)."""
    return trained_project.root, trained_project.report, trained_project.text


@pytest.fixture(scope="module")
def mutable(fork_trained_project):
    """A copy of the trained registry that this module's tests add versions to."""
    return fork_trained_project("train-mutable").root


@pytest.fixture
def in_project(project, monkeypatch):
    root = project[0]
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


@pytest.fixture
def in_mutable(mutable, monkeypatch):
    monkeypatch.chdir(mutable)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return mutable


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _data(root: Path):
    from crmscore.ingest.validation import load_validated

    cfg = load_config(root / "params.yaml")
    data, report = load_validated(cfg, as_of=AS_OF)
    return cfg, data, report


# ------------------------------------------------------------------------------------------
# first training: runs, metrics, artefacts, aliases, report
# ------------------------------------------------------------------------------------------


def test_train_logs_one_parent_run_with_a_child_per_model(project):
    root, report, text = project
    client = _client(root)
    parent = client.get_run(report["parent_run_id"])
    assert parent.data.params["as_of"] == "2025-12-31"
    assert parent.data.tags["crmscore.data_digest"] == report["data"]["digest_sha256"]["all"]
    children = client.search_runs(
        [report["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == sorted(KINDS)
    assert {r.info.run_id for r in children} == {report["models"][k]["run_id"] for k in KINDS}
    for line in ("churn", "leads", "clv", "promoted"):
        assert line in text


def test_metrics_sit_beside_baselines_and_plots_are_logged(project):
    root, report, _ = project
    client = _client(root)
    churn = client.get_run(report["models"]["churn"]["run_id"])
    m = churn.data.metrics
    assert m["roc_auc"] == pytest.approx(report["models"]["churn"]["value"])
    assert "baseline.logistic_regression_rfm.roc_auc" in m
    assert "baseline.p_no_purchase_in_90d_bg_nbd.roc_auc" in m
    assert churn.data.params["churn.n_estimators"] == "40"
    arts = {a.path for a in client.list_artifacts(churn.info.run_id, "plots")}
    assert {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/gains.png"} <= arts
    clv = client.get_run(report["models"]["clv"]["run_id"])
    assert {"mae", "baseline.zero.holdout_mae", "baseline.historical_rate.holdout_mae", "param.r"} <= set(
        clv.data.metrics
    )
    clv_arts = {a.path for a in client.list_artifacts(clv.info.run_id, "plots")}
    assert "plots/calibration_vs_holdout.png" in clv_arts


def test_data_summary_has_counts_and_digest_but_no_customer_rows(project, trained_project):
    root, report, _ = project
    summary = report["data"]
    assert summary["tables"]["transactions"]["rows"] > 0
    assert summary["tables"]["customers"]["rows_set_aside"] == 0
    assert len(summary["digest_sha256"]["all"]) == 64
    assert summary["transactions_to"] <= "2026-01-01"
    client = _client(root)
    path = client.download_artifacts(report["parent_run_id"], "data_summary.json", str(root / "dl"))
    text = Path(path).read_text()
    customers = trained_project.crm.tables["customers"]
    assert not any(cid in text for cid in customers["customer_id"].astype(str).head(50))


def test_first_versions_are_champion_and_challenger(project):
    root, report, _ = project
    client = _client(root)
    for kind in KINDS:
        m = report["models"][kind]
        assert m["status"] == "trained" and m["version"] == 1 and m["promoted"]
        assert "no champion" in m["promotion_reason"]
        for alias in ("champion", "challenger"):
            assert str(client.get_model_version_by_alias(m["registered_name"], alias).version) == "1"
        tags = client.get_model_version(m["registered_name"], "1").tags
        assert tags["crmscore.promoted"] == "True"


def test_report_json_has_clv_parameters_with_standard_errors(project):
    _, report, _ = project
    params = report["models"]["clv"]["parameters"]
    for block, names in (("bgnbd", "r alpha a b"), ("gamma_gamma", "p q v")):
        for p in names.split():
            est = params[block][p]
            assert est["estimate"] > 0 and est["se"] > 0
    assert report["models"]["churn"]["baseline"] is not None
    assert report["git_commit"] is None or len(report["git_commit"]) >= 40


# ------------------------------------------------------------------------------------------
# reload without pickle; promotion gate; registry commands; export
# ------------------------------------------------------------------------------------------


def _no_pickles(folder: Path) -> None:
    bad = [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle")]
    assert not bad, bad


def test_registered_champion_reproduces_predictions_without_pickle(in_project, monkeypatch):
    import mlflow.pyfunc

    from crmscore.estimators.churn import evaluate_churn
    from crmscore.features.tables import build_churn_training_set
    from crmscore.tracking import TrackingSession, prepare_input

    cfg, data, _ = _data(in_project)
    frame = build_churn_training_set(data, "2025-10-02", cfg, observed_until=AS_OF)
    fitted = evaluate_churn(frame, cfg.churn).model  # deterministic: the same model as training
    ev = frame[frame["cutoff"] == frame["cutoff"].max()].drop(columns=["churn"])
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with TrackingSession(cfg.tracking):
        loaded = mlflow.pyfunc.load_model("models:/crmscore-churn@champion")
        local = Path(mlflow.artifacts.download_artifacts("models:/crmscore-churn@champion"))
    wrapper = loaded.unwrap_python_model()
    out = loaded.predict(prepare_input(wrapper.spec, wrapper.model, ev))
    np.testing.assert_array_equal(out["churn_probability"].to_numpy(), fitted.predict_proba(ev)[:, 1])
    assert set(out["churn_risk"]) <= {"high", "medium", "low"}
    assert list(out.index) == list(ev.index)
    _no_pickles(local)
    assert len(list(local.rglob("booster.txt"))) == 1


@pytest.fixture(scope="module")
def worse(mutable):
    """A second churn version, deliberately worse (one stump), trained into the copied store."""
    root = mutable
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg, data, report = _data(root)
        cfg = cfg.model_copy(
            update={
                "churn": cfg.churn.model_copy(update={"n_estimators": 1, "num_leaves": 2}),
                "training": cfg.training.model_copy(update={"log_plots": False}),
            }
        )
        return train_models(cfg, AS_OF, only=["churn"], data=data, report=report)


def test_a_worse_model_is_registered_but_not_promoted(in_mutable, worse):
    in_project = in_mutable
    before = json.loads((in_project / "report.json").read_text())["models"]["churn"]
    churn = worse.models["churn"]
    assert churn.status == "trained" and churn.version == 2
    assert not churn.promoted and churn.promotion_reason.startswith("not good enough")
    # the champion was scored on the same evaluation window: its value is the one it had
    assert churn.champion_version == 1
    assert churn.champion_value == pytest.approx(before["value"], abs=1e-12)
    client = _client(in_project)
    assert str(client.get_model_version_by_alias("crmscore-churn", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("crmscore-churn", "challenger").version) == "2"
    assert client.get_run(churn.run_id).data.tags["crmscore.promoted"] == "False"


def test_promote_and_rollback_by_hand(in_mutable, worse, monkeypatch):
    in_project = in_mutable
    client = _client(in_project)
    params = str(in_project / "params.yaml")
    code, text = run_cli(["--params", params, "promote", "churn", "--version", "2"], monkeypatch)
    assert code == 0, text
    assert str(client.get_model_version_by_alias("crmscore-churn", "champion").version) == "2"
    assert (
        client.get_model_version("crmscore-churn", "2").tags["crmscore.promotion"].startswith("promoted by")
    )
    code, text = run_cli(["--params", params, "rollback", "churn"], monkeypatch)
    assert code == 0, text
    assert str(client.get_model_version_by_alias("crmscore-churn", "champion").version) == "1"
    assert "crmscore.rolled_back_at" in client.get_model_version("crmscore-churn", "2").tags
    last = json.loads(client.get_registered_model("crmscore-churn").tags["crmscore.last_rollback"])
    assert (last["from"], last["to"]) == (2, 1)
    code, text = run_cli(["--params", params, "rollback", "churn"], monkeypatch)
    assert code == 1 and "no previous champion" in text


def test_export_writes_self_contained_model_folders(in_project, monkeypatch):
    import mlflow.pyfunc

    params = str(in_project / "params.yaml")
    code, text = run_cli(["--params", params, "export"], monkeypatch)
    assert code == 0, text
    models = in_project / "models"
    for kind in KINDS:
        assert (models / kind / "MLmodel").exists()
        assert json.loads((models / f"{kind}.json").read_text())["alias"] == "champion"
        _no_pickles(models / kind)
    # no tracking server involved: a store URI that does not exist
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{in_project}/nowhere/none.db")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    clv = mlflow.pyfunc.load_model(str(models / "clv"))
    summary = pd.DataFrame(
        {"frequency": [0.0, 3.0], "recency": [0.0, 20.0], "T": [30.0, 40.0], "monetary_value": [0.0, 50.0]}
    )
    pred = clv.predict(summary)
    assert (pred["predicted_clv"] >= 0).all() and pred["p_alive"].between(0, 1).all()
    assert not (in_project / "nowhere").exists()


def test_train_needs_a_cutoff_and_known_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, text = run_cli(["train"], monkeypatch)
    assert code == 2 and "--as-of" in text
    code, _ = run_cli(["train", "--as-of", "2025-12-31", "--only", "churn,nps"], monkeypatch)
    assert code == 2  # the usage error (naming nps) is printed by the parser


# ------------------------------------------------------------------------------------------
# a kind that cannot train (on the copied registry)
# ------------------------------------------------------------------------------------------


def test_a_model_that_cannot_train_is_reported_and_the_others_still_run(in_mutable):
    import dataclasses

    in_project = in_mutable
    cfg, data, report = _data(in_project)
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"log_plots": False})})
    no_leads = dataclasses.replace(data, leads=None, lead_activities=None)
    # asked for explicitly: a kind whose table is absent is skipped, and the job is not ok
    result = train_models(cfg, AS_OF, only=["leads", "clv"], data=no_leads, report=report)
    assert not result.ok and result.required == ("leads", "clv")
    assert result.models["leads"].status == "skipped" and "leads table" in result.models["leads"].reason
    assert result.models["leads"].run_id is None
    assert result.models["clv"].status == "trained" and result.models["clv"].version == 2
    client = _client(in_project)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["crmscore.ok"] == "False"
    assert client.get_run(result.models["clv"].run_id).info.status == "FINISHED"
    # same data, same model: the new CLV version is as good as the champion and is promoted
    assert result.models["clv"].promoted
    assert result.models["clv"].champion_value == pytest.approx(result.models["clv"].value, rel=1e-9)
    # optional (training.models, nothing required): the job is ok without the lead model
    result = train_models(cfg, AS_OF, data=no_leads, report=report)
    assert result.ok and result.models["leads"].status == "skipped"
    assert {k for k, m in result.models.items() if m.status == "trained"} == {"churn", "clv"}
    # a kind failing a data gate is failed, its MLflow run too, and the others still train
    strict = cfg.model_copy(update={"leads": cfg.leads.model_copy(update={"min_positives": 100_000})})
    result = train_models(strict, AS_OF, only=["leads", "clv"], data=data, report=report)
    assert not result.ok and result.models["leads"].status == "failed"
    assert "min_positives" in result.models["leads"].reason
    failed_run = client.get_run(result.models["leads"].run_id)
    assert failed_run.data.tags["crmscore.status"] == "failed"
    assert failed_run.info.status == "FAILED"  # MLflow's own status too, for `mlflow ui` filters
    assert result.models["clv"].status == "trained"
    required = strict.model_copy(
        update={"training": strict.training.model_copy(update={"required": ("clv",)})}
    )
    assert train_models(required, AS_OF, data=data, report=report).ok  # leads failed, but optional
