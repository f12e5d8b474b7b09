"""A registered model version is loaded only if its files are exactly those hashed at registration.

At the level of :meth:`crmscore.tracking.TrackingSession.load_version`: the manifest covers every
file and an intact version loads with pickle deserialisation off; a version without a manifest
is refused; :func:`crmscore.core.manifest.verify_manifest` names every difference. The tampering
probes themselves (an edited models-from-code script, ``MLmodel`` pointed at a pickle, a shifted
calibrator, a removed or an added file) run end to end through ``crmscore score`` in
tests/reliability/test_tampered_model.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from crmscore.config import TrackingConfig
from crmscore.core.manifest import ArtifactIntegrityError, file_manifest, verify_manifest
from crmscore.estimators.specs import SPECS
from crmscore.tracking import MANIFEST_TAG, TrackingSession


@pytest.fixture
def registered(bundle_clv_model, tmp_path, monkeypatch):
    """A CLV model registered as version 1 in a fresh SQLite store; yields (session, model, summary, root)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    model, summary = bundle_clv_model
    cfg = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=tmp_path / "art", experiment="trust"
    )
    bundle = SPECS["clv"].save(model, tmp_path / "clv")
    with TrackingSession(cfg) as ts, ts.parent_run("register"):
        ts.log_model(bundle, "trust-clv")
    with TrackingSession(cfg) as ts:
        yield ts, model, summary, tmp_path / "art"


def test_the_manifest_covers_every_file_and_an_intact_version_loads_without_pickle(registered):
    ts, model, summary, _ = registered
    manifest = json.loads(ts.client.get_model_version("trust-clv", "1").tags[MANIFEST_TAG])
    names = {Path(k).name for k in manifest}
    assert {"MLmodel", "crmscore_model.py", "clv.json", "model.json"} <= names
    assert all(len(v) == 64 for v in manifest.values())
    loaded = ts.load_version("trust-clv", 1)
    pd.testing.assert_frame_equal(loaded.predict(summary), model.predict(summary))
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" not in os.environ  # set only while loading


def test_a_version_without_a_manifest_is_refused(registered):
    ts, *_ = registered
    ts.client.delete_model_version_tag("trust-clv", "1", MANIFEST_TAG)
    with pytest.raises(ArtifactIntegrityError, match="no artefact manifest was recorded"):
        ts.load_version("trust-clv", 1)


def test_verify_manifest_reports_every_difference(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    manifest = file_manifest(tmp_path)
    assert set(manifest) == {"a", "sub/b"}
    verify_manifest(tmp_path, manifest, "x")
    (tmp_path / "a").write_text("changed")
    (tmp_path / "sub" / "b").unlink()
    (tmp_path / "c").write_text("new")
    with pytest.raises(ArtifactIntegrityError, match=r"changed: a; missing: sub/b; added: c"):
        verify_manifest(tmp_path, manifest, "x")
