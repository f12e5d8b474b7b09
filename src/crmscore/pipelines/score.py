"""Orchestration of ``crmscore score``: champion models → features → scores → CRM write-back.

The @champion version of each registered model is resolved **once**, at the start, and the
fixed version (``models:/name/N``, not the moving alias) is loaded, so a promotion during the
run cannot mix models. Every customer known at ``as_of`` and every lead open at ``as_of`` is
scored, customers unseen at training time included (flagged cold-start when their history is
short). The written churn probability is the registered pyfunc's prediction.

The run id is deterministic — a digest of ``as_of``, the model versions and the input data —
so scoring the same data with the same models again is a replay: it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from crmscore.config import Config
from crmscore.progress import stage
from crmscore.schema import CRMData

__all__ = ["ChampionModel", "NoChampionError", "ScoreRun", "resolve_champions", "run_score", "score_frames"]

log = logging.getLogger(__name__)

_BTYD = ["frequency", "recency", "T", "monetary_value"]


class NoChampionError(RuntimeError):
    """A registered model has no @champion version yet."""


@dataclass
class ChampionModel:
    """A champion model version loaded as an MLflow pyfunc, with its native bundle."""

    kind: str
    name: str
    version: int
    pyfunc: Any

    @property
    def bundle(self) -> Any:
        return self.pyfunc.unwrap_python_model().bundle


@dataclass
class ScoreRun:
    """What one scoring run produced."""

    run_id: str
    as_of: date
    customer_scores: pd.DataFrame | None
    lead_scores: pd.DataFrame | None
    model_versions: dict[str, dict[str, Any]]
    written: Any = None
    files: list[Path] = field(default_factory=list)


def resolve_champions(
    cfg: Config, kinds: tuple[str, ...] = ("churn", "clv", "leads"), optional: tuple[str, ...] = ("leads",)
) -> dict[str, ChampionModel]:
    """Resolve and load the @champion version of each model once.

    A model of ``optional`` without a champion is skipped with a warning (e.g. leads when the
    lead model could not be trained yet); any other is an error.

    Raises
    ------
    NoChampionError
        A model has no champion (run ``crmscore train`` first, or ``crmscore promote``).
    """
    from crmscore.tracking import TrackingSession, load_pyfunc

    models: dict[str, ChampionModel] = {}
    with TrackingSession(cfg.tracking) as ts:
        for kind in kinds:
            name = getattr(cfg.tracking.registered_names, kind)
            version = ts.champion(name)
            if version is None and kind in optional:
                log.warning("no @champion for %s: %s are not scored", name, kind)
                continue
            if version is None:
                raise NoChampionError(
                    f"registered model {name!r} has no @champion version: run 'crmscore train' "
                    f"or 'crmscore promote {kind}' first"
                )
            with stage(f"loading {name} v{version}"):
                models[kind] = ChampionModel(
                    kind, name, int(version), load_pyfunc(f"models:/{name}/{version}")
                )
    return models


def _require_columns(model: ChampionModel, frame: pd.DataFrame) -> None:
    features = list(model.bundle.features)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{model.kind} model {model.name} v{model.version}: input column(s) missing: {missing}"
        )


def _reasons(model: ChampionModel, X: pd.DataFrame, mask: Any, n: int) -> list[str | None]:
    from crmscore.estimators.reasons import rank_contributions, reasons_json

    out: list[str | None] = [None] * len(X)
    chosen = X.loc[mask]
    if len(chosen):
        ranked = rank_contributions(model.bundle.contributions(chosen), chosen, n=n)
        for pos, text in zip(mask.nonzero()[0], reasons_json(ranked, len(chosen)), strict=True):
            out[pos] = text
    return out


def _predict_explained(
    model: ChampionModel,
    X: pd.DataFrame,
    columns: tuple[str, str],
    explain_groups: tuple[str, ...],
    cfg: Any,
) -> pd.DataFrame:
    """The pyfunc's predictions for ``X`` plus ``top_reasons`` for the rows someone acts on.

    ``columns`` names the probability and the group (risk band or grade) columns; reasons are
    computed only for rows in ``explain_groups`` or the top ``cfg.explain_top_n``.
    """
    from crmscore.estimators.reasons import rows_to_explain
    from crmscore.tracking import prepare_input

    out = model.pyfunc.predict(prepare_input(model.bundle, X))
    out.index = X.index
    probability, group = columns
    mask = rows_to_explain(
        out[probability].to_numpy(),
        groups=out[group].to_numpy(),
        explain_groups=explain_groups,
        top_n=cfg.explain_top_n,
    )
    out["top_reasons"] = _reasons(model, X, mask, cfg.n_reasons)
    return out


def score_frames(
    data: CRMData, as_of: date, cfg: Config, models: dict[str, ChampionModel]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame, pd.DataFrame | None]:
    """Model outputs at ``as_of``: (features, churn_out, clv_out, clv_interval, lead_out)."""
    from crmscore.pipelines.features import build_feature_table, build_lead_features

    with stage(f"building features as of {as_of}"):
        features = build_feature_table(data, as_of, cfg)
    churn = models["churn"]
    _require_columns(churn, features)
    with stage(f"scoring churn for {len(features):,} customers"):
        churn_out = _predict_explained(
            churn, features, ("churn_probability", "churn_risk"), cfg.churn.explain_bands, cfg.churn
        )
    clv = models["clv"]
    buyers = features.loc[features["frequency"].notna(), _BTYD]
    with stage(f"scoring lifetime value for {len(buyers):,} customers"):
        clv_out = clv.pyfunc.predict(buyers)
        clv_out.index = buyers.index
        clv_interval = clv.bundle.model.predict_interval(buyers)
    lead_out = None
    if "leads" in models and data.leads is not None:  # optional: skipped without a champion
        leads = models["leads"]
        lead_features = build_lead_features(data, as_of, cfg)
        if len(lead_features):
            _require_columns(leads, lead_features)
            with stage(f"scoring {len(lead_features):,} open leads"):
                lead_out = _predict_explained(
                    leads,
                    lead_features,
                    ("conversion_probability", "lead_grade"),
                    cfg.leads.explain_grades,
                    cfg.leads,
                )
    return features, churn_out, clv_out, clv_interval, lead_out


def _run_id(as_of: date, models: dict[str, ChampionModel], data: CRMData) -> str:
    from crmscore.pipelines.train import data_digest

    payload = {
        "as_of": str(as_of),
        "models": {k: [m.name, m.version] for k, m in sorted(models.items())},
        "data": data_digest(data),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def run_score(
    data: CRMData,
    as_of: date,
    cfg: Config,
    *,
    output: Path | None = None,
    worklist_dir: Path | None = None,
    write_back: bool = True,
    run_id: str | None = None,
) -> ScoreRun:
    """Score every customer and open lead at ``as_of`` and write the results.

    Parameters
    ----------
    data : CRMData
        Validated CRM data (as of the scoring day).
    as_of : date
        Scoring day.
    cfg : Config
        Full configuration.
    output : Path, optional
        Also write the customer scores to this CSV or Parquet file (leads beside it).
    worklist_dir : Path, optional
        Where the customer-success worklist (CSV + HTML) goes; default ``reports/``.
    write_back : bool
        Write the scores to the CRM store (``data.source: crm``) in one transaction.
    run_id : str, optional
        Override the deterministic run id.
    """
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import read_previous_scores, write_scores
    from crmscore.scoring import assemble_customer_scores, assemble_lead_scores
    from crmscore.worklist import build_worklist, write_scores_file, write_worklist

    kinds = ("churn", "clv", "leads") if data.leads is not None else ("churn", "clv")
    models = resolve_champions(cfg, kinds)
    versions = {k: {"name": m.name, "version": m.version} for k, m in models.items()}
    rid = run_id or _run_id(as_of, models, data)
    scored_at = pd.Timestamp.now(tz="UTC")
    features, churn_out, clv_out, clv_interval, lead_out = score_frames(data, as_of, cfg, models)

    to_crm = write_back and cfg.data.source == "crm"
    engine = create_engine(cfg.data.resolved_crm_url()) if to_crm else None
    try:
        previous = (
            read_previous_scores(engine, cfg.scoring, as_of=as_of, run_id=rid, schema=cfg.data.db_schema)
            if engine is not None
            else None
        )
        customer_scores = assemble_customer_scores(
            features,
            churn_out,
            clv_out,
            clv_interval,
            as_of=as_of,
            run_id=rid,
            model_versions=versions,
            scored_at=scored_at,
            previous=previous,
            cfg=cfg.scoring,
        )
        lead_scores = (
            assemble_lead_scores(
                lead_out,
                as_of=as_of,
                run_id=rid,
                model_version=versions["leads"],
                scored_at=scored_at,
            )
            if lead_out is not None
            else None
        )
        run = ScoreRun(rid, as_of, customer_scores, lead_scores, versions)
        if engine is not None:
            with stage("writing scores to the CRM (one transaction)"):
                run.written = write_scores(
                    engine,
                    customer_scores,
                    lead_scores,
                    cfg=cfg.scoring,
                    schema=cfg.data.db_schema,
                    expected_customer_ids=features.index,
                    expected_lead_ids=None if lead_out is None else lead_out.index,
                )
        elif write_back:
            log.warning("data.source is a folder: scores are not written back (use --output)")
    finally:
        if engine is not None:
            engine.dispose()

    if output is not None:
        run.files.append(write_scores_file(customer_scores, output))
        if lead_scores is not None:
            lead_path = output.with_name(f"{output.stem}_leads{output.suffix}")
            run.files.append(write_scores_file(lead_scores, lead_path))
    folder = worklist_dir or Path("reports")
    worklist = build_worklist(customer_scores, data.customers, cfg.scoring)
    run.files += write_worklist(
        worklist, folder / "worklist.csv", folder / "worklist.html", as_of=as_of, run_id=rid
    )
    return run
