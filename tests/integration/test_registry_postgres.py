"""The model registry on a real, fresh PostgreSQL-backed MLflow store: log, register, promote,
reload by alias and roll back."""

from __future__ import annotations

import uuid
from datetime import date

import pandas as pd
import pytest

from crmscore.config import TrackingConfig
from crmscore.estimators.specs import SPECS
from crmscore.tracking import TrackingSession, rollback


@pytest.mark.postgres
def test_registry_on_a_fresh_postgresql_database(pg_engine, bundle_clv_model, tmp_path, monkeypatch):
    """Log, register, promote, reload by alias and roll back on a PostgreSQL-backed store."""
    import mlflow.pyfunc
    import sqlalchemy as sa

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model, summary = bundle_clv_model
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
