"""MLflow tracking, pickle-free model artefacts, the pyfunc wrapper and the registry.

This is the only module of crmscore that imports ``mlflow``. Importing it sets no URI and
creates nothing: the URIs are set only inside :class:`TrackingSession`. Everything
MLflow-specific lives here; the training pipeline (:mod:`crmscore.pipelines.train`) only
orchestrates.

Where things go
---------------
* Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``tracking.tracking_uri`` (default
  ``sqlite:///mlruns/mlflow.db``: MLflow 3 keeps the ``./mlruns`` file store only for backward
  compatibility — 3.17 refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true`` — and the model
  registry is built for the database-backed stores). Any SQLAlchemy URL MLflow
  supports works, e.g. ``postgresql+psycopg://user@host:5432/db``, or an ``http(s)://``
  tracking server. The URI is set only inside :class:`TrackingSession` and restored after.
* New experiments on a local store put their artefacts under ``tracking.artifact_location``;
  a tracking server decides for itself.

Artefacts (no pickle)
---------------------
A model version is an MLflow *pyfunc* logged as "models from code": the python model is a
three-line script (written at log time) that calls ``mlflow.models.set_model`` on
:class:`CrmscorePyfunc`, so no object is cloudpickled. Its ``bundle`` artefact is the kind's
pickle-free bundle (:mod:`crmscore.estimators.bundles`: LightGBM text + JSON for the
classifiers, JSON for CLV), loaded back into the fitted estimator by the kind's spec
(:mod:`crmscore.estimators.specs`).

Loading therefore works with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``. The scoring
environment needs ``crmscore`` installed (the pyfunc script imports it).

Registry
--------
Each run registers a new version per model and gives it the alias ``challenger``; the
training pipeline moves ``champion`` to it only through the metric gate. Every champion
change is appended to the registered model's tag ``crmscore.champion_history`` (JSON list of
versions), which :func:`rollback` uses to restore the previous champion.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd

from crmscore.config import TrackingConfig, redact_url
from crmscore.core.manifest import (
    ArtifactIntegrityError,
    file_manifest,
    manifest_json,
    parse_manifest,
    verify_manifest,
)
from crmscore.core.serial import package_versions, slug

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crmscore.estimators.specs import ModelSpec


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MANIFEST_TAG",
    "ArtifactIntegrityError",
    "CrmscorePyfunc",
    "LoggedModel",
    "TrackingSession",
    "champion_version",
    "export_champions",
    "git_commit",
    "load_pyfunc",
    "prepare_input",
    "promote",
    "registered_versions",
    "resolve_tracking_uri",
    "rollback",
    "slug",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Version tag holding the SHA-256 manifest of the version's files (recorded at registration).
MANIFEST_TAG = "crmscore.manifest_sha256"
_HISTORY_TAG = "crmscore.champion_history"
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_PYFUNC_SCRIPT = '''"""crmscore pyfunc entry point (MLflow models from code: no pickled object)."""

from mlflow.models import set_model

from crmscore.tracking import CrmscorePyfunc

set_model(CrmscorePyfunc())
'''


def _pip_requirements() -> list[str]:
    v = package_versions()
    return [f"{p}=={v[p]}" for p in ("lightgbm", "scikit-learn", "pandas", "numpy", "scipy") if p in v]


def git_commit(path: str | Path = ".") -> str | None:
    """The current git commit of ``path`` (``-dirty`` appended with local changes), or None.

    Read-only (``git rev-parse`` / ``git status``); None outside a repository or without git.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha or None


# ------------------------------------------------------------------------------------------
# model inputs
# ------------------------------------------------------------------------------------------


