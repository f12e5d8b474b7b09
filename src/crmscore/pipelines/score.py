"""Orchestration of ``crmscore score``: champion models → features → scores → CRM write-back.

The @champion version of each registered model is resolved **once**, at the start, and the
fixed version (``models:/name/N``, not the moving alias) is loaded, so a promotion during the
run cannot mix models. Every customer known at ``as_of`` and every lead open at ``as_of`` is
scored, customers unseen at training time included (flagged cold-start when their history is
short). The written churn probability is the registered pyfunc's prediction (computed by
the loaded version's bundle, which the pyfunc's ``predict`` calls; see ``_predict``).

Order of the work: features → churn probability of every customer → CLV and its interval →
customer score rows → churn reasons → open leads → lead score rows → commit → worklist. The
write-back (:class:`crmscore.io.scores.ScoreWriter`, one transaction) starts with the customer
rows: on PostgreSQL the server stores them while the reasons and the leads are computed, the
explained customers' rows following once their reasons are known. Reasons (exact LightGBM
contributions, about 1 ms per row) are computed only for the customers someone acts on: the
top ``scoring.explain_top_n`` by value at risk (churn probability x CLV, hence after the CLV),
every worklist account, plus ``churn.explain_bands`` / ``churn.explain_top_n``; leads in
``leads.explain_grades``. Other rows get ``top_reasons = None`` ("not explained in this run").

The run id is deterministic — a digest of ``as_of``, the model versions and the input data —
so scoring the same data with the same models again is a replay: it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData

__all__ = [
    "ChampionModel",
    "NoChampionError",
    "ScoreRun",
    "churn_rows_to_explain",
    "resolve_champions",
    "run_score",
    "score_frames",
]

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
    """What one scoring run produced.

    ``timings`` holds the wall time (s) of each step: those of :func:`score_frames` plus
    ``models`` (resolving and loading the champions), ``run_id`` (the digest of the input
    data), ``assemble`` (previous scores, score rows), ``write``
    (:func:`crmscore.io.scores.write_scores`; its own stages are in ``written.timings``) and
    ``files`` (``--output`` and the worklist).
    """

    run_id: str
    as_of: date
    customer_scores: pd.DataFrame | None
    lead_scores: pd.DataFrame | None
    model_versions: dict[str, dict[str, Any]]
    written: Any = None
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


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


@contextmanager
def _stage(key: str, what: str, timings: dict[str, float] | None) -> Iterator[None]:
    """:func:`crmscore.core.progress.stage` that also adds the block's wall time to ``timings[key]``."""
    start = time.perf_counter()
    with stage(what):
        yield
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _predict(model: ChampionModel, X: pd.DataFrame) -> pd.DataFrame:
    """The registered model's predictions for ``X`` (index ``X.index``): what is written.

    The registered pyfunc's ``predict`` is its bundle's ``predict_frame`` behind MLflow's
    input-schema conversion (:func:`crmscore.tracking.prepare_input` turns the feature table
    into the signature's types). The feature table is already typed, so the bundle of the
    loaded version scores it directly: the same code and the same numbers (a test compares
    them bit for bit), without converting a million rows to text and back (3-4 s at 1M).
    """
    return model.bundle.predict_frame(X)


