"""Training pipeline: validate → for each model kind: build, fit, evaluate → track → register.

Orchestration only. The kinds, and everything about each (the data it needs, how its training
set is built and evaluated out of time, its primary metric, its floors, its bundle) are their
specs (:mod:`crmscore.estimators.specs`); everything MLflow is :mod:`crmscore.tracking`.

Every kind is optional
----------------------
A kind whose data the CRM does not have is ``skipped`` (the reason says which table or column
is missing); a kind that fails a data gate (too few rows or positives, leakage, no buyer ...)
is ``failed`` with its reason; the others still train. :attr:`TrainResult.ok` is true when at
least one kind trained and none of the kinds the user asked for explicitly (``only``, or
``training.required``) was skipped or failed: ``crmscore train`` exits 0 then, 1 otherwise.

Cutoffs (nothing after ``as_of`` is used; ``as_of`` is never an implicit "now")
------------------------------------------------------------------------------
* churn: rolling-origin cutoffs ending at ``as_of - churn.horizon_days`` so that every label
  window is observed by ``as_of``; trained (and calibrated) on the earlier cutoffs, evaluated
  out of time on the last one.
* leads: the same, ending at ``as_of - leads.conversion_window_days``.
* clv: fitted on the BTYD summary at ``as_of - training.clv_holdout_days``; its purchase
  forecasts are checked on the holdout days up to ``as_of`` beside the ``zero`` and
  ``historical_rate`` baselines.

The registered model is exactly the evaluated one (it never saw the evaluation window), so the
promotion gate compares what would be deployed.

Promotion
---------
:func:`promotion_decision`: every absolute floor of ``training.promotion.<kind>`` must be met
and the primary metric must not be worse than ``min_relative_to_champion`` (default 95 %) of
the current champion's *on the same evaluation window* (the champion is loaded from the
registry and scored on this run's evaluation rows).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from crmscore.config import Config, PromotionConfig, redact_url
from crmscore.core.digest import combine_digests, content_digests
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData
from crmscore.core.serial import jsonable
from crmscore.estimators.gates import ModelGateError
from crmscore.estimators.specs import SPECS, ModelSpec, TrainedModel, get_spec

__all__ = [
    "DataUnusableError",
    "ModelResult",
    "TrainResult",
    "data_summary",
    "promotion_decision",
    "train_models",
]

logger = logging.getLogger(__name__)

#: evaluation rows on which a logged model is reloaded and compared with the fitted one
_RELOAD_CHECK_ROWS = 50_000


class DataUnusableError(ValueError):
    """Validation found the data unusable (the report says why)."""


@dataclass
class ModelResult:
    """Outcome of one model kind in a training job (JSON-ready through :meth:`TrainResult.to_dict`)."""

    kind: str
    status: str = "skipped"  # trained | failed | skipped
    reason: str = ""
    run_id: str | None = None
    registered_name: str | None = None
    version: int | None = None
    metric: str = ""
    value: float | None = None
    baseline: str | None = None
    baseline_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    split: str = ""
    champion_version: int | None = None
    champion_value: float | None = None
    promoted: bool = False
    promotion_reason: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainResult:
    """Everything ``crmscore train`` did (no customer rows)."""

    as_of: str
    tracking_uri: str
    experiment_id: str | None = None
    parent_run_id: str | None = None
    git_commit: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    models: dict[str, ModelResult] = field(default_factory=dict)
    #: kinds the user asked for explicitly (``only`` or ``training.required``)
    required: tuple[str, ...] = ()

    @property
    def trained(self) -> list[str]:
        """Kinds that trained."""
        return [k for k, m in self.models.items() if m.status == "trained"]

    @property
    def problems(self) -> list[str]:
        """Why the job is not ok: required kinds not trained, or nothing trained at all."""
        out = [
            f"{k} was required but {m.status}: {m.reason}"
            for k, m in self.models.items()
            if k in self.required and m.status != "trained"
        ]
        if not self.trained:
            out.append("no model kind could be trained")
        return out

    @property
    def ok(self) -> bool:
        """At least one kind trained and every required kind trained."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: run ids, versions, metrics, CLV parameters, promotion decisions."""
        return {
            "as_of": self.as_of,
            "tracking_uri": redact_url(self.tracking_uri),
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "git_commit": self.git_commit,
            "data": self.data,
            "required": list(self.required),
            "ok": self.ok,
            "models": {k: jsonable(asdict(v)) for k, v in self.models.items()},
        }