def prepare_input(spec: ModelSpec, model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns of ``X`` typed as its signature says (numbers as float64,
    categories as text with None for missing), so MLflow's schema enforcement accepts them."""
    from crmscore.core.ids import text_codes

    out = {}
    for col, kind in spec.inputs(model):
        s = X[col]
        if kind == "double":
            out[col] = pd.to_numeric(s, errors="coerce").astype(np.float64).to_numpy()
        else:  # text once per distinct value
            codes, texts = text_codes(s)
            text = np.full(len(s), None, dtype=object)
            present = codes >= 0
            text[present] = texts[codes[present]]
            out[col] = text
    return pd.DataFrame(out, index=X.index)


def _input_colspec(name: str, kind: str) -> Any:
    """The MLflow column of one model input: ``double`` as is; text (``string``) as ``Any``.

    MLflow's ``string`` accepts only object or ``StringDtype`` columns, so the ``category``
    columns of ``crmscore features`` would be refused before the model sees them; ``Any``
    passes the values through and the spec's prediction types them (:func:`prepare_input`).
    """
    from mlflow.types import ColSpec
    from mlflow.types.schema import AnyType

    return ColSpec(AnyType(), name) if kind == "string" else ColSpec(kind, name)


# ------------------------------------------------------------------------------------------
# pyfunc
# ------------------------------------------------------------------------------------------


class CrmscorePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc over a crmscore bundle: scores a plain pandas frame.

    Churn and lead models take the feature columns of ``crmscore features`` /
    ``build_lead_features`` (numbers and text; see :func:`prepare_input`); the CLV model takes
    ``frequency``, ``recency``, ``T`` and ``monetary_value``. The fitted estimator is
    ``loaded.unwrap_python_model().model`` and its kind's spec ``.spec``; ``predict`` is the
    spec's prediction (the estimator's own ``predict_frame``), the path scoring uses too.
    """

    model: Any = None
    spec: Any = None

    def load_context(self, context: Any) -> None:
        """Load the bundle artefact (LightGBM text + JSON, or CLV JSON: no pickle)."""
        from crmscore.estimators.specs import load_model

        self.spec, self.model = load_model(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores of every row of ``model_input`` (a pandas DataFrame), same index."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.spec.predict(self.model, frame)


# ------------------------------------------------------------------------------------------
# session, runs, logging
# ------------------------------------------------------------------------------------------


def resolve_tracking_uri(cfg: TrackingConfig, *, create: bool = True) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``cfg.tracking_uri``.

    A local SQLite file's path is made absolute (against the working directory): MLflow caches
    its stores by URI, so a relative URI would keep pointing at the first project's database
    after a change of directory. With ``create`` its folder is created (MLflow then creates the
    database); without, nothing is created.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    path = _sqlite_store_file(uri)
    if path is not None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        query = uri.partition("?")[2]
        uri = f"sqlite:///{path}" + (f"?{query}" if query else "")
    return uri


def _sqlite_store_file(uri: str) -> Path | None:
    """The absolute file of a ``sqlite:///`` store URI (None: another store or memory)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        return Path(uri[len("sqlite:///") :].split("?", 1)[0]).absolute()
    return None


def _is_local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


@dataclass
class LoggedModel:
    """A model logged and registered by :meth:`TrackingSession.log_model`."""

    name: str
    version: int
    model_uri: str
    run_id: str


