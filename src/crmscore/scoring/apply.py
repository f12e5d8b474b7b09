"""Apply loaded models to the feature tables at ``as_of``: outputs, intervals and reasons.

Every customer kind (``ModelSpec.target == "customer"``) scores its rows of the customer
feature table (``ModelSpec.select_rows``: CLV scores the customers with a purchase), with its
interval when it has one; the lead kind scores the open leads. A model here is anything with
``kind``, ``spec``, ``model`` and ``predict(X)`` (:class:`crmscore.pipelines.score.ChampionModel`).
Reasons are computed only for the rows someone acts on (:mod:`crmscore.scoring.explain`).
Before any model predicts, its rows are checked against its training record
(:mod:`crmscore.scoring.input_checks`: types, unseen levels, missing values); a refusal raises
:class:`~crmscore.core.score_contract.InputGuardError` unless ``force``, and the counts go to
the run's ``notes``. Nothing is read or written here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.core.progress import timed_stage
from crmscore.core.schema import CRMData
from crmscore.scoring.explain import churn_rows_to_explain

if TYPE_CHECKING:
    from crmscore.scoring.input_checks import InputCheckResult

__all__ = [
    "CustomerOutputs",
    "LeadInputs",
    "explain_mask",
    "lead_inputs",
    "reasons_of",
    "score_customers",
    "score_leads",
]

log = logging.getLogger(__name__)

ChampionModel = Any  # duck-typed: kind, spec, model, predict(X)


def _check(
    model: ChampionModel, rows: pd.DataFrame, cfg: Config, force: bool, notes: list[str] | None
) -> InputCheckResult:
    """The input checks of ``model`` on ``rows`` (:func:`~crmscore.scoring.input_checks.inspect_inputs`),
    their notes logged and added to ``notes``; the caller raises the refusals."""
    from crmscore.scoring.input_checks import inspect_inputs, profile_of

    result = inspect_inputs(
        model.kind, profile_of(model.spec, model.model), rows, cfg.scoring.input_checks, force=force
    )
    for f in result.findings:
        log.warning("%s", f.message)
    log.info("%s", result.summary())
    if notes is not None:
        notes += result.notes()
    return result


def _reasons(model: ChampionModel, X: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    """``top_reasons`` JSON for the rows of ``X`` where ``mask`` is set, None elsewhere."""
    out = np.full(len(X), None, dtype=object)
    out[np.flatnonzero(mask)] = reasons_of(model, X, mask, n)
    return out


def reasons_of(model: ChampionModel, X: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    """``top_reasons`` JSON of the rows of ``X`` where ``mask`` is set, in their order."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return np.empty(0, dtype=object)
    return np.array(model.model.reasons_json(X.iloc[rows], n=n), dtype=object)


def explain_mask(outputs: CustomerOutputs, cfg: Config) -> tuple[ChampionModel | None, np.ndarray]:
    """The customer model to explain and the rows to explain (:func:`churn_rows_to_explain`), logged."""
    model, features = outputs.explained, outputs.features
    if model is None:
        return None, np.zeros(len(features), dtype=bool)
    mask, why = churn_rows_to_explain(outputs.frames[model.kind], outputs.value_frame, cfg, features)
    n, k = len(mask), int(mask.sum())
    hint = "" if k == n else "; set scoring.explain_top_n or churn.explain_bands to explain more"
    log.info("reasons for %s of %s customers: %s%s", f"{k:,}", f"{n:,}", why, hint)
    return model, mask


def _explain_leads(
    model: ChampionModel, lead_features: pd.DataFrame, lead_out: pd.DataFrame, cfg: Config
) -> None:
    """Add ``top_reasons`` to ``lead_out`` (in place): ``leads.explain_grades`` and ``explain_top_n``."""
    from crmscore.estimators.reasons import rows_to_explain

    lc = getattr(cfg, model.kind)
    mask = rows_to_explain(
        lead_out["conversion_probability"].to_numpy(),
        groups=lead_out["lead_grade"].to_numpy(),
        explain_groups=lc.explain_grades,
        top_n=lc.explain_top_n,
    )
    why = [f"grades {', '.join(lc.explain_grades)}"] if lc.explain_grades else []
    if lc.explain_top_n:
        why.append(f"top {lc.explain_top_n:,} by conversion probability")
    log.info(
        "reasons for %s of %s open leads: %s",
        f"{int(mask.sum()):,}",
        f"{len(mask):,}",
        "; ".join(why) or "none (leads.explain_grades and leads.explain_top_n are empty)",
    )
    lead_out["top_reasons"] = _reasons(model, lead_features, mask, lc.n_reasons)