# ------------------------------------------------------------------------------------------
# data summary
# ------------------------------------------------------------------------------------------


def data_summary(data: CRMData, report: Any | None = None) -> dict[str, Any]:
    """Row counts, rows set aside (by reason), the transactions' date range and the digests."""
    tables: dict[str, Any] = {}
    for name in data.table_names():
        df = data.get(name)
        entry: dict[str, Any] = {"rows": None if df is None else len(df)}
        if report is not None and name in report.tables:
            t = report.tables[name]
            entry.update(rows_in=t.rows_in, rows_set_aside=t.rows_set_aside, set_aside=dict(t.set_aside))
        if df is not None or len(entry) > 1:
            tables[name] = entry
    summary: dict[str, Any] = {"tables": tables}
    tx = data.transactions
    if tx is not None and len(tx):
        summary["transactions_from"] = tx["ts"].min().isoformat()
        summary["transactions_to"] = tx["ts"].max().isoformat()
    if report is not None:
        summary["validated_as_of"] = report.as_of.date().isoformat()
        summary["rows_set_aside"] = int(report.rows_set_aside)
    # the content digest of each validated table and "all" (with the data settings), else of
    # the tables given (every row: no cutoff known here)
    digests = dict(getattr(report, "input_digest", None) or {})
    if not digests:
        digests = content_digests(data, None)
        digests["all"] = combine_digests(digests)
    summary["digest_sha256"] = digests
    return summary


# ------------------------------------------------------------------------------------------
# promotion rule
# ------------------------------------------------------------------------------------------


def promotion_decision(
    kind: str,
    metrics: Mapping[str, float],
    champion_value: float | None,
    rule: PromotionConfig,
    champion_version: int | None = None,
) -> tuple[bool, str]:
    """Whether a new version becomes champion, and why (see the module docstring).

    Parameters
    ----------
    kind : str
        A model kind (:data:`crmscore.estimators.specs.SPECS`).
    metrics : mapping
        The new model's metrics on the latest evaluation window (its primary metric and
        those its floors read).
    champion_value : float or None
        The champion's primary metric on the same window (None: no champion).
    rule : PromotionConfig
    champion_version : int, optional
        For the message.

    Returns
    -------
    promoted : bool
    reason : str
    """
    spec = get_spec(kind)
    value = float(metrics[spec.primary_metric])
    failures = spec.floors(metrics, rule)
    if failures:
        return False, "floor not met: " + "; ".join(failures)
    if champion_value is None or not np.isfinite(champion_value):
        if champion_version is not None:
            return True, f"champion v{champion_version} could not be scored on this window; every floor met"
        return True, "no champion to compare with; every floor met"
    ratio = rule.min_relative_to_champion
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    name = spec.metric_label
    if spec.higher_is_better:
        bar = ratio * champion_value
        ok = value >= bar
        rel = ">=" if ok else "<"
        text = f"{name} {value:.4f} {rel} {ratio:g} x {who}'s {champion_value:.4f} = {bar:.4f}"
    else:
        bar = champion_value / ratio
        ok = value <= bar
        rel = "<=" if ok else ">"
        text = f"{name} {value:.4f} {rel} {who}'s {champion_value:.4f} / {ratio:g} = {bar:.4f}"
    return ok, f"{text} on the same window; every floor met" if ok else f"not good enough: {text}"


# ------------------------------------------------------------------------------------------
# one kind
# ------------------------------------------------------------------------------------------


def _best_baseline(
    baselines: Mapping[str, Mapping[str, float]], metric: str, higher: bool
) -> tuple[str | None, float | None]:
    vals = {k: v.get(metric, np.nan) for k, v in baselines.items()}
    vals = {k: v for k, v in vals.items() if np.isfinite(v)}
    if not vals:
        return None, None
    best = max(vals, key=vals.get) if higher else min(vals, key=vals.get)  # type: ignore[arg-type]
    return best, float(vals[best])


def _record(res: ModelResult, spec: ModelSpec, trained: TrainedModel) -> None:
    res.metric, res.value = spec.primary_metric, trained.metrics[spec.primary_metric]
    res.metrics, res.baselines, res.split = trained.metrics, trained.baselines, trained.split
    res.baseline, res.baseline_value = _best_baseline(
        trained.baselines, spec.primary_metric, spec.higher_is_better
    )
    res.rows, res.parameters = trained.rows, trained.parameters


