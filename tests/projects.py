"""The trained CRM project shared by the integration and reliability tests (imported as ``projects``).

:func:`trained_project` is a small synthetic CRM (3,000 customers) in a SQLite database, a
``params.yaml`` and an MLflow store (SQLite) with version 1 of every model as champion, trained
through ``crmscore train``. Tests use it read-only as far as the registry goes: scoring writes
score tables into the CRM database and files into the folder, nothing else. A test that
registers, promotes or rolls back works on a copy of its registry (:func:`fork_trained_project`).

The two fixtures are defined here and imported by ``tests/integration/conftest.py`` and
``tests/reliability/conftest.py``: each folder gets its own session instance (one training per
folder and xdist worker), so what the reliability probes write into the CRM database never
reaches an integration test.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli_captured

__all__ = [
    "AS_OF",
    "FAST",
    "TrainedProject",
    "fork_trained_project",
    "logging_restored",
    "own_artifacts",
    "own_crm",
    "project_params",
    "trained_project",
    "write_params",
]

AS_OF = date(2025, 12, 31)
#: few, small trees: the integration tests check plumbing, not model quality
FAST = {"n_estimators": 40, "num_leaves": 7, "n_jobs": 1, "min_rows": 200, "min_positives": 30}


@dataclass(frozen=True)
class TrainedProject:
    root: Path  #: the project folder (params.yaml, crm.sqlite, mlruns/, report.json)
    params: dict[str, Any]  #: the content of params.yaml
    report: dict[str, Any]  #: ``crmscore train --report-json`` of the first training
    text: str  #: the console output of that training
    crm: Any  #: the SyntheticCRM written to crm.sqlite


def project_params(root: Path, artifacts: Path) -> dict[str, Any]:
    """``params.yaml`` of a project in ``root`` (CRM ``crm.sqlite``, store ``mlruns/``)."""
    return {
        "data": {"crm_url": f"sqlite:///{root / 'crm.sqlite'}", "quarantine": {"folder": str(root / "q")}},
        "churn": FAST,
        "leads": FAST,
        "clv": {"n_bootstrap": 20},
        "training": {"as_of": AS_OF.isoformat()},
        "tracking": {
            "tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db",
            "artifact_location": str(artifacts),
            "export_dir": str(root / "models"),
        },
    }


def write_params(root: Path, params: dict[str, Any]) -> None:
    """Write ``params`` as ``root/params.yaml``."""
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """The CLI sets up logging for the process (root handlers, the ``crmscore`` level): a
    session fixture must not leave that to whichever tests run after it."""
    root, pkg = logging.getLogger(), logging.getLogger("crmscore")
    handlers, root_level, pkg_level = root.handlers[:], root.level, pkg.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        pkg.setLevel(pkg_level)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> TrainedProject:
    """A SQLite CRM (3,000 customers, seed 5), params.yaml and a store trained by ``crmscore train``."""
    from crmscore.ingest import synth
    from crmscore.io.crm import create_engine, write_sql_tables

    root = tmp_path_factory.mktemp("trained")
    crm = synth.generate(3000, seed=5)
    engine = create_engine(f"sqlite:///{root / 'crm.sqlite'}")
    write_sql_tables(engine, crm.tables)
    engine.dispose()
    params = project_params(root, root / "mlruns" / "artifacts")
    write_params(root, params)
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        code, text = run_cli_captured(
            ["--params", str(root / "params.yaml"), "train", "--report-json", str(root / "report.json")], mp
        )
    assert code == 0, text
    report = json.loads((root / "report.json").read_text())
    return TrainedProject(root, params, report, text, crm)


@pytest.fixture(scope="session")
def fork_trained_project(trained_project, tmp_path_factory) -> Callable[[str], TrainedProject]:
    """``fork(name)``: a new project folder whose registry is a copy of :func:`trained_project`'s.

    The copy is its own MLflow database (what it registers, promotes or rolls back stays there)
    on the same CRM database (read) and artifact folder (runs logged in the copy add their own
    run folders there; nothing the shared project's tests read changes). Seconds instead of a
    new training.
    """
    src = trained_project

    def fork(name: str) -> TrainedProject:
        root = tmp_path_factory.mktemp(name)
        (root / "mlruns").mkdir()
        source = sqlite3.connect(src.root / "mlruns" / "mlflow.db")
        target = sqlite3.connect(root / "mlruns" / "mlflow.db")
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        params = copy.deepcopy(src.params)
        params["data"]["quarantine"]["folder"] = str(root / "q")
        params["tracking"]["tracking_uri"] = f"sqlite:///{root}/mlruns/mlflow.db"
        params["tracking"]["export_dir"] = str(root / "models")
        write_params(root, params)
        shutil.copy(src.root / "report.json", root / "report.json")
        return TrainedProject(root, params, copy.deepcopy(src.report), src.text, src.crm)

    return fork


def own_artifacts(project: TrainedProject) -> TrainedProject:
    """``project`` (a fork) with its own copy of the artefact folder, its registry pointed at it.

    A fork shares the artefact folder of :func:`trained_project`; a test that changes artefact
    files (tampering probes) makes them its own first: the folder is copied byte for byte (the
    recorded manifests still match) and every location in the fork's MLflow database (runs,
    logged models, model versions, experiments) is rewritten to the copy.
    """
    old = Path(project.params["tracking"]["artifact_location"])
    new = project.root / "mlruns" / "artifacts"
    shutil.copytree(old, new)
    db = sqlite3.connect(project.root / "mlruns" / "mlflow.db")
    try:
        with db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for _, col, kind, *_ in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                    if any(t in kind.upper() for t in ("CHAR", "TEXT", "CLOB")):
                        q = f'"{col}"'
                        sql = f'UPDATE "{table}" SET {q} = replace({q}, ?, ?) WHERE instr({q}, ?) > 0'
                        db.execute(sql, (str(old), str(new), str(old)))
    finally:
        db.close()
    params = copy.deepcopy(project.params)
    params["tracking"]["artifact_location"] = str(new)
    write_params(project.root, params)
    return replace(project, params=params)


def own_crm(project: TrainedProject, url: str | None = None, schema: str | None = None) -> TrainedProject:
    """``project`` with its own CRM: the synthetic tables written to ``url`` (default a new
    ``crm.sqlite`` in its folder; ``schema`` on PostgreSQL), without any score table.

    A URL with a password is not put into ``params.yaml`` (refused there): pass it in
    ``CRMSCORE_CRM_URL`` when running the commands.
    """
    from crmscore.config import url_has_secret
    from crmscore.io.crm import create_engine, write_sql_tables

    url = url or f"sqlite:///{project.root / 'crm.sqlite'}"
    engine = create_engine(url)
    try:
        write_sql_tables(engine, project.crm.tables, schema=schema)
    finally:
        engine.dispose()
    params = copy.deepcopy(project.params)
    if not url_has_secret(url):
        params["data"]["crm_url"] = url
    if schema is not None:
        params["data"]["db_schema"] = schema
    write_params(project.root, params)
    return replace(project, params=params)
