"""Training pipeline: validate → features at the training cutoffs → fit and evaluate → track → register.

Orchestration only: features come from :mod:`crmscore.pipelines.features`, models and their
evaluations from :mod:`crmscore.estimators`, everything MLflow from :mod:`crmscore.tracking`.

Cutoffs (nothing after ``as_of`` is used; ``as_of`` is never an implicit "now")
------------------------------------------------------------------------------
* churn: rolling-origin cutoffs (``features.cutoffs``, ``features.cutoff_step_days``) ending at
  ``as_of - churn.horizon_days`` so that every label window is observed by ``as_of``; the model
  is trained on the earlier cutoffs (calibrated on the latest of those) and evaluated out of time
  on the last one (``estimators.churn.evaluate_churn``).
* leads: the same, ending at ``as_of - leads.conversion_window_days``.
* clv: BG/NBD + Gamma-Gamma fitted on the BTYD summary at ``as_of - training.clv_holdout_days``;
  its purchase forecasts are checked on the holdout days up to ``as_of``
  (``evaluation_clv.holdout_metrics``) beside the ``zero`` and ``historical_rate`` baselines.

The registered model is exactly the evaluated one (it never saw the evaluation window), so the
promotion gate compares what would be deployed.

Promotion
---------
:func:`promotion_decision`: every absolute floor of ``training.promotion.<model>`` must be met
and the primary metric (churn/leads: ROC AUC, higher is better; clv: holdout MAE, lower is
better) must not be worse than ``min_relative_to_champion`` (default 95 %) of the current
champion's *on the same evaluation window* (the champion is loaded from the registry and scored
on this run's evaluation rows).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config, PromotionConfig, redact_url
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData
from crmscore.core.serial import jsonable

__all__ = [
    "MODEL_KINDS",
    "ModelResult",
    "TrainResult",
    "data_digest",
    "data_summary",
    "promotion_decision",
    "train_models",
]

logger = logging.getLogger(__name__)

MODEL_KINDS: tuple[str, ...] = ("churn", "leads", "clv")
#: Primary metric of each model and whether higher is better.
PRIMARY: dict[str, tuple[str, bool]] = {
    "churn": ("roc_auc", True),
    "leads": ("roc_auc", True),
    "clv": ("mae", False),
}
#: evaluation rows on which a logged classifier is reloaded and compared with the fitted one
_RELOAD_CHECK_ROWS = 50_000
_TABLES = ("customers", "transactions", "leads", "lead_activities", "support_tickets", "marketing_spend")


class DataUnusableError(ValueError):
    """Validation found the data unusable (the report says why)."""


@dataclass
class ModelResult:
    """Outcome of one model in a training job (JSON-ready through :meth:`TrainResult.to_dict`)."""

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

    @property
    def ok(self) -> bool:
        """No requested model failed."""
        return not any(m.status == "failed" for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: run ids, versions, metrics, CLV parameters, promotion decisions."""
        return {
            "as_of": self.as_of,
            "tracking_uri": redact_url(self.tracking_uri),
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "git_commit": self.git_commit,
            "data": self.data,
            "models": {k: jsonable(asdict(v)) for k, v in self.models.items()},
        }


# ------------------------------------------------------------------------------------------
# data summary
# ------------------------------------------------------------------------------------------


def data_digest(data: CRMData) -> dict[str, str]:
    """SHA-256 of every validated input table (and ``"all"`` over them), column by column.

    Order-sensitive and value-exact: the same rows in the same order give the same digest
    (:mod:`crmscore.core.digest`). No row content leaves this function.
    """
    from crmscore.core.digest import tables_digest

    return tables_digest({name: getattr(data, name, None) for name in _TABLES})


