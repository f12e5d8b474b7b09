"""The model kinds, each declared once: what it needs, how it trains, what it outputs.

A :class:`ModelSpec` says everything the pipelines need to know about a kind: its name and
config block, which tables it needs (:attr:`ModelSpec.missing_data` says why a CRM cannot
support it), how its training set is built and evaluated (:attr:`ModelSpec.train`, returning
a :class:`TrainedModel`), its primary metric and direction, its promotion floors, its output
columns and whose rows it scores (customers or leads), its registered name, and how its bundle
is saved and loaded. ``crmscore train``, ``score``, ``export``, ``promote``/``rollback``, the
report and the CLI iterate over :data:`SPECS`; no other module lists the kinds.

Adding a kind: its estimator module (``estimators/<kind>.py``), one spec here (with its
``train`` function), its config block in :mod:`crmscore.config`, its tests.

Out-of-time discipline (every kind): nothing after ``as_of`` is read; the evaluation window is
the latest part of the data (the last cutoff for classifiers, the last
``training.clv_holdout_days`` for CLV) and the evaluated model never saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from crmscore.core.progress import stage
from crmscore.core.schema import CRMData
from crmscore.core.serial import slug

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crmscore.config import Config, PromotionConfig

__all__ = [
    "BTYD_COLUMNS",
    "KINDS",
    "SPECS",
    "ModelSpec",
    "TrainedModel",
    "clv_kind",
    "get_spec",
    "load_model",
    "signature_columns",
]

logger = logging.getLogger(__name__)


def _bundles() -> Any:
    from crmscore.estimators import bundles

    return bundles


#: The BTYD summary columns the CLV model scores.
BTYD_COLUMNS: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")

Columns = list[tuple[str, str]]


@dataclass
class TrainedModel:
    """A kind's model fitted and evaluated out of time (what the training pipeline tracks).

    Attributes
    ----------
    model : estimator
        The fitted model, exactly what is registered.
    metrics : dict
        The model's metrics on the evaluation window (the primary metric among them).
    baselines : dict
        Baseline name → its metrics on the same window.
    split : str
        How the evaluation window was chosen (stated with every metric).
    rows : dict
        Row counts of each part (training, calibration, evaluation ...).
    check_rows : DataFrame
        Evaluation rows on which a champion is compared and the registered version checked.
    champion_metric : callable
        ``f(other_model) -> float``: another model's primary metric on the same window.
    params, logged_metrics, frames, dicts : dict
        What to log to the model's MLflow run (params, metrics, CSV tables, JSON documents).
    figures : callable
        ``f() -> {name: Figure}``, the diagnostic plots (built only when plots are logged).
    parameters : dict
        Fitted parameters worth reporting (CLV: estimates with standard errors).
    """

    model: Any
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    split: str
    rows: dict[str, int]
    check_rows: pd.DataFrame
    champion_metric: Callable[[Any], float]
    params: dict[str, Any] = field(default_factory=dict)
    logged_metrics: dict[str, float] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    dicts: dict[str, Any] = field(default_factory=dict)
    figures: Callable[[], dict[str, Figure]] = dict
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one model kind (see the module docstring).

    Attributes
    ----------
    kind : str
        Name, also the config block (``cfg.<kind>``), the key of ``tracking.registered_names``
        and of ``training.promotion``.
    title : str
        The kind in words (report, messages).
    target : {"customer", "lead"}
        Whose rows the kind scores (``customer_scores`` or ``lead_scores``).
    needs : str
        The data it needs, in words (``crmscore train --help``, docs).
    primary_metric, higher_is_better, metric_label
        The metric that decides promotion, its direction and its name in messages.
    outputs : list of (column, type)
        Output columns of :attr:`predict` (MLflow signature types).
    estimator : type
        The estimator class (scikit-learn contract).
    missing_data : callable
        ``f(data, cfg) -> str | None``: why this CRM cannot support the kind (None: it can).
    train : callable
        ``f(data, as_of, cfg) -> TrainedModel``.
    floors : callable
        ``f(metrics, promotion_cfg) -> list of str``: the absolute floors not met.
    inputs : callable
        ``f(model) -> list of (column, type)``: the model's input signature.
    predict : callable
        ``f(model, X) -> DataFrame`` of :attr:`outputs` (index ``X.index``): the one
        prediction path of training checks, the registered pyfunc and scoring.
    save, load : callable
        ``save(model, folder) -> folder`` and ``load(folder) -> model`` (pickle-free bundle).
    select_rows : callable
        ``f(feature_table) -> rows this kind scores`` (CLV: the customers with a purchase,
        BTYD columns only); default every row.
    interval : callable or None
        ``f(model, rows) -> DataFrame`` of the outputs' interval bounds, when the kind has them.
    explainable : bool
        Whether per-row reasons (``model.reasons_json``) exist for the kind.
    profile : callable or None
        ``f(model) -> list of FeatureProfile``: what the model recorded of each input at
        training (kind, levels, missing share), compared with the scoring inputs
        (:mod:`crmscore.scoring.input_checks`); None: the input signature's types only.
    """

    kind: str
    title: str
    target: Literal["customer", "lead"]
    needs: str
    primary_metric: str
    higher_is_better: bool
    metric_label: str
    outputs: tuple[tuple[str, str], ...]
    estimator: type
    missing_data: Callable[[CRMData, Config], str | None]
    train: Callable[[CRMData, date, Config], TrainedModel]
    floors: Callable[[Mapping[str, float], PromotionConfig], list[str]]
    inputs: Callable[[Any], Columns]
    predict: Callable[[Any, pd.DataFrame], pd.DataFrame]
    save: Callable[[Any, Path], Path]
    load: Callable[[Path], Any]
    select_rows: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame
    interval: Callable[[Any, pd.DataFrame], pd.DataFrame] | None = None
    explainable: bool = False
    profile: Callable[[Any], list[Any]] | None = None

    def registered_name(self, cfg: Config) -> str:
        """The kind's registered model name (``tracking.registered_names.<kind>``)."""
        return str(getattr(cfg.tracking.registered_names, self.kind))

    @property
    def output_columns(self) -> list[str]:
        """Names of :attr:`outputs`."""
        return [c for c, _ in self.outputs]


