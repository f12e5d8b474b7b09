"""A tampered champion is refused end to end: ``crmscore score`` exits 1 naming the file, writes
nothing, and a payload planted in the artefact never runs.

Each probe is what someone with write access to the artefact store (not to the registry) could
do to a registered champion of the trained project: edit its models-from-code script, point its
``MLmodel`` at a cloudpickle file, shift the churn calibrator (``model.json``), delete a file, add
one. The probe works on a fork with its own copy of the artefacts and its own CRM
(:func:`projects.own_artifacts`, :func:`projects.own_crm`) and asserts: exit 1; the message
names the file and what happened to it; the CRM database is byte for byte what it was (no score
table, no run log) and no score file or worklist was written; the payload's marker file does not
exist (each payload is shown to create its marker when it does run).

Two more: with the manifest re-recorded to match a pickle-pointing ``MLmodel`` (someone who can
write the registry too), MLflow itself refuses to unpickle because crmscore loads with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``; and that variable is ``false`` during every load
of a scoring run unless the user set it (then the user's value stands), unset afterwards.

The load-level probes (the manifest covers every file, a version without a manifest, every
difference named) are in tests/integration/test_artifact_integrity.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers import run_cli_captured
from projects import TrainedProject, logging_restored, own_artifacts, own_crm

AS_OF = "2025-12-31"
PICKLE_FLAG = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


class _Payload:
    """Unpickled, it creates ``marker`` (what a malicious pickle would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def code_payload(marker: Path) -> str:
    """Python that creates ``marker`` when it is executed (imported)."""
    return f"\nimport pathlib  # payload\npathlib.Path({str(marker)!r}).touch()\n"


def test_the_payloads_do_create_their_marker_when_run(tmp_path):
    """The markers mean something: each payload, run, creates its marker."""
    pickle.loads(pickle_payload(tmp_path / "from-pickle"))  # the point of this control
    exec(code_payload(tmp_path / "from-code"), {})
    assert (tmp_path / "from-pickle").exists() and (tmp_path / "from-code").exists()


# ----------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Probe:
    project: TrainedProject
    marker: Path  #: a payload creates this file if it ever runs

    @property
    def root(self) -> Path:
        return self.project.root

    def champion_folder(self, kind: str) -> Path:
        """The artefact folder of the registered champion of ``kind`` (in the project's own copy)."""
        db = sqlite3.connect(self.root / "mlruns" / "mlflow.db")
        try:
            (location,) = db.execute(
                "SELECT mv.storage_location FROM registered_model_aliases a JOIN model_versions mv "
                "ON mv.name = a.name AND mv.version = a.version WHERE a.alias = 'champion' AND a.name = ?",
                (f"crmscore-{kind}",),
            ).fetchone()
        finally:
            db.close()
        folder = Path(location.removeprefix("file://"))
        assert folder.is_relative_to(self.root), folder  # never the shared project's artefacts
        return folder


@pytest.fixture
def probe(fork_trained_project, tmp_path, monkeypatch) -> Probe:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    monkeypatch.delenv(PICKLE_FLAG, raising=False)
    project = own_crm(own_artifacts(fork_trained_project("tampered")))
    return Probe(project, tmp_path / "payload-ran")


def _cli(probe: Probe, *args: str) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(probe.root)
        return run_cli_captured(["--params", str(probe.root / "params.yaml"), *args], mp)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused_and_nothing_written(probe: Probe, expected: list[str]) -> str:
    """``crmscore score`` exits 1 with every ``expected`` phrase, writes nothing, ran no payload."""
    crm = probe.root / "crm.sqlite"
    before = _digest(crm)
    code, text = _cli(probe, "score", "--as-of", AS_OF, "--output", "scores.csv")
    flat = " ".join(text.split())  # the console wraps long lines
    assert code == 1, text
    for phrase in expected:
        assert phrase in flat, f"{phrase!r} not named:\n{flat}"
    assert _digest(crm) == before, "the CRM database changed"
    db = sqlite3.connect(crm)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    assert tables == set(probe.project.crm.tables), tables  # no score table, no run log
    assert not (probe.root / "scores.csv").exists() and not (probe.root / "reports").exists()
    assert not probe.marker.exists(), "the payload ran"
    return flat


# ---------------------------------------------------------------------------------- probes


def _edit_code(p: Probe) -> list[str]:
    script = p.champion_folder("churn") / "crmscore_model.py"
    script.write_text(script.read_text() + code_payload(p.marker))
    return ["crmscore-churn v1", "changed: crmscore_model.py"]


def _point_mlmodel_at_pickle(p: Probe) -> list[str]:
    folder = p.champion_folder("churn")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    flavor.pop("model_code_path")
    flavor.update(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (folder / "python_model.pkl").write_bytes(pickle_payload(p.marker))
    return ["crmscore-churn v1", "changed: MLmodel", "added: python_model.pkl"]


def _shift_calibrator(p: Probe) -> list[str]:
    path = p.champion_folder("churn") / "artifacts" / "churn" / "model.json"
    model = json.loads(path.read_text())
    model["calibrator"]["intercept"] += 6.0  # every customer's churn probability near 1
    path.write_text(json.dumps(model, indent=2))
    return ["crmscore-churn v1", "changed: artifacts/churn/model.json"]


def _delete_file(p: Probe) -> list[str]:
    (p.champion_folder("leads") / "artifacts" / "leads" / "booster.txt").unlink()
    return ["crmscore-leads v1", "missing: artifacts/leads/booster.txt"]


def _add_file(p: Probe) -> list[str]:
    (p.champion_folder("clv") / "artifacts" / "clv" / "helpers.py").write_text(code_payload(p.marker))
    return ["crmscore-clv v1", "added: artifacts/clv/helpers.py"]


TAMPERING: dict[str, Callable[[Probe], list[str]]] = {
    "code": _edit_code,
    "pickle": _point_mlmodel_at_pickle,
    "calibrator": _shift_calibrator,
    "deleted": _delete_file,
    "added": _add_file,
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_champion_is_refused_naming_the_file(probe, how):
    expected = TAMPERING[how](probe)
    flat = assert_refused_and_nothing_written(probe, expected)
    assert "the model artefact does not match what was registered" in flat, flat


def test_pickle_is_refused_even_when_the_manifest_was_rewritten_to_match(probe):
    """Someone who can write the registry too re-records the manifest: the pickle still never
    loads, because crmscore loads with pickle deserialisation off."""
    from mlflow import MlflowClient

    from crmscore.core.manifest import file_manifest, manifest_json
    from crmscore.tracking import MANIFEST_TAG

    _point_mlmodel_at_pickle(probe)
    folder = probe.champion_folder("churn")
    client = MlflowClient(tracking_uri=probe.project.params["tracking"]["tracking_uri"])
    client.set_model_version_tag("crmscore-churn", "1", MANIFEST_TAG, manifest_json(file_manifest(folder)))
    assert_refused_and_nothing_written(probe, ["Deserializing model using pickle is disallowed"])


@pytest.mark.parametrize("user_value", [None, "true"], ids=["unset", "set-by-user"])
def test_pickle_deserialisation_is_off_while_scoring_unless_the_user_set_it(
    fork_trained_project, monkeypatch, user_value
):
    import mlflow.pyfunc

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)
    if user_value is None:
        monkeypatch.delenv(PICKLE_FLAG, raising=False)
    else:
        monkeypatch.setenv(PICKLE_FLAG, user_value)
    seen: list[str | None] = []
    real = mlflow.pyfunc.load_model

    def load_model(*args, **kwargs):
        seen.append(os.environ.get(PICKLE_FLAG))
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "load_model", load_model)
    probe = Probe(fork_trained_project("pickle-flag"), Path("unused"))
    code, text = _cli(probe, "score", "--as-of", AS_OF, "--no-write")
    assert code == 0, text
    assert seen == [user_value or "false"] * 3, seen  # churn, leads, clv
    assert os.environ.get(PICKLE_FLAG) == user_value  # restored after the loads