def _log_trained(ts: Any, trained: TrainedModel, cfg: Config) -> None:
    ts.log_params(trained.params)
    ts.log_metrics(trained.logged_metrics)
    for path, frame in trained.frames.items():
        ts.log_frame(frame, path)
    for path, doc in trained.dicts.items():
        ts.log_dict(doc, path)
    if cfg.training.log_plots:
        ts.log_figures(trained.figures())


def _champion_value(ts: Any, spec: ModelSpec, name: str, trained: TrainedModel, res: ModelResult) -> None:
    res.champion_version = ts.champion(name)
    if res.champion_version is None:
        return
    try:
        champ = ts.load_champion(name).unwrap_python_model()
        res.champion_value = trained.champion_metric(champ.model)
    except Exception as exc:  # an incompatible champion must not block a retrain
        logger.warning("%s: champion v%s could not be scored: %s", name, res.champion_version, exc)


def _check_reload(ts: Any, spec: ModelSpec, name: str, version: int, trained: TrainedModel) -> None:
    """The registered pyfunc must reproduce every output of the fitted model exactly (on a seeded
    sample of the evaluation rows)."""
    from crmscore.tracking import prepare_input

    rows = trained.check_rows
    if len(rows) > _RELOAD_CHECK_ROWS:
        rows = rows.sample(n=_RELOAD_CHECK_ROWS, random_state=0)
    loaded = ts.load_version(name, version)
    check = loaded.predict(prepare_input(spec, trained.model, rows))
    mine = spec.predict(trained.model, rows)
    cols = spec.output_columns
    if not check[cols].equals(mine[cols]):
        raise RuntimeError(
            f"{spec.kind}: the logged pyfunc does not reproduce the fitted model's predictions"
        )


def _train_kind(
    spec: ModelSpec, data: CRMData, as_of: date, cfg: Config, ts: Any, workdir: Path, res: ModelResult
) -> None:
    trained = spec.train(data, as_of, cfg)
    _record(res, spec, trained)
    bundle_dir = spec.save(trained.model, workdir / spec.kind)
    _log_trained(ts, trained, cfg)
    name = spec.registered_name(cfg)
    _champion_value(ts, spec, name, trained, res)
    meta = {"as_of": str(as_of), "primary_metric": spec.primary_metric}
    logged = ts.log_model(bundle_dir, name, metadata=meta)
    res.registered_name, res.version = name, logged.version
    _check_reload(ts, spec, name, logged.version, trained)


# ------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------


def _requested(cfg: Config, only: Iterable[str] | None) -> tuple[list[str], tuple[str, ...]]:
    """The kinds to train (in spec order) and the required ones."""
    asked = list(only) if only is not None else list(cfg.training.models)
    for k in (*asked, *cfg.training.required):
        get_spec(k)  # raises on an unknown kind
    required = tuple(asked) if only is not None else tuple(cfg.training.required)
    kinds = [k for k in SPECS if k in asked or k in required]
    return kinds, required