# ------------------------------------------------------------------------------------------
# classifiers (churn, leads)
# ------------------------------------------------------------------------------------------


def _metric_dicts(table: pd.DataFrame) -> tuple[str, dict[str, float], dict[str, dict[str, float]]]:
    model_row = table.index[0]
    model = {k: float(v) for k, v in table.loc[model_row].items()}
    baselines = {str(i): {k: float(v) for k, v in table.loc[i].items()} for i in table.index[1:]}
    return str(model_row), model, baselines


def _classifier_floors(kind: str) -> Callable[[Mapping[str, float], PromotionConfig], list[str]]:
    def floors(metrics: Mapping[str, float], rule: PromotionConfig) -> list[str]:
        gate = getattr(rule, kind)
        out: list[str] = []
        value = float(metrics["roc_auc"])
        if not value >= gate.min_roc_auc:
            out.append(f"ROC AUC {value:.4f} < min_roc_auc {gate.min_roc_auc}")
        ece = float(metrics.get("ece", np.nan))
        if gate.max_ece is not None and not ece <= gate.max_ece:
            out.append(f"ECE {ece:.4f} > max_ece {gate.max_ece}")
        return out

    return floors


def _classifier_inputs(model: Any) -> Columns:
    cats = model.preparer_.categories_
    return [(c, "string" if c in cats else "double") for c in model.features]


def _classifier_trained(kind: str, rep: Any, label: str, cfg: Config) -> TrainedModel:
    """The tracked outcome of an evaluated classifier (``rep``: an ``EvaluationReport``)."""
    from crmscore.evaluation.binary import binary_metrics

    model_name, metrics, baselines = _metric_dicts(rep.metrics)
    ev = rep.evaluation
    y_ev = ev[label].astype(bool).to_numpy()
    rows = {
        "training_rows": int(rep.model.n_train_),
        "training_rows_available": int(getattr(rep.model, "n_train_available_", rep.model.n_train_)),
        "calibration_rows": int(rep.model.n_calibration_),
        "evaluation_rows": len(ev),
        "evaluation_positives": int(y_ev.sum()),
    }
    prob = SPECS[kind].outputs[0][0]

    def champion_metric(other: Any) -> float:
        return float(binary_metrics(y_ev, SPECS[kind].predict(other, ev)[prob].to_numpy())["roc_auc"])

    logged = dict(metrics)
    for b, vals in baselines.items():
        logged.update({f"baseline.{slug(b)}.{k}": v for k, v in vals.items()})
    frames = {
        "evaluation/metrics.csv": rep.metrics,
        "evaluation/gains.csv": rep.gains[model_name],
        "evaluation/feature_importance.csv": rep.model.feature_importance().rename("gain").to_frame(),
    }
    return TrainedModel(
        model=rep.model,
        metrics=metrics,
        baselines=baselines,
        split=rep.split,
        rows=rows,
        check_rows=ev.drop(columns=[label]),
        champion_metric=champion_metric,
        params={
            kind: cfg.model_dump(mode="json")[kind],
            "evaluation.split": rep.split,
            **{f"rows.{k}": v for k, v in rows.items()},
        },
        logged_metrics=logged,
        frames=frames,
        dicts={"evaluation/baseline_errors.json": rep.baseline_errors} if rep.baseline_errors else {},
        figures=rep.figures,
    )


