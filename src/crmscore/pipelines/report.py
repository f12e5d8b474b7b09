"""Orchestration of ``crmscore report``: latest scores and training summary, quick models, render.

The report itself (:mod:`crmscore.reporting`) fits nothing: it shows what it is given. This
module fits what it needs when no training summary or scores are at hand
(:func:`fit_quick_models`, on the data known at the report date):

* a CLV model at the report date, for the predicted lifetime value KPI (always, when there are
  transactions);
* without a training summary: a CLV model on a calibration period checked against the
  ``report.clv_holdout_days`` after it, and a quick churn model evaluated out of time
  (:func:`crmscore.estimators.churn.evaluate_churn`, ``report.quick_*``);
* without scores: the at-risk accounts from that churn model and the CLV model.

A model that cannot be fitted is recorded in :attr:`crmscore.reporting.content.QuickModels.errors`
(the report explains it) instead of stopping the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.reporting.build import build_report
from crmscore.reporting.content import QUICK_CHURN, QUICK_CLV, QUICK_CLV_HOLDOUT, QuickModels, ReportContent
from crmscore.reporting.html import write_report
from crmscore.reporting.kpis import active_customers, known_data

if TYPE_CHECKING:
    from crmscore.estimators.clv import ClvModel

__all__ = [
    "clv_holdout_check",
    "fit_clv_at",
    "fit_quick_models",
    "latest_scores",
    "quick_churn",
    "report_content",
    "run_report",
    "standalone_scores",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def latest_scores(cfg: Config) -> pd.DataFrame | None:
    """The latest customer scores written back to the CRM store, with owners; ``None`` if none.

    A CRM store (``data.source: crm``) holds them in its score tables, a folder CRM
    (``data.source: folder``) in its scores folder (``scoring.scores_folder``,
    :mod:`crmscore.io.score_files`), so the report shows the numbers of the worklist. Rows of
    customers absent from the newest run (``absent_since`` set, ``scoring.absent_rows: mark``)
    are left out: the report shows the customers the newest run scored.
    """
    if cfg.data.source == "folder":
        from crmscore.io.score_files import read_score_files, scores_folder

        scores = read_score_files(scores_folder(cfg), "customer_scores")
    else:
        from crmscore.io.crm import create_engine
        from crmscore.io.scores import read_scores

        engine = create_engine(cfg.data.resolved_crm_url())
        try:
            scores = read_scores(engine, cfg.scoring, "customer_scores", cfg.data.db_schema)
        finally:
            engine.dispose()
    if "absent_since" in scores.columns:
        absent = scores["absent_since"].notna()
        if absent.any():
            log.info("%d customers absent from the newest scoring run are left out", int(absent.sum()))
            scores = scores[~absent.to_numpy()]
    return None if scores.empty else scores


# ----------------------------------------------------------------------------------------------
# quick models
# ----------------------------------------------------------------------------------------------


def fit_clv_at(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> ClvModel:
    """CLV model (``cfg.clv``) fitted on the BTYD summary of the transactions at ``as_of``."""
    from crmscore.estimators.clv import ClvModel
    from crmscore.features.btyd import btyd_summary

    summ = btyd_summary(
        data.transactions, as_of, period="D", time_unit=cfg.features.time_unit, refunds=cfg.features.refunds
    )
    return ClvModel.from_config(cfg.clv, time_unit=cfg.features.time_unit).fit(summ)


def clv_holdout_check(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> tuple[ClvModel, pd.DataFrame]:
    """CLV model fitted up to ``as_of - report.clv_holdout_days`` and the calibration/holdout frame.

    Returns
    -------
    (ClvModel, DataFrame)
        The calibration model and :func:`crmscore.features.btyd.calibration_and_holdout` up to ``as_of``.
    """
    from crmscore.estimators.clv import ClvModel
    from crmscore.features.btyd import calibration_and_holdout

    cal_end = as_of - pd.Timedelta(days=cfg.report.clv_holdout_days)
    ch = calibration_and_holdout(
        data.transactions,
        cal_end,
        as_of,
        period="D",
        time_unit=cfg.features.time_unit,
        refunds=cfg.features.refunds,
    )
    summ = ch.rename(
        columns={
            "frequency_cal": "frequency",
            "recency_cal": "recency",
            "T_cal": "T",
            "monetary_value_cal": "monetary_value",
        }
    )
    model = ClvModel.from_config(cfg.clv, time_unit=cfg.features.time_unit)
    model.fit(summ[["frequency", "recency", "T", "monetary_value"]])
    return model, ch


def quick_churn(data: CRMData, as_of: pd.Timestamp, cfg: Config) -> Any:
    """Out-of-time evaluation of a small churn model (``report.quick_*``) on cutoffs before ``as_of``.

    Returns
    -------
    EvaluationReport
        :func:`crmscore.estimators.churn.evaluate_churn` output (``metrics``, ``split``,
        ``figures()``, fitted ``model``).
    """
    from crmscore.estimators.churn import evaluate_churn
    from crmscore.features.tables import build_churn_training_set

    last = as_of - pd.Timedelta(days=cfg.churn.horizon_days)
    frame = build_churn_training_set(
        data,
        last,
        cfg,
        n_cutoffs=cfg.report.quick_cutoffs,
        step_days=cfg.features.cutoff_step_days,
        observed_until=as_of,
    )
    ccfg = cfg.churn.model_copy(update={"n_estimators": cfg.report.quick_n_estimators, "n_jobs": 1})
    return evaluate_churn(frame, ccfg, time_unit=cfg.features.time_unit)


def standalone_scores(
    data: CRMData, as_of: pd.Timestamp, cfg: Config, churn_model: Any, clv: ClvModel | None
) -> pd.DataFrame:
    """The ``report.top_n`` active customers with the most value at risk under the quick models.

    Returns
    -------
    DataFrame
        ``customer_id``, ``churn_probability``, ``predicted_clv`` (0 without a CLV model),
        ``value_at_risk``, ``owner`` and ``top_reasons`` (JSON), ranked by value at risk.
    """
    from crmscore.estimators.reasons import reasons_json
    from crmscore.features.tables import build_feature_table

    X = build_feature_table(data, as_of, cfg)
    active = active_customers(data, cutoff_end(as_of), as_of, cfg.report)
    X = X[X.index.isin(active)]
    p = churn_model.predict_proba(X)[:, 1]
    clv_values = np.zeros(len(X))
    if clv is not None:
        ok = X[["frequency", "recency", "T"]].notna().all(axis=1).to_numpy()
        summ = X.loc[ok, ["frequency", "recency", "T", "monetary_value"]].fillna({"monetary_value": 0.0})
        clv_values[ok] = clv.predict(summ)["predicted_clv"].to_numpy()
    owner = (
        data.customers.drop_duplicates("customer_id").set_index("customer_id")["owner"].reindex(X.index)
        if data.customers is not None and "owner" in data.customers.columns
        else pd.Series(np.nan, index=X.index)
    )
    out = pd.DataFrame(
        {
            "churn_probability": p,
            "predicted_clv": clv_values,
            "value_at_risk": p * clv_values,
            "owner": owner.to_numpy(),
        },
        index=X.index,
    )
    out = out.sort_values("value_at_risk", ascending=False).head(cfg.report.top_n)
    long = churn_model.reasons(X.loc[out.index], n=3)
    out["top_reasons"] = reasons_json(long, len(out))
    return out.reset_index()


def _attempt(quick: QuickModels, what: str, fit: Callable[[], _T]) -> _T | None:
    """``fit()``, or None with the error recorded under ``what`` (the report must still render)."""
    try:
        return fit()
    except Exception as exc:  # the report must render even when a model cannot be fitted
        log.warning("%s failed: %s", what, exc)
        quick.errors[what] = f"{type(exc).__name__}: {exc}"
        return None


def _clv_check(known: CRMData, as_of: pd.Timestamp, cfg: Config, quick: QuickModels) -> None:
    from crmscore.estimators.clv.plots import plot_calibration_vs_holdout_purchases
    from crmscore.evaluation.clv import holdout_metrics

    model, ch = clv_holdout_check(known, as_of, cfg)
    quick.clv_holdout_metrics = holdout_metrics(model, ch)
    quick.clv_holdout_figure = plot_calibration_vs_holdout_purchases(model, ch)
    quick.bgnbd_params = dict(model.bgnbd_params_)
    quick.gg_params = dict(model.gg_params_)


def fit_quick_models(
    data: CRMData,
    as_of: DateLike,
    cfg: Config,
    *,
    model_summary: Mapping[str, Any] | None = None,
    scores: pd.DataFrame | None = None,
) -> QuickModels:
    """The model outputs the report needs beside ``model_summary`` and ``scores``.

    Fitted on the data known at ``as_of`` (:func:`crmscore.reporting.kpis.known_data`); nothing
    without transactions (the report then shows "no data" notes). See the module docstring for
    what is fitted when.

    Returns
    -------
    QuickModels
        Plain results for :func:`crmscore.reporting.build.build_report` (``quick=``); the errors
        of the models that could not be fitted.
    """
    as_of = as_of_day(as_of)
    known = known_data(data, as_of)
    quick = QuickModels()
    if known.transactions is None or not len(known.transactions):
        return quick
    quick.clv = _attempt(quick, QUICK_CLV, lambda: fit_clv_at(known, as_of, cfg))
    if model_summary is None:
        _attempt(quick, QUICK_CLV_HOLDOUT, lambda: _clv_check(known, as_of, cfg, quick))
    if model_summary is not None and scores is not None:
        return quick
    rep = _attempt(quick, QUICK_CHURN, lambda: quick_churn(known, as_of, cfg))
    if rep is None:
        return quick
    if model_summary is None:
        figs = rep.figures()
        quick.churn_metrics = rep.metrics
        quick.churn_split = rep.split
        quick.churn_figures = {k: figs[k] for k in ("gains", "calibration")}
    if scores is None:
        quick.scores = standalone_scores(known, as_of, cfg, rep.model, quick.clv)
    return quick


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------


def report_content(
    data: CRMData,
    as_of: DateLike,
    cfg: Config,
    *,
    model_summary: Mapping[str, Any] | None = None,
    scores: pd.DataFrame | None = None,
) -> ReportContent:
    """:func:`fit_quick_models` then :func:`crmscore.reporting.build.build_report` (same arguments)."""
    quick = fit_quick_models(data, as_of, cfg, model_summary=model_summary, scores=scores)
    return build_report(data, as_of, cfg, model_summary=model_summary, scores=scores, quick=quick)


def run_report(
    data: CRMData,
    as_of: date,
    cfg: Config,
    *,
    html_path: Path | None = None,
    json_path: Path | None = None,
    train_summary: Path | None = None,
    scores: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Build the KPI and model report and write the HTML and JSON files.

    Parameters
    ----------
    data : CRMData
        Validated CRM data.
    as_of : date
        Report date (cutoff day).
    cfg : Config
        Full configuration (``report`` block for paths and definitions).
    html_path, json_path : Path, optional
        Output files (default ``report.html_path`` / ``report.json_path``).
    train_summary : Path, optional
        The ``--report-json`` file of ``crmscore train``; without it quick models are fitted
        for the model-quality section (:func:`fit_quick_models`).
    scores : DataFrame, optional
        Latest customer scores; by default read from the CRM store when present.

    Returns
    -------
    (Path, Path)
        The HTML and JSON files written.
    """
    summary: dict[str, Any] | None = None
    if train_summary is not None:
        summary = json.loads(Path(train_summary).read_text(encoding="utf-8"))
    if scores is None:
        scores = latest_scores(cfg)
    if scores is not None and data.customers is not None and "owner" not in scores.columns:
        owners = data.customers.set_index("customer_id").get("owner")
        if owners is not None:
            scores = scores.assign(owner=scores["customer_id"].map(owners))
    content = report_content(data, as_of, cfg, model_summary=summary, scores=scores)
    return write_report(content, html_path or cfg.report.html_path, json_path or cfg.report.json_path)