def train_models(
    cfg: Config,
    as_of: date,
    *,
    only: Iterable[str] | None = None,
    data: CRMData | None = None,
    report: Any | None = None,
) -> TrainResult:
    """Retrain every requested kind the data supports, log one parent run with a child run
    per kind, register each new version as ``challenger`` and promote it to ``champion``
    through the metric gate.

    Parameters
    ----------
    cfg : Config
        Reads ``features``, the kinds' blocks, ``training`` and ``tracking``.
    as_of : date
        Training cutoff day (required: no implicit "now").
    only : iterable of str, optional
        Kinds to train, all of them required (default ``training.models``, of which
        ``training.required`` are required).
    data, report : CRMData and ValidationReport, optional
        Already validated data; read and validated as of ``as_of`` when absent.

    Returns
    -------
    TrainResult
        Each kind ``trained``, ``skipped`` (its data is absent) or ``failed`` (a gate, too few
        rows ...), with its reason; :attr:`TrainResult.ok` says whether the job succeeded.

    Raises
    ------
    DataUnusableError
        Validation found the data unusable.
    ValueError
        An unknown model kind.
    """
    from crmscore.tracking import TrackingSession, git_commit

    kinds, required = _requested(cfg, only)
    if data is None:
        from crmscore.ingest.validation import load_validated

        with stage(f"reading and validating the CRM data as of {as_of}"):
            data, report = load_validated(cfg, as_of=as_of)
    if report is not None and not report.usable:
        raise DataUnusableError("; ".join(str(p) for p in report.problems if p.fatal))
    with stage("summarising the input data"):
        summary = data_summary(data, report)
    commit = git_commit()
    session = TrackingSession(cfg.tracking)
    result = TrainResult(
        as_of=str(as_of),
        tracking_uri=session.tracking_uri,
        git_commit=commit,
        data=summary,
        required=required,
    )
    tags = {"crmscore.as_of": str(as_of), "crmscore.data_digest": summary["digest_sha256"]["all"]}
    if commit:
        tags["crmscore.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    with (
        session as ts,
        tempfile.TemporaryDirectory(prefix="crmscore-train-") as tmp,
        ts.parent_run(f"train {as_of}", tags=tags) as parent_id,
    ):
        result.experiment_id, result.parent_run_id = ts.experiment(), parent_id
        ts.log_params(
            {
                "as_of": str(as_of),
                "models": kinds,
                "data.source": cfg.data.source,
                "data.location": str(cfg.data.folder)
                if cfg.data.source == "folder"
                else redact_url(cfg.data.resolved_crm_url()),
                "features": cfg.model_dump(mode="json")["features"],
                "training": cfg.model_dump(mode="json")["training"],
            }
        )
        ts.log_dict(summary, "data_summary.json")
        for kind in kinds:
            result.models[kind] = _run_kind(get_spec(kind), data, as_of, cfg, ts, Path(tmp), tags, summary)
        ts.log_dict(result.to_dict(), "train_report.json")
        ts.set_tags({"crmscore.ok": result.ok})
    return result


def _run_kind(
    spec: ModelSpec,
    data: CRMData,
    as_of: date,
    cfg: Config,
    ts: Any,
    workdir: Path,
    tags: Mapping[str, str],
    summary: Mapping[str, Any],
) -> ModelResult:
    """Train one kind in its child run: ``skipped``, ``failed`` or ``trained`` (then the promotion)."""
    res = ModelResult(kind=spec.kind)
    missing = spec.missing_data(data, cfg)
    if missing:
        res.status, res.reason = "skipped", missing
        logger.warning("%s: skipped: %s", spec.kind, missing)
        return res
    with ts.child_run(spec.kind, tags={**tags, "crmscore.model": spec.kind}) as run_id:
        res.run_id = run_id
        ts.log_dict(dict(summary), "data_summary.json")
        try:
            _train_kind(spec, data, as_of, cfg, ts, workdir, res)
        except (ModelGateError, ValueError, RuntimeError) as exc:
            res.status, res.reason = "failed", f"{type(exc).__name__}: {exc}"
            logger.error("%s: not trained: %s", spec.kind, res.reason)
            ts.set_tags({"crmscore.status": "failed", "crmscore.failure": res.reason[:4000]})
        else:
            res.status = "trained"
            _decide_and_tag(res, cfg, ts, run_id, as_of)
    if res.status == "failed":
        ts.mark_failed(run_id)
    return res


def _decide_and_tag(res: ModelResult, cfg: Config, ts: Any, run_id: str, as_of: date) -> None:
    """Apply the promotion rule to a trained model and record the decision (run and version tags)."""
    res.promoted, res.promotion_reason = promotion_decision(
        res.kind, res.metrics, res.champion_value, cfg.training.promotion, res.champion_version
    )
    if res.promoted:
        ts.promote(res.registered_name, res.version, res.promotion_reason)
    else:
        logger.warning("%s v%d not promoted: %s", res.registered_name, res.version, res.promotion_reason)
    decision = {
        "crmscore.promoted": res.promoted,
        "crmscore.promotion_reason": res.promotion_reason,
        "crmscore.primary_metric": f"{res.metric}={res.value:.6g}",
    }
    ts.set_tags({**decision, "crmscore.status": "trained", "crmscore.version": res.version})
    ts.set_version_tags(
        res.registered_name,
        res.version,
        {**decision, "crmscore.run_id": run_id, "crmscore.as_of": str(as_of)},
    )
    if res.champion_value is not None:
        ts.log_metrics({f"champion.{res.metric}": res.champion_value})