def _churn_missing(data: CRMData, cfg: Config) -> str | None:
    definition = cfg.churn.definition
    customers = data.customers
    if definition == "label":
        if customers is None:
            return "churn.definition 'label' needs the customers table"
        if cfg.churn.label_column not in customers.columns:
            return f"churn.definition 'label' needs the column {cfg.churn.label_column!r} in customers"
        return None
    if definition == "contractual":
        if customers is None or "churned_at" not in customers.columns:
            return "churn.definition 'contractual' needs customers.churned_at"
        return None
    if data.transactions is None or not len(data.transactions):
        return "churn.definition 'inactivity' needs the transactions table"
    return None


def _train_churn(data: CRMData, as_of: date, cfg: Config) -> TrainedModel:
    from crmscore.estimators.churn import evaluate_churn
    from crmscore.features.snapshot import snapshot_churn_set
    from crmscore.features.tables import build_churn_training_set

    if cfg.churn.definition == "label":
        from crmscore.ingest.roles import roles_for

        roles = roles_for(data, "customers", cfg)
        frame = snapshot_churn_set(data.customers, cfg.churn, roles=roles)  # type: ignore[arg-type]
    else:
        last = as_of - timedelta(days=cfg.churn.horizon_days)
        with stage(f"churn features at {cfg.features.cutoffs} cutoffs up to {last}"):
            frame = build_churn_training_set(data, last, cfg, observed_until=as_of)
    with stage(f"churn model: fit and out-of-time evaluation on {len(frame):,} rows"):
        rep = evaluate_churn(frame, cfg.churn, time_unit=cfg.features.time_unit)
    return _classifier_trained("churn", rep, "churn", cfg)


def _leads_missing(data: CRMData, cfg: Config) -> str | None:
    if data.leads is None or not len(data.leads):
        return "lead scoring needs the leads table"
    return None


def _train_leads(data: CRMData, as_of: date, cfg: Config) -> TrainedModel:
    from crmscore.estimators.leads import evaluate_leads
    from crmscore.features.tables import build_lead_training_set

    last = as_of - timedelta(days=cfg.leads.conversion_window_days)
    with stage(f"lead features at {cfg.features.cutoffs} cutoffs up to {last}"):
        frame = build_lead_training_set(data, last, cfg, observed_until=as_of)
    with stage(f"lead model: fit and out-of-time evaluation on {len(frame):,} rows"):
        rep = evaluate_leads(frame, cfg.leads)
    return _classifier_trained("leads", rep, "converted", cfg)


def _classifier_spec(
    kind: str, title: str, estimator: type, target: Literal["customer", "lead"], needs: str, **kw: Any
) -> ModelSpec:
    return ModelSpec(
        kind=kind,
        title=title,
        target=target,
        needs=needs,
        primary_metric="roc_auc",
        higher_is_better=True,
        metric_label="ROC AUC",
        outputs=tuple(estimator.OUTPUTS),
        estimator=estimator,
        floors=_classifier_floors(kind),
        inputs=_classifier_inputs,
        predict=lambda model, X: model.predict_frame(X),
        save=lambda model, path: _bundles().save_classifier(model, kind, path),
        load=lambda path: _bundles().load_classifier(path, estimator),
        explainable=True,
        profile=lambda model: model.preparer_.profile(),
        **kw,
    )


# ------------------------------------------------------------------------------------------
# lifetime value (BG/NBD + Gamma-Gamma)
# ------------------------------------------------------------------------------------------


def _clv_missing(data: CRMData, cfg: Config) -> str | None:
    if clv_kind(data, cfg) == "contractual":
        return f"clv.kind {cfg.clv.kind!r} resolves to contractual on this CRM (kind clv_contractual)"
    if data.transactions is None or not len(data.transactions):
        return "lifetime value (BG/NBD + Gamma-Gamma) needs the transactions table"
    return None