def data_summary(data: CRMData, report: Any | None = None) -> dict[str, Any]:
    """Row counts, rows set aside (by reason), the transactions' date range and the digests."""
    tables: dict[str, Any] = {}
    for name in _TABLES:
        df = getattr(data, name, None)
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
    # the digest of the inputs as read (with the data settings), else of the validated tables
    summary["digest_sha256"] = dict(getattr(report, "input_digest", None) or data_digest(data))
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
    kind : {"churn", "leads", "clv"}
    metrics : mapping
        The new model's metrics on the latest evaluation window (``roc_auc``, ``ece`` or
        ``mae``, ``aggregate_error_pct``).
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
    metric, higher = PRIMARY[kind]
    value = float(metrics[metric])
    failures: list[str] = []
    if kind == "clv":
        gate = rule.clv
        if gate.max_holdout_mae is not None and not value <= gate.max_holdout_mae:
            failures.append(f"holdout MAE {value:.4f} > max_holdout_mae {gate.max_holdout_mae}")
        agg = float(metrics.get("aggregate_error_pct", np.nan))
        if gate.max_abs_aggregate_error_pct is not None and not abs(agg) <= gate.max_abs_aggregate_error_pct:
            failures.append(
                f"|aggregate error| {abs(agg):.1f}% > max_abs_aggregate_error_pct "
                f"{gate.max_abs_aggregate_error_pct}%"
            )
    else:
        gate_c = rule.churn if kind == "churn" else rule.leads
        if not value >= gate_c.min_roc_auc:
            failures.append(f"ROC AUC {value:.4f} < min_roc_auc {gate_c.min_roc_auc}")
        ece = float(metrics.get("ece", np.nan))
        if gate_c.max_ece is not None and not ece <= gate_c.max_ece:
            failures.append(f"ECE {ece:.4f} > max_ece {gate_c.max_ece}")
    if failures:
        return False, "floor not met: " + "; ".join(failures)
    if champion_value is None or not np.isfinite(champion_value):
        if champion_version is not None:
            return True, f"champion v{champion_version} could not be scored on this window; every floor met"
        return True, "no champion to compare with; every floor met"
    ratio = rule.min_relative_to_champion
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    name = "ROC AUC" if higher else "holdout MAE"
    if higher:
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
# per-model steps
# ------------------------------------------------------------------------------------------


def _metric_dicts(table: pd.DataFrame) -> tuple[str, dict[str, float], dict[str, dict[str, float]]]:
    model_row = table.index[0]
    model = {k: float(v) for k, v in table.loc[model_row].items()}
    baselines = {str(i): {k: float(v) for k, v in table.loc[i].items()} for i in table.index[1:]}
    return str(model_row), model, baselines


def _best_baseline(
    baselines: Mapping[str, Mapping[str, float]], metric: str, higher: bool
) -> tuple[str | None, float | None]:
    vals = {k: v.get(metric, np.nan) for k, v in baselines.items()}
    vals = {k: v for k, v in vals.items() if np.isfinite(v)}
    if not vals:
        return None, None
    best = max(vals, key=vals.get) if higher else min(vals, key=vals.get)  # type: ignore[arg-type]
    return best, float(vals[best])


def _eval_rows(frame: pd.DataFrame, report: Any) -> pd.DataFrame:
    """Rows of ``frame`` the evaluation scored, in the order of ``report.predictions``."""
    if "cutoff" in frame.columns and frame["cutoff"].nunique() >= 2:
        cut = pd.to_datetime(frame["cutoff"], utc=True)
        return frame[(cut == cut.max()).to_numpy()]
    return frame.loc[report.predictions.index]


def _fit_classifier(kind: str, data: CRMData, as_of: date, cfg: Config) -> tuple[Any, pd.DataFrame, str]:
    from crmscore.pipelines.features import build_churn_training_set, build_lead_training_set

    if kind == "churn":
        from crmscore.estimators.churn import evaluate_churn, snapshot_churn_set

        if cfg.churn.definition == "label":
            if data.customers is None:
                raise ValueError("snapshot churn needs the customers table")
            frame = snapshot_churn_set(data.customers, cfg.churn)
        else:
            last = as_of - timedelta(days=cfg.churn.horizon_days)
            with stage(f"churn features at {cfg.features.cutoffs} cutoffs up to {last}"):
                frame = build_churn_training_set(data, last, cfg, observed_until=as_of)
        with stage(f"churn model: fit and out-of-time evaluation on {len(frame):,} rows"):
            rep = evaluate_churn(frame, cfg.churn, time_unit=cfg.features.time_unit)
        return rep, frame, "churn"
    if data.leads is None:
        raise ValueError("lead scoring needs the leads table")
    last = as_of - timedelta(days=cfg.leads.conversion_window_days)
    with stage(f"lead features at {cfg.features.cutoffs} cutoffs up to {last}"):
        frame = build_lead_training_set(data, last, cfg, observed_until=as_of)
    from crmscore.estimators.leads import evaluate_leads

    with stage(f"lead model: fit and out-of-time evaluation on {len(frame):,} rows"):
        rep = evaluate_leads(frame, cfg.leads)
    return rep, frame, "converted"