def _reasons(model: ChampionModel, X: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    """``top_reasons`` JSON for the rows of ``X`` where ``mask`` is set, None elsewhere."""
    out = np.full(len(X), None, dtype=object)
    out[np.flatnonzero(mask)] = _reasons_of(model, X, mask, n)
    return out


def _reasons_of(model: ChampionModel, X: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    """``top_reasons`` JSON of the rows of ``X`` where ``mask`` is set, in their order."""
    from crmscore.estimators.reasons import rank_contributions, reasons_json

    rows = np.flatnonzero(mask)
    if not len(rows):
        return np.empty(0, dtype=object)
    chosen = X.iloc[rows]
    ranked = rank_contributions(model.bundle.contributions(chosen), chosen, n=n)
    return np.array(reasons_json(ranked, len(rows)), dtype=object)


def churn_rows_to_explain(
    churn_out: pd.DataFrame, clv_out: pd.DataFrame | None, cfg: Config
) -> tuple[np.ndarray, str]:
    """Which customers get churn reasons, and why (for the log).

    Reasons cost about 1 ms per row, so they are computed for the rows someone acts on: the
    top ``scoring.explain_top_n`` customers by value at risk (churn probability x CLV, ranked
    as the worklist ranks them), every account of the worklist (``scoring.worklist_bands``,
    ``scoring.worklist_top_n``: already among those unless low-band customers hold much of
    the value at risk), plus the optional ``churn.explain_bands`` and ``churn.explain_top_n``
    (top by probability).

    Parameters
    ----------
    churn_out : DataFrame
        ``churn_probability`` and ``churn_risk`` of every customer (index: customer id).
    clv_out : DataFrame or None
        ``predicted_clv`` of the customers with a purchase (others have no CLV: value at risk 0).
    cfg : Config
        ``scoring`` and ``churn`` blocks.

    Returns
    -------
    (numpy.ndarray, str)
        Boolean mask aligned with ``churn_out`` and a description of the rule applied.
    """
    from crmscore.estimators.reasons import rows_to_explain
    from crmscore.scoring.rows import value_at_risk
    from crmscore.scoring.worklist import top_by_value_at_risk

    p = churn_out["churn_probability"].astype(np.float64)
    clv = (
        clv_out["predicted_clv"].astype(np.float64).reindex(churn_out.index)
        if clv_out is not None
        else pd.Series(np.nan, index=churn_out.index)
    )
    ranked = pd.DataFrame(
        {
            "customer_id": churn_out.index.astype(str).to_numpy(dtype=object),
            "value_at_risk": value_at_risk(p, clv).to_numpy(),
            "churn_probability": p.to_numpy(),
            "churn_risk": churn_out["churn_risk"].to_numpy(dtype=object),
        }
    )
    sc = cfg.scoring
    mask = np.zeros(len(ranked), dtype=bool)
    mask[top_by_value_at_risk(ranked, sc.explain_top_n).index.to_numpy()] = True
    why = [f"top {sc.explain_top_n:,} by value at risk"]
    worklist = top_by_value_at_risk(ranked, sc.worklist_top_n, bands=sc.worklist_bands).index.to_numpy()
    extra = int((~mask[worklist]).sum())
    if extra:
        mask[worklist] = True
        why.append(f"{extra:,} more worklist accounts")
    chosen = rows_to_explain(
        p.to_numpy(),
        groups=ranked["churn_risk"].to_numpy(),
        explain_groups=cfg.churn.explain_bands,
        top_n=cfg.churn.explain_top_n,
    )
    if cfg.churn.explain_bands:
        why.append(f"risk bands {', '.join(cfg.churn.explain_bands)}")
    if cfg.churn.explain_top_n:
        why.append(f"top {cfg.churn.explain_top_n:,} by churn probability")
    return mask | chosen, "; ".join(why)


def _explain_churn(
    model: ChampionModel,
    features: pd.DataFrame,
    churn_out: pd.DataFrame,
    clv_out: pd.DataFrame | None,
    cfg: Config,
) -> None:
    """Add ``top_reasons`` to ``churn_out`` (in place) for :func:`churn_rows_to_explain`."""
    mask = _churn_explain_mask(churn_out, clv_out, cfg)
    churn_out["top_reasons"] = _reasons(model, features, mask, cfg.churn.n_reasons)


def _churn_explain_mask(churn_out: pd.DataFrame, clv_out: pd.DataFrame | None, cfg: Config) -> np.ndarray:
    """:func:`churn_rows_to_explain`, logged."""
    mask, why = churn_rows_to_explain(churn_out, clv_out, cfg)
    n, k = len(mask), int(mask.sum())
    hint = "" if k == n else "; set scoring.explain_top_n or churn.explain_bands to explain more"
    log.info("reasons for %s of %s customers: %s%s", f"{k:,}", f"{n:,}", why, hint)
    return mask


def _explain_leads(
    model: ChampionModel, lead_features: pd.DataFrame, lead_out: pd.DataFrame, cfg: Config
) -> None:
    """Add ``top_reasons`` to ``lead_out`` (in place): ``leads.explain_grades`` and ``explain_top_n``."""
    from crmscore.estimators.reasons import rows_to_explain

    lc = cfg.leads
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


def score_frames(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame, pd.DataFrame | None]:
    """Model outputs at ``as_of``: (features, churn_out, clv_out, clv_interval, lead_out).

    Order: features; churn probabilities of every customer; CLV and its interval; then the
    churn reasons, whose rows are chosen by value at risk (:func:`churn_rows_to_explain`);
    then the open leads (features, scores, reasons for ``leads.explain_grades``).

    Parameters
    ----------
    data : CRMData
        Validated CRM data.
    as_of : date
        Scoring day.
    cfg : Config
        Full configuration.
    models : dict
        :func:`resolve_champions` output.
    timings : dict, optional
        Filled with the wall time (s) of each step: ``features``, ``churn_predict``, ``clv``,
        ``churn_reasons``, ``lead_features``, ``lead_predict``, ``lead_reasons``.
    """
    features, churn_out, clv_out, clv_interval = _score_customers(data, as_of, cfg, models, timings)
    with _stage("churn_reasons", "churn reasons", timings):
        _explain_churn(models["churn"], features, churn_out, clv_out, cfg)
    lead_out = _score_leads(data, as_of, cfg, models, timings)
    return features, churn_out, clv_out, clv_interval, lead_out


def _score_customers(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    timings: dict[str, float] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Features, churn probabilities, CLV and its interval (no reasons yet)."""
    from crmscore.pipelines.features import build_feature_table

    with _stage("features", f"building features as of {as_of}", timings):
        features = build_feature_table(data, as_of, cfg)
    churn = models["churn"]
    _require_columns(churn, features)
    with _stage("churn_predict", f"predicting churn for {len(features):,} customers", timings):
        churn_out = _predict(churn, features)
    clv = models["clv"]
    buyers = features.loc[features["frequency"].notna(), _BTYD]
    with _stage("clv", f"scoring lifetime value for {len(buyers):,} customers", timings):
        clv_out = _predict(clv, buyers)
        clv_interval = clv.bundle.model.predict_interval(buyers)
    return features, churn_out, clv_out, clv_interval


def _score_leads(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    timings: dict[str, float] | None,
) -> pd.DataFrame | None:
    """Open-lead scores with their reasons; None without a lead champion or open leads."""
    from crmscore.pipelines.features import build_lead_features

    if "leads" not in models or data.leads is None:  # optional: skipped without a champion
        return None
    leads = models["leads"]
    with _stage("lead_features", "building open-lead features", timings):
        lead_features = build_lead_features(data, as_of, cfg)
    if not len(lead_features):
        return None
    _require_columns(leads, lead_features)
    with _stage("lead_predict", f"scoring {len(lead_features):,} open leads", timings):
        lead_out = _predict(leads, lead_features)
    with _stage("lead_reasons", "lead reasons", timings):
        _explain_leads(leads, lead_features, lead_out, cfg)
    return lead_out


def _run_id(
    as_of: date, models: dict[str, ChampionModel], data: CRMData, input_digest: Mapping[str, str] | None
) -> str:
    if input_digest:
        digest = {"inputs": input_digest["all"]}
    else:
        from crmscore.pipelines.train import data_digest

        digest = data_digest(data)
    payload = {
        "as_of": str(as_of),
        "models": {k: [m.name, m.version] for k, m in sorted(models.items())},
        "data": digest,
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
    input_digest: Mapping[str, str] | None = None,
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
    input_digest : mapping, optional
        ``ValidationReport.input_digest`` of ``data``: the run id then digests the inputs as
        read (fast on Arrow-backed tables) instead of hashing the validated tables again.
    """
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import read_previous_scores
    from crmscore.scoring.rows import assemble_customer_scores, assemble_lead_scores
    from crmscore.scoring.worklist import build_worklist, write_scores_file, write_worklist

    kinds = ("churn", "clv", "leads") if data.leads is not None else ("churn", "clv")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    models = resolve_champions(cfg, kinds)
    timings["models"] = time.perf_counter() - start
    versions = {k: {"name": m.name, "version": m.version} for k, m in models.items()}
    start = time.perf_counter()
    rid = run_id or _run_id(as_of, models, data, input_digest)
    timings["run_id"] = time.perf_counter() - start
    scored_at = pd.Timestamp.now(tz="UTC")
    features, churn_out, clv_out, clv_interval = _score_customers(data, as_of, cfg, models, timings)
    explain = _churn_explain_mask(churn_out, clv_out, cfg)
    churn_out["top_reasons"] = None  # filled below, once the customer rows are on their way

    to_crm = write_back and cfg.data.source == "crm"
    engine = create_engine(cfg.data.resolved_crm_url()) if to_crm else None
    try:
        with _write_back(engine, cfg, timings) as writer:
            with _stage("assemble", "assembling the score rows", timings):
                previous = (
                    read_previous_scores(
                        engine, cfg.scoring, as_of=as_of, run_id=rid, schema=cfg.data.db_schema
                    )
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
                explained_ids = pd.Index(churn_out.index[explain].astype(str))
                held = customer_scores["customer_id"].isin(explained_ids).to_numpy()
            if writer is not None:
                # the rows go to the CRM while the reasons and the leads are computed
                writer.write("customer", customer_scores, features.index, defer_reasons=held)
            with _stage("churn_reasons", "churn reasons", timings):
                reasons = pd.Series(
                    _reasons_of(models["churn"], features, explain, cfg.churn.n_reasons), index=explained_ids
                ).reindex(customer_scores.loc[held, "customer_id"].to_numpy())
            if writer is not None and held.any():
                writer.complete_reasons("customer", reasons.to_numpy(dtype=object))
            lead_out = _score_leads(data, as_of, cfg, models, timings)
            lead_scores = None
            if lead_out is not None:
                with _stage("assemble", "assembling the lead score rows", timings):
                    lead_scores = assemble_lead_scores(
                        lead_out,
                        as_of=as_of,
                        run_id=rid,
                        model_version=versions["leads"],
                        scored_at=scored_at,
                    )
                if writer is not None:
                    writer.write("lead", lead_scores, lead_out.index)
        if writer is None and write_back:
            log.warning("data.source is a folder: scores are not written back (use --output)")
    finally:
        if engine is not None:
            engine.dispose()
    top = np.full(len(customer_scores), None, dtype=object)
    top[held] = reasons.to_numpy(dtype=object)
    customer_scores["top_reasons"] = top
    run = ScoreRun(rid, as_of, customer_scores, lead_scores, versions, timings=timings)
    run.written = None if writer is None else writer.result

    with _stage("files", "writing the worklist and score files", timings):
        if output is not None:
            run.files.append(write_scores_file(customer_scores, output))
            if lead_scores is not None:
                lead_path = output.with_name(f"{output.stem}_leads{output.suffix}")
                run.files.append(write_scores_file(lead_scores, lead_path))
        folder = worklist_dir or Path("reports")
        worklist = build_worklist(customer_scores, data.customers, cfg.scoring)
        _check_worklist_explained(worklist, customer_scores)
        run.files += write_worklist(
            worklist, folder / "worklist.csv", folder / "worklist.html", as_of=as_of, run_id=rid
        )
    return run


@contextmanager
def _write_back(engine: Any, cfg: Config, timings: dict[str, float]) -> Iterator[Any]:
    """A :class:`crmscore.io.scores.ScoreWriter` on ``engine`` (None without one).

    Its wait at the end (the rest of the transaction, the commit) is ``timings["write"]``.
    """
    if engine is None:
        yield None
        return
    from crmscore.io.scores import ScoreWriter

    writer = ScoreWriter(engine, cfg.scoring, schema=cfg.data.db_schema)
    writer.__enter__()
    try:
        yield writer
    except BaseException as exc:
        writer.__exit__(type(exc), exc, exc.__traceback__)  # rolls back, then the error goes on
        raise
    with _stage("write", "writing scores to the CRM (one transaction)", timings):
        writer.__exit__(None, None, None)


def _check_worklist_explained(worklist: pd.DataFrame, scores: pd.DataFrame) -> None:
    """Warn if a worklist account has no reasons (the explain rule guarantees they all have)."""
    shown = scores.loc[scores["customer_id"].isin(worklist["customer_id"]), "top_reasons"]
    if shown.isna().any():
        log.warning("%d worklist accounts have no reasons", int(shown.isna().sum()))