def _contractual_inputs_missing(data: CRMData, cfg: Config) -> str | None:
    """Why the customers lack the contractual CLV inputs (None: they have them)."""
    cc, customers = cfg.clv, data.customers
    if customers is None:
        return "contractual lifetime value (sBG) needs the customers table"
    if cc.revenue_column is None:
        return "contractual lifetime value (sBG) needs clv.revenue_column (recurring revenue per month)"
    cols = set(customers.columns)
    need = [cc.revenue_column, *([cc.segment_column] if cc.segment_column else [])]
    need += [cc.tenure_column] if cc.tenure_column else []
    absent = [c for c in need if c not in cols]
    if absent:
        return f"contractual lifetime value (sBG): column(s) {absent} not in customers (see clv.* in params)"
    if cc.tenure_column is None and "created_at" not in cols:
        return "contractual lifetime value (sBG) needs clv.tenure_column or customers.created_at"
    churn_known = "churned_at" in cols or cfg.churn.label_column in cols
    if not churn_known:
        return (
            f"contractual lifetime value (sBG) needs customers.churned_at or the churn label column "
            f"{cfg.churn.label_column!r}"
        )
    return None


def clv_kind(data: CRMData, cfg: Config) -> Literal["transactional", "contractual"]:
    """The CLV model of this CRM (``clv.kind``; ``auto``: see :class:`crmscore.config.ClvConfig`).

    ``auto`` is contractual when the CRM has no (or an empty) transactions table and its
    customers have the contractual inputs (``clv.revenue_column``, a tenure, a churn label or
    ``churned_at``); transactional otherwise.
    """
    if cfg.clv.kind != "auto":
        return cfg.clv.kind
    no_tx = data.transactions is None or not len(data.transactions)
    return "contractual" if no_tx and _contractual_inputs_missing(data, cfg) is None else "transactional"


def _clv_floors(metrics: Mapping[str, float], rule: PromotionConfig) -> list[str]:
    gate = rule.clv
    out: list[str] = []
    value = float(metrics["mae"])
    if gate.max_holdout_mae is not None and not value <= gate.max_holdout_mae:
        out.append(f"holdout MAE {value:.4f} > max_holdout_mae {gate.max_holdout_mae}")
    agg = float(metrics.get("aggregate_error_pct", np.nan))
    if gate.max_abs_aggregate_error_pct is not None and not abs(agg) <= gate.max_abs_aggregate_error_pct:
        bound = gate.max_abs_aggregate_error_pct
        out.append(f"|aggregate error| {abs(agg):.1f}% > max_abs_aggregate_error_pct {bound}%")
    return out


def _clv_parameters(model: Any) -> dict[str, Any]:
    from crmscore.estimators.clv import BGNBD_PARAMS, GG_PARAMS

    se_bg = np.sqrt(np.clip(np.diag(model.bgnbd_cov_), 0, None))
    se_gg = np.sqrt(np.clip(np.diag(model.gg_cov_), 0, None))
    diag = model.diagnostics_
    return {
        "time_unit": model.time_unit,
        "bgnbd": {
            p: {"estimate": float(model.bgnbd_params_[p]), "se": float(s)}
            for p, s in zip(BGNBD_PARAMS, se_bg, strict=True)
        },
        "gamma_gamma": {
            p: {"estimate": float(model.gg_params_[p]), "se": float(s)}
            for p, s in zip(GG_PARAMS, se_gg, strict=True)
        },
        "log_likelihood": {k: diag.get(k, {}).get("log_likelihood") for k in ("bgnbd", "gamma_gamma")},
        "converged": {k: diag.get(k, {}).get("converged") for k in ("bgnbd", "gamma_gamma")},
    }