def _train_classifier(
    kind: str, data: CRMData, as_of: date, cfg: Config, ts: Any, workdir: Path, result: ModelResult
) -> None:
    from crmscore.evaluation.binary import binary_metrics
    from crmscore.tracking import prepare_input, save_classifier_bundle, slug

    rep, frame, label = _fit_classifier(kind, data, as_of, cfg)
    model_name, metrics, baselines = _metric_dicts(rep.metrics)
    metric, higher = PRIMARY[kind]
    result.metric, result.value = metric, metrics[metric]
    result.metrics, result.baselines, result.split = metrics, baselines, rep.split
    result.baseline, result.baseline_value = _best_baseline(baselines, metric, higher)
    ev = _eval_rows(frame, rep)
    y_ev = ev[label].astype(bool).to_numpy()
    result.rows = {
        "training_rows": int(rep.model.n_train_),
        "training_rows_available": int(getattr(rep.model, "n_train_available_", rep.model.n_train_)),
        "calibration_rows": int(rep.model.n_calibration_),
        "evaluation_rows": len(ev),
        "evaluation_positives": int(y_ev.sum()),
    }
    thresholds = dict(cfg.churn.risk_thresholds) if kind == "churn" else dict(cfg.leads.grade_thresholds)
    bundle_dir = save_classifier_bundle(rep.model, kind, workdir / kind, thresholds)

    ts.log_params(cfg.model_dump(mode="json")[kind], prefix=kind)
    ts.log_params({"evaluation.split": rep.split, **{f"rows.{k}": v for k, v in result.rows.items()}})
    ts.log_metrics(metrics)
    for b, vals in baselines.items():
        ts.log_metrics({f"baseline.{slug(b)}.{k}": v for k, v in vals.items()})
    ts.log_frame(rep.metrics, "evaluation/metrics.csv")
    ts.log_frame(rep.gains[model_name], "evaluation/gains.csv")
    importance = rep.model.feature_importance().rename("gain").to_frame()
    ts.log_frame(importance, "evaluation/feature_importance.csv")
    if rep.baseline_errors:
        ts.log_dict(rep.baseline_errors, "evaluation/baseline_errors.json")
    if cfg.training.log_plots:
        ts.log_figures(rep.figures())

    name = getattr(cfg.tracking.registered_names, kind)
    result.champion_version = ts.champion(name)
    if result.champion_version is not None:
        try:
            champ = ts.load_champion(name)
            bundle = champ.unwrap_python_model().bundle
            scores = champ.predict(prepare_input(bundle, ev))
            prob_col = "churn_probability" if kind == "churn" else "conversion_probability"
            result.champion_value = float(binary_metrics(y_ev, scores[prob_col].to_numpy())[metric])
        except Exception as exc:  # an incompatible champion must not block a retrain
            logger.warning("%s: champion v%s could not be scored: %s", name, result.champion_version, exc)
    logged = ts.log_model(bundle_dir, name, metadata={"as_of": str(as_of), "primary_metric": metric})
    result.registered_name, result.version = name, logged.version
    # the pyfunc must reproduce the in-memory model exactly, checked on (a seeded sample of)
    # the evaluation rows
    loaded = ts.load_version(name, logged.version)
    rows = ev if len(ev) <= _RELOAD_CHECK_ROWS else ev.sample(n=_RELOAD_CHECK_ROWS, random_state=0)
    check = loaded.predict(prepare_input(loaded.unwrap_python_model().bundle, rows))
    prob_col = "churn_probability" if kind == "churn" else "conversion_probability"
    mine = rep.model.predict_proba(rows.drop(columns=[label]))[:, 1]
    if not np.array_equal(check[prob_col].to_numpy(), mine):
        raise RuntimeError(f"{kind}: the logged pyfunc does not reproduce the fitted model's predictions")


