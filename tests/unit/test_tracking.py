"""Import hygiene of crmscore.tracking, and the tracking session restoring the previous URIs.

Pickle-free model bundles: estimators/test_bundles.py; the registry on PostgreSQL:
integration/test_registry_postgres.py.
"""

from __future__ import annotations

import subprocess
import sys

from crmscore.config import TrackingConfig
from crmscore.tracking import TrackingSession


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