class TrackingSession:
    """Tracking and registry access for one command: sets the MLflow URIs, restores them after.

    Use as a context manager::

        with TrackingSession(cfg.tracking) as ts:
            with ts.parent_run("train 2025-12-31"):
                with ts.child_run("churn"):
                    ts.log_metrics({"roc_auc": 0.83})

    Parameters
    ----------
    cfg : TrackingConfig
        The ``tracking`` block.
    must_exist : bool
        For commands that only read the registry (``score``, ``promote``, ``rollback``,
        ``export``): a local SQLite store that does not exist is an error
        (:class:`crmscore.io.crm.StoreError`, exit code 1, "run crmscore train first") instead
        of a new empty store. ``train`` creates it.
    """

    def __init__(self, cfg: TrackingConfig, *, must_exist: bool = False) -> None:
        self.cfg = cfg
        self.tracking_uri = resolve_tracking_uri(cfg, create=not must_exist)
        store = _sqlite_store_file(self.tracking_uri)
        if must_exist and store is not None and not store.is_file():
            from crmscore.io.crm import StoreError

            raise StoreError(
                f"no model store at {store} (tracking.tracking_uri or MLFLOW_TRACKING_URI): "
                "run crmscore train first",
                exit_code=1,
            )
        self.registry_uri = cfg.registry_uri or self.tracking_uri
        self._saved: dict[str, Any] | None = None
        self.experiment_id: str | None = None

    def __enter__(self) -> TrackingSession:
        import mlflow.tracking._model_registry.utils as registry_utils
        import mlflow.tracking._tracking_service.utils as tracking_utils

        # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI (and the registry URI its
        # variable): remember the module state and the environment to restore both on exit
        self._saved = {
            "tracking": getattr(tracking_utils, "_tracking_uri", None),
            "registry": getattr(registry_utils, "_registry_uri", None),
            "env": {k: os.environ.get(k) for k in _URI_ENV},
        }
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        logger.info("MLflow tracking at %s", redact_url(self.tracking_uri))
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            while mlflow.active_run() is not None:
                mlflow.end_run("FAILED" if exc[0] is not None else "FINISHED")
        saved = self._saved or {"tracking": None, "registry": None, "env": {}}
        mlflow.set_tracking_uri(saved["tracking"])
        mlflow.set_registry_uri(saved["registry"])
        for key, value in saved["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @functools.cached_property
    def client(self) -> Any:
        """An ``MlflowClient`` on this session's tracking and registry URIs (created on first use)."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    # -- experiment and runs -------------------------------------------------------------

    def experiment(self) -> str:
        """Id of ``cfg.experiment``, created on first use (local stores: artefacts under
        ``cfg.artifact_location``)."""
        if self.experiment_id is None:
            exp = self.client.get_experiment_by_name(self.cfg.experiment)
            if exp is not None:
                self.experiment_id = exp.experiment_id
            else:
                location = None
                if _is_local_store(self.tracking_uri):
                    root = Path(self.cfg.artifact_location).resolve()
                    root.mkdir(parents=True, exist_ok=True)
                    location = root.as_uri()
                self.experiment_id = self.client.create_experiment(
                    self.cfg.experiment, artifact_location=location
                )
        return self.experiment_id

    @contextlib.contextmanager
    def parent_run(self, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Start the job's run; yields its run id."""
        with mlflow.start_run(experiment_id=self.experiment(), run_name=run_name, tags=dict(tags or {})) as r:
            yield r.info.run_id

    @contextlib.contextmanager
    def child_run(self, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Start a run nested in the active one; yields its run id."""
        with mlflow.start_run(
            experiment_id=self.experiment(), run_name=run_name, nested=True, tags=dict(tags or {})
        ) as r:
            yield r.info.run_id

    def mark_failed(self, run_id: str) -> None:
        """Give a finished run the MLflow status ``FAILED`` (a model that could not be trained).

        Called after the run's block has closed, so the run stack (the parent run) is untouched.
        """
        self.client.set_terminated(run_id, status="FAILED")

    # -- logging (to the active run) -----------------------------------------------------

    @staticmethod
    def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
        """Log a nested mapping as flat params (``a.b.c``); values JSON-encoded where not scalar."""
        flat: dict[str, str] = {}

        def walk(obj: Any, key: str) -> None:
            if isinstance(obj, Mapping) and obj:
                for k, v in obj.items():
                    walk(v, f"{key}.{k}" if key else str(k))
            elif isinstance(obj, (str, int, float, bool)) or obj is None:
                flat[key] = str(obj)
            else:
                flat[key] = json.dumps(obj, default=str)

        walk(params, prefix)
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params({k[:250]: v[:6000] for k, v in items[i : i + 100]})

    @staticmethod
    def log_metrics(metrics: Mapping[str, float]) -> None:
        """Log finite metrics (NaN/inf are skipped and logged as a debug line)."""
        ok = {}
        for k, v in metrics.items():
            if v is not None and np.isfinite(float(v)):
                ok[k] = float(v)
            else:
                logger.debug("metric %s is not finite: not logged", k)
        if ok:
            mlflow.log_metrics(ok)

    @staticmethod
    def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
        """Log ``data`` as a JSON artefact."""
        mlflow.log_text(json.dumps(data, indent=2, default=str), artifact_file)

    @staticmethod
    def log_frame(df: pd.DataFrame, artifact_file: str) -> None:
        """Log an aggregate table (metrics, gains; never customer rows) as CSV."""
        mlflow.log_text(df.to_csv(), artifact_file)

    @staticmethod
    def log_figures(figures: Mapping[str, Figure], folder: str = "plots") -> None:
        """Log matplotlib Figures (built without pyplot, so nothing to close) as PNG artefacts."""
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"{folder}/{name}.png")

    @staticmethod
    def set_tags(tags: Mapping[str, Any]) -> None:
        """Set tags on the active run."""
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_model(
        self,
        bundle_dir: str | Path,
        registered_name: str,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> LoggedModel:
        """Log ``bundle_dir`` as a pyfunc (models from code) in the active run and register it.

        The new version gets the alias ``challenger``. The signature comes from the bundle:
        numeric features ``double``; categorical features (``string`` in the spec) are logged
        as MLflow ``Any``, because MLflow's ``string`` refuses a pandas ``category`` column —
        the dtype of ``crmscore features`` (and of its Parquet file) — and a CSV column read
        back as numbers or all blank; the wrapper's prediction types them itself (as scoring
        does). No input example is logged (it would be a customer's row).
        """
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from crmscore.estimators.specs import load_model, signature_columns

        spec, model = load_model(bundle_dir)
        inputs, outputs = signature_columns(spec, model)
        signature = ModelSignature(
            inputs=Schema([_input_colspec(n, t) for n, t in inputs]),
            outputs=Schema([ColSpec(t, n) for n, t in outputs]),
        )
        with tempfile.TemporaryDirectory(prefix="crmscore-pyfunc-") as tmp, warnings.catch_warnings():
            # no input example on purpose: it would be a customer's row
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            script = Path(tmp) / "crmscore_model.py"
            script.write_text(_PYFUNC_SCRIPT, encoding="utf-8")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(script),
                artifacts={"bundle": str(bundle_dir)},
                signature=signature,
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_name,
                metadata={"crmscore_kind": spec.kind, **dict(metadata or {})},
            )
        version = int(info.registered_model_version)
        manifest = self._record_manifest(registered_name, version)
        self.client.set_registered_model_alias(registered_name, CHALLENGER, str(version))
        run = mlflow.active_run()
        run_id = run.info.run_id if run is not None else ""
        logger.info(
            "registered %s version %d (@%s), %d files in its SHA-256 manifest",
            registered_name,
            version,
            CHALLENGER,
            len(manifest),
        )
        return LoggedModel(registered_name, version, info.model_uri, run_id)

    def _record_manifest(self, name: str, version: int) -> dict[str, str]:
        """Hash every file of the registered version (as the registry serves it) and record the
        manifest as the version tag :data:`MANIFEST_TAG` and as a JSON artefact of the run."""
        with tempfile.TemporaryDirectory(prefix="crmscore-manifest-") as tmp:
            manifest = file_manifest(_download_version(name, version, tmp))
        self.client.set_model_version_tag(name, str(version), MANIFEST_TAG, manifest_json(manifest))
        if mlflow.active_run() is not None:
            mlflow.log_text(manifest_json(manifest), f"manifests/{slug(name)}-v{version}.json")
        return manifest

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, Any]) -> None:
        """Tag a model version (e.g. metrics and the promotion decision)."""
        for k, v in tags.items():
            self.client.set_model_version_tag(name, str(version), k, str(v)[:5000])

    # -- registry ------------------------------------------------------------------------

    def champion(self, name: str) -> int | None:
        """Version number behind ``name@champion`` or None."""
        return champion_version(self.client, name)

    def load_champion(self, name: str) -> Any | None:
        """The champion pyfunc of ``name``, verified (None without one)."""
        version = self.champion(name)
        return None if version is None else self.load_version(name, version)

    def load_version(self, name: str, version: int) -> Any:
        """The pyfunc of ``name`` version ``version``, loaded only after its files are verified.

        The version's files are downloaded to a private folder, checked against the SHA-256
        manifest recorded at registration (:func:`crmscore.core.manifest.verify_manifest`) and
        loaded from that same folder, with pickle deserialisation off unless
        ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is set.

        Raises
        ------
        ArtifactIntegrityError
            A file changed, missing or added since registration, or no manifest was recorded.
        """
        with tempfile.TemporaryDirectory(prefix="crmscore-load-") as tmp:
            path, _ = self.verified_download(name, version, tmp)
            with no_pickle():
                return load_pyfunc(path)

    def verified_download(self, name: str, version: int, dst: str | Path) -> tuple[Path, str]:
        """Download ``name`` version ``version`` into ``dst`` and check it against its manifest.

        Returns
        -------
        (Path, str)
            The model folder and the manifest JSON it matched.

        Raises
        ------
        ArtifactIntegrityError
            A file changed, missing or added since registration, or no manifest was recorded.
        """
        what = f"{name} v{version}"
        text = (self.client.get_model_version(name, str(version)).tags or {}).get(MANIFEST_TAG)
        expected = parse_manifest(text, what)
        path = _download_version(name, version, dst)
        verify_manifest(path, expected, what)
        return path, str(text)

    def promote(self, name: str, version: int, reason: str) -> None:
        """Move ``champion`` to ``version`` (see :func:`promote`)."""
        promote(self.client, name, version, reason)


def _download_version(name: str, version: int, dst: str | Path) -> Path:
    """The files of registered model ``name`` version ``version``, as the registry serves them."""
    import mlflow.artifacts

    uri = f"models:/{name}/{version}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


@contextlib.contextmanager
def no_pickle() -> Iterator[None]:
    """``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` inside the block, unless the user set it."""
    key = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def load_pyfunc(model_uri: str, *, check_requirements: bool = False) -> Any:
    """``mlflow.pyfunc.load_model(model_uri)`` (URIs resolve against the current session).

    ``check_requirements=False`` skips MLflow's comparison of the logged pip requirements with
    the installed packages (about a second per load; the versions are logged with the model).
    """
    return mlflow.pyfunc.load_model(model_uri, suppress_warnings=not check_requirements)


def champion_version(client: Any, name: str) -> int | None:
    """Version number behind ``name@champion``, None when the model or alias is absent."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _history(client: Any, name: str) -> list[int]:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        raise ValueError(f"{name} is not a registered model: run crmscore train first") from None
    return [int(v) for v in json.loads(tags.get(_HISTORY_TAG, "[]"))]


def registered_versions(client: Any, name: str) -> list[int]:
    """The version numbers of registered model ``name``, ascending (empty when it is absent)."""
    from mlflow.exceptions import MlflowException

    quoted = name.replace("'", "''")
    try:
        found = client.search_model_versions(f"name = '{quoted}'")
    except MlflowException:
        return []
    return sorted(int(v.version) for v in found)


def _versions_note(client: Any, name: str) -> str:
    """``"versions 1, 2, 3; @champion v2"``: what exists, for an error message."""
    versions = registered_versions(client, name)
    if not versions:
        return "no version is registered: run crmscore train first"
    champion = champion_version(client, name)
    listed = ", ".join(str(v) for v in versions)
    return f"registered versions: {listed}; @champion {f'v{champion}' if champion is not None else 'none'}"


def promote(client: Any, name: str, version: int, reason: str) -> None:
    """Give ``version`` the ``champion`` alias, append it to the history tag and tag the version.

    Parameters
    ----------
    client : MlflowClient
    name : str
        Registered model name.
    version : int
        Version to promote (must exist).
    reason : str
        Why (stored in the version tag ``crmscore.promotion``).

    Raises
    ------
    ValueError
        ``version`` does not exist (the message lists the versions that do).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"{name} has no version {version} ({_versions_note(client, name)})") from None
    history = _history(client, name)
    if history and history[-1] == version and champion_version(client, name) == version:
        logger.info("%s version %d is already the champion", name, version)
        return
    client.set_registered_model_alias(name, CHAMPION, str(version))
    history.append(int(version))
    client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), "crmscore.promoted_at", now)
    client.set_model_version_tag(name, str(version), "crmscore.promotion", reason[:5000])
    logger.info("%s: champion is now version %d (%s)", name, version, reason)


def rollback(client: Any, name: str) -> tuple[int, int]:
    """Move ``champion`` back to the previous champion version; returns ``(from, to)``.

    The history tag loses its last entry, the demoted version gets the tag
    ``crmscore.rolled_back_at`` and the registered model the tag ``crmscore.last_rollback``.

    Raises
    ------
    ValueError
        The model is not registered, or there is no earlier champion to return to (the
        message lists the versions that exist).
    """
    current = champion_version(client, name)
    history = _history(client, name)
    if current is not None and history and history[-1] == current:
        history = history[:-1]
    if not history:
        raise ValueError(
            f"{name}: no previous champion to roll back to ({_versions_note(client, name)}): "
            "choose one with crmscore promote KIND --version N"
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, str(target))
    client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if current is not None:
        client.set_model_version_tag(name, str(current), "crmscore.rolled_back_at", now)
    client.set_registered_model_tag(
        name, "crmscore.last_rollback", json.dumps({"from": current, "to": target, "at": now})
    )
    logger.info("%s: champion rolled back from version %s to %d", name, current, target)
    return (current if current is not None else -1), target


def export_champions(
    session: TrackingSession, names: Mapping[str, str], folder: str | Path
) -> dict[str, Path]:
    """Download each champion as a self-contained MLflow model folder ``folder/<kind>``.

    The folder loads with ``mlflow.pyfunc.load_model(path)`` without the tracking server (and
    without pickle); a ``crmscore_export.json`` beside it names the registered model and version.

    Returns
    -------
    dict
        Kind → written folder, for the models that have a champion.
    """
    import shutil

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, name in names.items():
        version = session.champion(name)
        if version is None:
            logger.warning("%s: no champion version; not exported", name)
            continue
        dest = root / kind
        if dest.exists():
            shutil.rmtree(dest)
        with tempfile.TemporaryDirectory(prefix="crmscore-export-") as tmp:
            path, manifest = session.verified_download(name, version, tmp)
            shutil.copytree(path, dest)
        (root / f"{kind}.json").write_text(
            json.dumps(
                {
                    "registered_model": name,
                    "version": version,
                    "alias": CHAMPION,
                    "manifest_sha256": manifest,
                    "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        out[kind] = dest
        logger.info("exported %s version %d to %s", name, version, dest)
    return out