@dataclass
class CustomerOutputs:
    """Every customer kind's outputs at ``as_of`` (kind → frame, intervals beside)."""

    features: pd.DataFrame
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    intervals: dict[str, pd.DataFrame] = field(default_factory=dict)
    explained: ChampionModel | None = None

    def all_frames(self) -> list[pd.DataFrame]:
        """The output and interval frames, for the assembly."""
        return [*self.frames.values(), *self.intervals.values()]

    @property
    def value_frame(self) -> pd.DataFrame | None:
        """The frame holding ``predicted_clv`` (None without a CLV model)."""
        return next((f for f in self.frames.values() if "predicted_clv" in f.columns), None)


def score_customers(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    timings: dict[str, float] | None,
    *,
    force: bool = False,
    notes: list[str] | None = None,
) -> CustomerOutputs:
    """Features, their checks and every customer kind's outputs and intervals (no reasons yet).

    Every customer kind's rows are checked against its training record before any predicts
    (the notes go to ``notes``); with ``force`` an input absent from the features is scored
    as missing on every row.

    Raises
    ------
    InputGuardError
        An input check refuses (every refusal of every kind named) and not ``force``.
    """
    from crmscore.features.tables import build_feature_table
    from crmscore.scoring.input_checks import fill_absent, raise_refusals

    with timed_stage("features", f"building features as of {as_of}", timings):
        features = build_feature_table(data, as_of, cfg)
    kinds = {k: m for k, m in models.items() if m.spec.target == "customer"}
    with timed_stage("input_checks", "checking the customer features against the models", timings):
        results = [_check(m, m.spec.select_rows(features), cfg, force, notes) for m in kinds.values()]
        raise_refusals(results)
        for result in results:
            features = fill_absent(features, result)
    out = CustomerOutputs(features)
    for kind, model in kinds.items():
        spec = model.spec
        rows = spec.select_rows(features)
        with timed_stage(f"{kind}_predict", f"scoring {kind} for {len(rows):,} customers", timings):
            out.frames[kind] = model.predict(rows)
            if spec.interval is not None:
                out.intervals[kind] = spec.interval(model.model, rows)
        if spec.explainable and out.explained is None:
            out.explained = model
    return out


@dataclass
class LeadInputs:
    """The lead model and the checked features of the open leads it scores."""

    model: ChampionModel
    features: pd.DataFrame


def lead_inputs(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    timings: dict[str, float] | None,
    *,
    force: bool = False,
    notes: list[str] | None = None,
) -> LeadInputs | None:
    """The lead model and its open-lead features, checked against its training record.

    None without a lead champion or open leads. Built before anything is written, so that a
    refusal writes nothing (see :func:`score_customers` for ``force`` and ``notes``).

    Raises
    ------
    InputGuardError
        An input check refuses and not ``force``.
    """
    from crmscore.features.tables import build_lead_features
    from crmscore.scoring.input_checks import fill_absent, raise_refusals

    lead_models = [m for m in models.values() if m.spec.target == "lead"]
    if not lead_models or data.leads is None:
        return None
    leads = lead_models[0]
    with timed_stage("lead_features", "building open-lead features", timings):
        lead_features = build_lead_features(data, as_of, cfg)
    if not len(lead_features):
        return None
    with timed_stage("input_checks", "checking the open-lead features against the model", timings):
        result = _check(leads, lead_features, cfg, force, notes)
        raise_refusals([result])
    return LeadInputs(leads, fill_absent(lead_features, result))


def score_leads(
    inputs: LeadInputs | None, cfg: Config, timings: dict[str, float] | None
) -> tuple[ChampionModel, pd.DataFrame] | None:
    """The lead model and its open-lead scores with their reasons (None without ``inputs``:
    no lead champion or no open leads, see :func:`lead_inputs`)."""
    if inputs is None:
        return None
    leads, lead_features = inputs.model, inputs.features
    with timed_stage("lead_predict", f"scoring {len(lead_features):,} open leads", timings):
        lead_out = leads.predict(lead_features)
    with timed_stage("lead_reasons", "lead reasons", timings):
        _explain_leads(leads, lead_features, lead_out, cfg)
    return leads, lead_out