def _train_clv(data: CRMData, as_of: date, cfg: Config) -> TrainedModel:
    from crmscore.estimators.clv import ClvModel
    from crmscore.evaluation.clv import holdout_metrics
    from crmscore.features.btyd import calibration_and_holdout

    fc = cfg.features
    cal_end = as_of - timedelta(days=cfg.training.clv_holdout_days)
    with stage(f"CLV calibration summary to {cal_end} and holdout to {as_of}"):
        ch = calibration_and_holdout(
            data.transactions, cal_end, as_of, period=fc.period, time_unit=fc.time_unit, refunds=fc.refunds
        )
    if len(ch) == 0:
        raise ValueError(f"no customer with a purchase by {cal_end}: CLV cannot be fitted")
    summary = ch[[f"{c}_cal" for c in BTYD_COLUMNS]].set_axis(list(BTYD_COLUMNS), axis=1)
    with stage(f"CLV model: BG/NBD + Gamma-Gamma on {len(summary):,} customers"):
        model = ClvModel.from_config(cfg.clv, time_unit=fc.time_unit).fit(summary)
        hm = holdout_metrics(model, ch)
    metrics = {k: float(v) for k, v in hm.loc["model"].items()}
    baselines = {str(i): {k: float(v) for k, v in hm.loc[i].items()} for i in hm.index if i != "model"}
    split = (
        f"calibration to {cal_end}, holdout {cal_end + timedelta(days=1)} to {as_of} "
        f"({cfg.training.clv_holdout_days} days)"
    )
    rows = {
        "customers": len(summary),
        "repeat_buyers": int((summary["frequency"] > 0).sum()),
        "holdout_purchases": int(ch["frequency_holdout"].sum()),
    }
    parameters = _clv_parameters(model)
    logged = {f"holdout_{k}": v for k, v in metrics.items()}
    logged["mae"] = metrics["mae"]
    for b, vals in baselines.items():
        logged.update({f"baseline.{slug(b)}.holdout_{k}": v for k, v in vals.items()})
    for block in ("bgnbd", "gamma_gamma"):
        logged.update({f"param.{p}": v["estimate"] for p, v in parameters[block].items()})
        logged.update({f"param_se.{p}": v["se"] for p, v in parameters[block].items()})

    def figures() -> dict[str, Figure]:
        from crmscore.estimators.clv.plots import (
            plot_calibration_vs_holdout_purchases,
            plot_frequency_recency_matrix,
            plot_probability_alive_matrix,
        )

        T_med = float(np.median(summary["T"]))
        return {
            "calibration_vs_holdout": plot_calibration_vs_holdout_purchases(model, ch),
            "frequency_recency": plot_frequency_recency_matrix(model, T_med),
            "probability_alive": plot_probability_alive_matrix(model, T_med),
        }

    return TrainedModel(
        model=model,
        metrics=metrics,
        baselines=baselines,
        split=split,
        rows=rows,
        check_rows=summary,
        champion_metric=lambda other: float(holdout_metrics(other, ch).loc["model", "mae"]),
        params={
            "clv": cfg.model_dump(mode="json")["clv"],
            "features.period": fc.period,
            "features.time_unit": fc.time_unit,
            "training.clv_holdout_days": cfg.training.clv_holdout_days,
            "evaluation.split": split,
            **{f"rows.{k}": v for k, v in rows.items()},
        },
        logged_metrics=logged,
        frames={"evaluation/holdout_metrics.csv": hm},
        dicts={"clv_parameters.json": parameters},
        figures=figures,
        parameters=parameters,
    )


_CLV_OUTPUTS: tuple[tuple[str, str], ...] = (
    ("p_alive", "double"),
    ("expected_purchases", "double"),
    ("expected_avg_spend", "double"),
    ("predicted_clv", "double"),
    ("spend_imputed", "boolean"),
)


def _clv_predict(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in BTYD_COLUMNS if c not in X.columns]
    if missing:
        raise ValueError(f"clv model: column(s) missing: {missing}")
    return model.predict(X[list(BTYD_COLUMNS)])


def _clv_profile(model: Any) -> list[Any]:
    """The CLV inputs: numeric, never missing at training (the fit refuses missing values).

    Their range (finite, ``frequency`` a non-negative integer, ``0 <= recency <= T``) is the
    model's own check at prediction.
    """
    from crmscore.estimators.preparer import FeatureProfile

    return [FeatureProfile(c, "numeric", 0.0) for c in BTYD_COLUMNS]


# ------------------------------------------------------------------------------------------
# contractual lifetime value (sBG x recurring revenue)
# ------------------------------------------------------------------------------------------


def _clv_contractual_missing(data: CRMData, cfg: Config) -> str | None:
    why = _contractual_inputs_missing(data, cfg)
    if clv_kind(data, cfg) == "transactional":
        if cfg.clv.kind == "auto" and why and (data.transactions is None or not len(data.transactions)):
            return why
        return f"clv.kind {cfg.clv.kind!r} resolves to transactional on this CRM (kind clv)"
    return why