def _train_clv(data: CRMData, as_of: date, cfg: Config, ts: Any, workdir: Path, result: ModelResult) -> None:
    from crmscore.estimators.clv.model import BGNBD_PARAMS, GG_PARAMS, ClvModel
    from crmscore.evaluation.clv import holdout_metrics
    from crmscore.features.btyd import calibration_and_holdout
    from crmscore.tracking import save_clv_bundle, slug

    if data.transactions is None:
        raise ValueError("CLV needs the transactions table")
    fc = cfg.features
    cal_end = as_of - timedelta(days=cfg.training.clv_holdout_days)
    with stage(f"CLV calibration summary to {cal_end} and holdout to {as_of}"):
        ch = calibration_and_holdout(
            data.transactions, cal_end, as_of, period=fc.period, time_unit=fc.time_unit, refunds=fc.refunds
        )
    if len(ch) == 0:
        raise ValueError(f"no customer with a purchase by {cal_end}: CLV cannot be fitted")
    summary = ch[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]].set_axis(
        ["frequency", "recency", "T", "monetary_value"], axis=1
    )
    with stage(f"CLV model: BG/NBD + Gamma-Gamma on {len(summary):,} customers"):
        model = ClvModel.from_config(cfg.clv, time_unit=fc.time_unit).fit(summary)
        hm = holdout_metrics(model, ch)
    metric, _ = PRIMARY["clv"]
    metrics = {k: float(v) for k, v in hm.loc["model"].items()}
    baselines = {str(i): {k: float(v) for k, v in hm.loc[i].items()} for i in hm.index if i != "model"}
    result.metric, result.value = metric, metrics[metric]
    result.metrics, result.baselines = metrics, baselines
    result.baseline, result.baseline_value = _best_baseline(baselines, metric, higher=False)
    result.split = (
        f"calibration to {cal_end}, holdout {cal_end + timedelta(days=1)} to {as_of} "
        f"({cfg.training.clv_holdout_days} days)"
    )
    result.rows = {
        "customers": len(summary),
        "repeat_buyers": int((summary["frequency"] > 0).sum()),
        "holdout_purchases": int(ch["frequency_holdout"].sum()),
    }
    se_bg = np.sqrt(np.clip(np.diag(model.bgnbd_cov_), 0, None))
    se_gg = np.sqrt(np.clip(np.diag(model.gg_cov_), 0, None))
    result.parameters = {
        "time_unit": model.time_unit,
        "bgnbd": {
            p: {"estimate": float(model.bgnbd_params_[p]), "se": float(s)}
            for p, s in zip(BGNBD_PARAMS, se_bg, strict=True)
        },
        "gamma_gamma": {
            p: {"estimate": float(model.gg_params_[p]), "se": float(s)}
            for p, s in zip(GG_PARAMS, se_gg, strict=True)
        },
        "log_likelihood": {
            "bgnbd": model.diagnostics_.get("bgnbd", {}).get("log_likelihood"),
            "gamma_gamma": model.diagnostics_.get("gamma_gamma", {}).get("log_likelihood"),
        },
        "converged": {
            "bgnbd": model.diagnostics_.get("bgnbd", {}).get("converged"),
            "gamma_gamma": model.diagnostics_.get("gamma_gamma", {}).get("converged"),
        },
    }
    bundle_dir = save_clv_bundle(model, workdir / "clv")

    ts.log_params(cfg.model_dump(mode="json")["clv"], prefix="clv")
    ts.log_params(
        {
            "features.period": fc.period,
            "features.time_unit": fc.time_unit,
            "training.clv_holdout_days": cfg.training.clv_holdout_days,
            "evaluation.split": result.split,
            **{f"rows.{k}": v for k, v in result.rows.items()},
        }
    )
    ts.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
    ts.log_metrics({metric: metrics[metric]})
    for b, vals in baselines.items():
        ts.log_metrics({f"baseline.{slug(b)}.holdout_{k}": v for k, v in vals.items()})
    for block in ("bgnbd", "gamma_gamma"):
        ts.log_metrics({f"param.{p}": v["estimate"] for p, v in result.parameters[block].items()})
        ts.log_metrics({f"param_se.{p}": v["se"] for p, v in result.parameters[block].items()})
    ts.log_frame(hm, "evaluation/holdout_metrics.csv")
    ts.log_dict(result.parameters, "clv_parameters.json")
    if cfg.training.log_plots:
        from crmscore.estimators.clv.plots import (
            plot_calibration_vs_holdout_purchases,
            plot_frequency_recency_matrix,
            plot_probability_alive_matrix,
        )

        T_med = float(np.median(summary["T"]))
        ts.log_figures(
            {
                "calibration_vs_holdout": plot_calibration_vs_holdout_purchases(model, ch),
                "frequency_recency": plot_frequency_recency_matrix(model, T_med),
                "probability_alive": plot_probability_alive_matrix(model, T_med),
            }
        )

    name = cfg.tracking.registered_names.clv
    result.champion_version = ts.champion(name)
    if result.champion_version is not None:
        try:
            champ = ts.load_champion(name).unwrap_python_model().bundle.model
            result.champion_value = float(holdout_metrics(champ, ch).loc["model", metric])
        except Exception as exc:
            logger.warning("%s: champion v%s could not be evaluated: %s", name, result.champion_version, exc)
    logged = ts.log_model(bundle_dir, name, metadata={"as_of": str(as_of), "primary_metric": metric})
    result.registered_name, result.version = name, logged.version
    check = ts.load_version(name, logged.version).predict(summary)
    mine = model.predict(summary)["predicted_clv"].to_numpy()
    if not np.array_equal(check["predicted_clv"].to_numpy(), mine):
        raise RuntimeError("clv: the logged pyfunc does not reproduce the fitted model's predictions")


