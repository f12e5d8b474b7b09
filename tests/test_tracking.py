"""Pickle-free bundles, import hygiene, and the registry on a real PostgreSQL-backed store."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig, Config, TrackingConfig
from crmscore.estimators.specs import SPECS, load_model
from crmscore.tracking import TrackingSession, prepare_input, rollback

FAST = {"n_estimators": 30, "num_leaves": 7, "n_jobs": 1, "min_rows": 200, "min_positives": 30}


@pytest.fixture(scope="module")
def synth_data():
    from crmscore.ingest import synth
    from crmscore.ingest.validation import validate_tables

    crm = synth.generate(2000, seed=11, leads_per_customer=1)
    data, _ = validate_tables(crm.tables, Config(), as_of="2025-12-31", now="2026-01-01")
    return data


@pytest.fixture(scope="module")
def churn_frame(synth_data):
    from crmscore.features.tables import build_churn_training_set

    return build_churn_training_set(synth_data, "2025-10-02", Config(), observed_until="2025-12-31")


@pytest.fixture(scope="module")
def clv_model(synth_data):
    from crmscore.estimators.clv import ClvModel
    from crmscore.features.btyd import btyd_summary

    summary = btyd_summary(synth_data.transactions, "2025-12-31", time_unit="week")
    return ClvModel(n_bootstrap=10).fit(summary), summary


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_classifier_bundle_reproduces_the_fitted_model(churn_frame, tmp_path, calibration):
    from crmscore.estimators.churn import CalibratedChurnModel

    X = churn_frame.drop(columns=["churn"])
    model = CalibratedChurnModel.from_config(ChurnConfig(calibration=calibration, **FAST))
    model.fit(X, churn_frame["churn"])
    spec = SPECS["churn"]
    path = spec.save(model, tmp_path / "b")
    assert {p.name for p in path.iterdir()} == {"booster.txt", "model.json"}
    loaded_spec, loaded = load_model(path)
    assert loaded_spec is spec and type(loaded) is CalibratedChurnModel
    assert loaded.get_params() == model.get_params()
    # one prediction path: the loaded estimator is the fitted one, bit for bit
    np.testing.assert_array_equal(loaded.raw_score(X), model.raw_score(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))
    frame = spec.predict(loaded, prepare_input(spec, loaded, X))
    np.testing.assert_array_equal(frame["churn_probability"], model.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(frame["churn_risk"], model.predict_risk(X))
    contrib = loaded.contributions(X.head(20))
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_score(X.head(20)), atol=1e-9)
    with pytest.raises(ValueError, match="missing"):
        loaded.predict_frame(X.drop(columns=[loaded.features[0]]))


def test_classifier_bundle_of_the_first_format_still_loads(churn_frame, tmp_path):
    from crmscore.estimators.churn import CalibratedChurnModel

    X = churn_frame.drop(columns=["churn"])
    model = CalibratedChurnModel.from_config(ChurnConfig(**FAST)).fit(X, churn_frame["churn"])
    path = SPECS["churn"].save(model, tmp_path / "b")
    spec = json.loads((path / "model.json").read_text())
    spec["format"] = "crmscore.classifier/1"
    del spec["params"]
    (path / "model.json").write_text(json.dumps(spec))
    _, loaded = load_model(path)
    pd.testing.assert_frame_equal(loaded.predict_frame(X), model.predict_frame(X))


def test_clv_bundle_is_json_only(clv_model, tmp_path):
    model, summary = clv_model
    spec = SPECS["clv"]
    path = spec.save(model, tmp_path / "clv")
    json.loads((path / "clv.json").read_text())
    _, loaded = load_model(path)
    pd.testing.assert_frame_equal(spec.predict(loaded, summary), model.predict(summary))


def test_importing_sets_no_tracking_uri_and_only_tracking_imports_mlflow():
    code = (
        "import sys, os\n"
        "import crmscore.cli, crmscore.pipelines.train\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported outside crmscore.tracking'\n"
        "import crmscore.tracking, mlflow\n"
        "assert 'MLFLOW_TRACKING_URI' not in os.environ\n"
        "from mlflow.tracking._tracking_service import utils\n"
        "assert utils._tracking_uri is None\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_session_restores_the_previous_uris(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    with TrackingSession(cfg) as ts:
        assert mlflow.get_tracking_uri() == cfg.tracking_uri == ts.tracking_uri
    import os

    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:///elsewhere.db"


def test_password_in_tracking_uri_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="password"):
        TrackingConfig(tracking_uri="postgresql://u:secret@db/mlflow")


@pytest.mark.postgres
def test_registry_on_a_fresh_postgresql_database(pg_engine, clv_model, tmp_path, monkeypatch):
    """Log, register, promote, reload by alias and roll back on a PostgreSQL-backed store."""
    import mlflow.pyfunc
    import sqlalchemy as sa

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model, summary = clv_model
    db = f"crmscore_mlflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{db}"'))
    try:
        url = pg_engine.url.set(database=db).render_as_string(hide_password=False)
        cfg = TrackingConfig(tracking_uri=url, artifact_location=tmp_path / "art", experiment="pg-test")
        bundle = SPECS["clv"].save(model, tmp_path / "clv")
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        with TrackingSession(cfg) as ts:
            versions = []
            for i in range(2):
                with ts.parent_run(f"pg {i}"):
                    ts.log_metrics({"mae": 0.5 + i})
                    versions.append(
                        ts.log_model(bundle, "pg-clv", metadata={"as_of": str(date(2025, 12, 31))})
                    )
                ts.promote("pg-clv", versions[-1].version, f"test {i}")
            assert [v.version for v in versions] == [1, 2]
            assert ts.champion("pg-clv") == 2
            loaded = mlflow.pyfunc.load_model("models:/pg-clv@champion")
            pd.testing.assert_frame_equal(loaded.predict(summary), model.predict(summary))
            assert rollback(ts.client, "pg-clv") == (2, 1)
            assert ts.champion("pg-clv") == 1
            run = ts.client.get_run(versions[0].run_id)
            assert run.data.metrics["mae"] == 0.5
            assert ts.client.get_experiment(run.info.experiment_id).name == "pg-test"
    finally:
        # MLflow keeps its pooled connections open: FORCE closes them
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{db}" with (force)'))
        admin.dispose()