def _contractual_frame(data: CRMData, as_of: date, cfg: Config) -> pd.DataFrame:
    """Per customer: ``tenure`` (months), ``churned``, ``segment`` (None without one), the
    customers known by ``as_of`` with a tenure and a churn status."""
    from crmscore.estimators.contractual import DAYS_PER_MONTH

    cc, cust = cfg.clv, data.customers
    assert cust is not None
    end = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)
    if "created_at" in cust.columns:
        created = pd.to_datetime(cust["created_at"], utc=True)
        cust = cust[created.isna() | (created < end)]
    if "churned_at" in cust.columns:
        churned_at = pd.to_datetime(cust["churned_at"], utc=True)
        churned = (churned_at.notna() & (churned_at < end)).to_numpy()
    else:
        churned = cust[cfg.churn.label_column].astype("boolean").fillna(False).to_numpy(dtype=bool)
    if cc.tenure_column:
        tenure = np.floor(pd.to_numeric(cust[cc.tenure_column], errors="coerce").to_numpy(dtype=float))
    else:
        created = pd.to_datetime(cust["created_at"], utc=True)
        stop = pd.Series(end, index=cust.index)
        if "churned_at" in cust.columns:
            stop = pd.to_datetime(cust["churned_at"], utc=True).where(churned, end)
        days = (stop - created).dt.total_seconds().to_numpy(dtype=float) / 86400.0
        tenure = np.floor(days / DAYS_PER_MONTH) + 1.0
    frame = pd.DataFrame(
        {
            "tenure": tenure,
            "churned": churned,
            "segment": cust[cc.segment_column].astype(str).to_numpy() if cc.segment_column else None,
        },
        index=cust.index,
    )
    return frame[np.isfinite(frame["tenure"]) & (frame["tenure"] >= 1)]