# ------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------


def train_models(
    cfg: Config,
    as_of: date,
    *,
    only: Iterable[str] | None = None,
    data: CRMData | None = None,
    report: Any | None = None,
) -> TrainResult:
    """Retrain every requested model, log one parent run with a child run per model, register
    each new version as ``challenger`` and promote it to ``champion`` through the metric gate.

    Parameters
    ----------
    cfg : Config
        Reads ``features``, ``churn``, ``leads``, ``clv``, ``training`` and ``tracking``.
    as_of : date
        Training cutoff day (required: no implicit "now").
    only : iterable of str, optional
        Subset of ``churn``, ``leads``, ``clv`` (default ``training.models``).
    data, report : CRMData and ValidationReport, optional
        Already validated data; read and validated as of ``as_of`` when absent.

    Returns
    -------
    TrainResult
        A model that fails (a gate, too few rows, missing table) is recorded with
        ``status="failed"`` and its reason; the others still run.

    Raises
    ------
    DataUnusableError
        Validation found the data unusable.
    """
    from crmscore.tracking import TrackingSession, git_commit

    kinds = list(only) if only is not None else list(cfg.training.models)
    unknown = [k for k in kinds if k not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {', '.join(MODEL_KINDS)}")
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
    result = TrainResult(as_of=str(as_of), tracking_uri=session.tracking_uri, git_commit=commit, data=summary)
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
            res = ModelResult(kind=kind)
            result.models[kind] = res
            with ts.child_run(kind, tags={**tags, "crmscore.model": kind}) as run_id:
                res.run_id = run_id
                ts.log_dict(summary, "data_summary.json")
                try:
                    if kind == "clv":
                        _train_clv(data, as_of, cfg, ts, Path(tmp), res)
                    else:
                        _train_classifier(kind, data, as_of, cfg, ts, Path(tmp), res)
                except (ValueError, RuntimeError) as exc:
                    res.status, res.reason = "failed", f"{type(exc).__name__}: {exc}"
                    logger.error("%s: not trained: %s", kind, res.reason)
                    ts.set_tags({"crmscore.status": "failed", "crmscore.failure": res.reason[:4000]})
                else:
                    res.status = "trained"
                    _decide_and_tag(res, cfg, ts, run_id, as_of)
            if res.status == "failed" and res.run_id is not None:
                ts.mark_failed(res.run_id)
        ts.log_dict(result.to_dict(), "train_report.json")
        ts.set_tags({"crmscore.ok": result.ok})
    return result


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