def _geometric_nll(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """Mean negative log-likelihood of ``test`` under a constant monthly churn probability
    fitted on ``train`` (the geometric baseline; same censoring as the sBG)."""
    obs = np.where(train["churned"], train["tenure"], train["tenure"] - 1)
    keep = obs >= 1
    events = float(train["churned"][keep].sum())
    p = float(np.clip(events / max(float(obs[keep].sum()), 1.0), 1e-9, 1 - 1e-9))
    t = np.where(test["churned"], test["tenure"], test["tenure"] - 1)
    c = test["churned"].to_numpy(dtype=bool)
    ok = t >= 1
    ll = np.where(c, (t - 1) * np.log1p(-p) + np.log(p), t * np.log1p(-p))
    return float(-ll[ok].mean())


def _sbg_nll(model: Any, test: pd.DataFrame) -> float:
    """Mean negative sBG log-likelihood of the held-out customers (per segment parameters)."""
    from scipy.special import betaln

    t = np.where(test["churned"], test["tenure"], test["tenure"] - 1).astype(float)
    c = test["churned"].to_numpy(dtype=bool)
    ok = t >= 1
    if not ok.any():
        return float("nan")
    seg = test["segment"].to_numpy()[ok] if model.segment_column else None
    a, b = model.sbg._params(seg, int(ok.sum()))
    cc = c[ok].astype(float)
    ll = betaln(a + cc, b + t[ok] - cc) - betaln(a, b)
    return float(-np.mean(ll))


def _train_clv_contractual(data: CRMData, as_of: date, cfg: Config) -> TrainedModel:
    from crmscore.estimators.contractual import ContractualClvModel

    cc = cfg.clv
    frame = _contractual_frame(data, as_of, cfg)
    if len(frame) < 20 or not frame["churned"].any():
        raise ValueError(
            f"contractual CLV needs customers with a tenure and some churn events "
            f"(got {len(frame)} customers, {int(frame['churned'].sum())} churned)"
        )
    rng = np.random.default_rng(0)
    test_mask = rng.random(len(frame)) < cc.holdout_share
    train, test = frame[~test_mask], frame[test_mask]
    tenure_col = cc.tenure_column or "tenure_days"

    cust = data.customers
    assert cust is not None
    revenue = pd.to_numeric(cust[cc.revenue_column], errors="coerce")
    shares = {str(cc.revenue_column): float(revenue.isna().mean())}
    shares[tenure_col] = 1.0 - len(frame) / max(len(cust), 1)
    if cc.segment_column:
        shares[cc.segment_column] = float(cust[cc.segment_column].isna().mean())

    def fit(part: pd.DataFrame) -> ContractualClvModel:
        model = ContractualClvModel(
            tenure_col,
            str(cc.revenue_column),
            cc.segment_column,
            cc.discount_rate_annual,
            cc.horizon_months,
            missing_shares=shares,
        )
        return model.fit(part["tenure"], part["churned"], part["segment"] if cc.segment_column else None)

    with stage(f"contractual CLV: sBG on {len(train):,} customers, {len(test):,} held out"):
        evaluated = fit(train)
        nll = _sbg_nll(evaluated, test)
        base = _geometric_nll(train, test)
        model = fit(frame)
    split = (
        f"seeded random customer split: {len(train):,} fit, {len(test):,} held out "
        f"({cc.holdout_share:.0%}); the registered model is refitted on all {len(frame):,}"
    )
    metrics = {"holdout_nll": nll, "holdout_nll_gain_vs_geometric": base - nll}
    baselines = {"geometric (constant churn)": {"holdout_nll": base}}
    sbg = model.sbg
    parameters = {
        "period": cc.period,
        "sbg": {
            "alpha": {"estimate": float(sbg.alpha_), "se": float(sbg.se_.get("alpha", np.nan))},
            "beta": {"estimate": float(sbg.beta_), "se": float(sbg.se_.get("beta", np.nan))},
        },
        "segments": {
            k: {"alpha": v.get("alpha"), "beta": v.get("beta"), "fallback": v.get("fallback")}
            for k, v in sbg.segments_.items()
        },
        "log_likelihood": float(sbg.log_likelihood_),
        "converged": sbg.diagnostics_.get("converged"),
    }
    rows = {
        "customers": len(frame),
        "churned": int(frame["churned"].sum()),
        "fit_rows": len(train),
        "holdout_rows": len(test),
    }
    check = data.customers.loc[frame.index]  # type: ignore[union-attr]
    check_rows = pd.DataFrame(
        {
            tenure_col: (frame["tenure"] if cc.tenure_column else (frame["tenure"] - 1) * 30.4375).to_numpy(),
            str(cc.revenue_column): pd.to_numeric(check[cc.revenue_column], errors="coerce").to_numpy(),
            **({cc.segment_column: frame["segment"].to_numpy()} if cc.segment_column else {}),
        },
        index=frame.index,
    )
    logged = {**metrics, "baseline.geometric.holdout_nll": base}
    logged.update({f"param.{p}": v["estimate"] for p, v in parameters["sbg"].items()})
    logged.update({f"param_se.{p}": v["se"] for p, v in parameters["sbg"].items()})
    return TrainedModel(
        model=model,
        metrics=metrics,
        baselines=baselines,
        split=split,
        rows=rows,
        check_rows=check_rows,
        champion_metric=lambda other: _sbg_nll(other, test),
        params={
            "clv": cfg.model_dump(mode="json")["clv"],
            "evaluation.split": split,
            **{f"rows.{k}": v for k, v in rows.items()},
        },
        logged_metrics=logged,
        dicts={"clv_parameters.json": parameters},
        parameters=parameters,
    )


def _clv_contractual_floors(metrics: Mapping[str, float], rule: PromotionConfig) -> list[str]:
    value = float(metrics["holdout_nll"])
    if not np.isfinite(value):
        return [f"holdout NLL {value} is not finite"]
    gain, floor = float(metrics["holdout_nll_gain_vs_geometric"]), rule.clv_contractual.min_gain_vs_geometric
    if floor is not None and not gain >= floor:
        return [f"holdout NLL gain vs geometric {gain:.4f} < min_gain_vs_geometric {floor}"]
    return []


def _contractual_inputs(model: Any) -> Columns:
    out = [(model.tenure_column, "double"), (model.revenue_column, "double")]
    return out + ([(model.segment_column, "string")] if model.segment_column else [])


def _contractual_profile(model: Any) -> list[Any]:
    """Tenure and revenue numeric, the segment's levels those fitted (an unseen level is scored
    with the pooled fit, but is flagged like any unseen level)."""
    from crmscore.estimators.preparer import FeatureProfile

    share = model.missing_shares
    out = [
        FeatureProfile(model.tenure_column, "numeric", share.get(model.tenure_column)),
        FeatureProfile(model.revenue_column, "numeric", share.get(model.revenue_column)),
    ]
    if model.segment_column:
        levels = tuple(sorted(model.sbg.segments_))
        seg = model.segment_column
        out.append(FeatureProfile(seg, "categorical", share.get(seg), levels))
    return out


def _contractual_predict(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    return model.predict(X)


def _contractual_rows(features: pd.DataFrame) -> pd.DataFrame:
    return features


def _buyers(features: pd.DataFrame) -> pd.DataFrame:
    """The BTYD columns of the customers with a purchase (BG/NBD has no estimate for others)."""
    if "frequency" not in features.columns:
        return features.iloc[:0].reindex(columns=list(BTYD_COLUMNS))
    return features.loc[features["frequency"].notna(), list(BTYD_COLUMNS)]


def _build_specs() -> dict[str, ModelSpec]:
    from crmscore.estimators.churn import CalibratedChurnModel
    from crmscore.estimators.clv import ClvModel
    from crmscore.estimators.leads import LeadScoringModel

    churn = _classifier_spec(
        "churn",
        "Churn model",
        CalibratedChurnModel,
        "customer",
        "transactions (inactivity churn), customers.churned_at (contractual) or a label column (label)",
        missing_data=_churn_missing,
        train=_train_churn,
    )
    leads = _classifier_spec(
        "leads",
        "Lead scoring model",
        LeadScoringModel,
        "lead",
        "the leads table (lead_activities optional)",
        missing_data=_leads_missing,
        train=_train_leads,
    )
    clv = ModelSpec(
        kind="clv",
        title="Lifetime-value model",
        target="customer",
        needs="the transactions table",
        primary_metric="mae",
        higher_is_better=False,
        metric_label="holdout MAE",
        outputs=_CLV_OUTPUTS,
        estimator=ClvModel,
        missing_data=_clv_missing,
        train=_train_clv,
        floors=_clv_floors,
        inputs=lambda model: [(c, "double") for c in BTYD_COLUMNS],
        predict=_clv_predict,
        save=lambda model, path: _bundles().save_clv(model, "clv", path),
        load=_bundles().load_clv,
        select_rows=_buyers,
        interval=lambda model, rows: model.predict_interval(rows),
        profile=_clv_profile,
    )
    from crmscore.estimators.contractual import ContractualClvModel

    clv_contractual = ModelSpec(
        kind="clv_contractual",
        title="Contractual lifetime-value model (sBG)",
        target="customer",
        needs="customers with a tenure (clv.tenure_column or created_at), clv.revenue_column and a churn "
        "label or churned_at; no transactions (clv.kind)",
        primary_metric="holdout_nll",
        higher_is_better=False,
        metric_label="holdout NLL per customer",
        outputs=ContractualClvModel.OUTPUTS,
        estimator=ContractualClvModel,
        missing_data=_clv_contractual_missing,
        train=_train_clv_contractual,
        floors=_clv_contractual_floors,
        inputs=_contractual_inputs,
        predict=_contractual_predict,
        save=lambda model, path: _bundles().save_contractual(model, "clv_contractual", path),
        load=lambda path: _bundles().load_contractual(path),
        select_rows=_contractual_rows,
        profile=_contractual_profile,
    )
    return {s.kind: s for s in (churn, leads, clv, clv_contractual)}


#: The kinds' names, in training order (each has its spec in :func:`_build_specs`, checked
#: when the specs are built). Listing the names lets the CLI parse ``--only`` without
#: importing the estimators (scikit-learn, LightGBM) before it needs them.
KINDS: tuple[str, ...] = ("churn", "leads", "clv", "clv_contractual")


class _Specs(Mapping[str, ModelSpec]):
    """Kind → :class:`ModelSpec`, built on first use (keys known without importing anything)."""

    _built: dict[str, ModelSpec] | None = None

    def _specs(self) -> dict[str, ModelSpec]:
        if self._built is None:
            built = _build_specs()
            if tuple(built) != KINDS:
                raise RuntimeError(f"specs {tuple(built)} do not match KINDS {KINDS}")
            type(self)._built = built
        return self._built  # type: ignore[return-value]

    def __getitem__(self, kind: str) -> ModelSpec:
        if kind not in KINDS:
            raise KeyError(kind)
        return self._specs()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)

    def __contains__(self, kind: object) -> bool:
        return kind in KINDS


#: Every model kind, in training order: ``SPECS[kind]`` is its spec.
SPECS: Mapping[str, ModelSpec] = _Specs()


def get_spec(kind: str) -> ModelSpec:
    """The spec of ``kind``.

    Raises
    ------
    ValueError
        An unknown kind (the message lists the known ones).
    """
    try:
        return SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}: choose from {', '.join(SPECS)}") from None


def load_model(path: str | Path) -> tuple[ModelSpec, Any]:
    """Load a bundle folder: ``(spec of its kind, fitted model)``."""
    spec = get_spec(_bundles().bundle_kind(path))
    return spec, spec.load(Path(path))


def signature_columns(spec: ModelSpec, model: Any) -> tuple[Columns, Columns]:
    """MLflow signature ``(inputs, outputs)`` of a fitted ``model`` of ``spec``."""
    return spec.inputs(model), list(spec.outputs)
