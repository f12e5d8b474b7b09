"""Orchestration of ``crmscore score``: champion models → features → scores → CRM write-back.

The @champion version of each model kind (:data:`crmscore.estimators.specs.SPECS`) is
resolved **once**, at the start, and the fixed version (``models:/name/N``, not the moving
alias) is loaded, so a promotion during the run cannot mix models. Every kind is optional: a
kind without a champion, or whose data this CRM lacks, is left out, its columns are NULL and
the run's notes (:attr:`ScoreRun.notes`, printed by the CLI) say why; the run fails only when
no kind can score. Without a CLV model the value at risk is the churn probability times the
last year's revenue (:func:`crmscore.scoring.rows.value_at_risk`); without a churn model there
is no value at risk and no worklist.

Every customer known at ``as_of`` and every lead open at ``as_of`` is scored, customers unseen
at training time included (flagged cold-start when their history is short). The written
scores are the loaded estimators' own predictions (``ModelSpec.predict``: the code the
registered pyfunc runs, without MLflow's conversion of a million rows to text and back).

Order of the work: features and their input checks against each customer model's training
record (:mod:`crmscore.scoring.input_checks`) → every customer kind's outputs (churn
probability, CLV and its interval) → open-lead features and their checks (a refusal of either
writes nothing) → customer score rows → churn reasons → open-lead scores → lead score rows →
commit → worklist. The write-back (:class:`crmscore.io.scores.ScoreWriter`, one transaction)
starts with the customer rows: on PostgreSQL the server stores them while the reasons and the leads
are computed, the explained customers' rows following once their reasons are known. Reasons
(exact LightGBM contributions, about 1 ms per row) are computed only for the customers someone
acts on: the top ``scoring.explain_top_n`` by value at risk, every worklist account, plus
``churn.explain_bands`` / ``churn.explain_top_n``; leads in ``leads.explain_grades``. Other rows
get ``top_reasons = None`` ("not explained in this run").

The run id is deterministic — a digest of ``as_of``, the model versions, the logical content of
the input tables at ``as_of`` and the scoring settings (:func:`_run_id`) — so scoring the same
data with the same models and settings again is a replay: it changes nothing. The content is
what the scores depend on (:func:`crmscore.core.digest.table_content_digest`): the rows known at
``as_of`` in any order, however stored, so a reordered read or a row dated after ``as_of`` is
still a replay; a changed value, model version or setting (:func:`_scoring_settings`) is a new
run.

The inputs are counted (:func:`input_counts`: rows per table, customers with a transaction in
the last 365 days, open leads to score) and handed to the writer with the run's record
(:class:`crmscore.io.scores.RunRecord`): it logs them in ``scoring.runs_table`` and, once it
holds the write lock and before any row, refuses a drop beyond ``scoring.max_input_drop``
since the run of the nearest earlier ``as_of`` (:class:`~crmscore.core.score_contract.InputGuardError`;
``force`` writes anyway, with a warning and a note).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import Config, TableConfig
from crmscore.core.digest import content_digests, settings_digest
from crmscore.core.progress import stage, timed_stage
from crmscore.core.schema import CRMData
from crmscore.estimators.classifier import CLASSIFIER_PARAMS
from crmscore.estimators.specs import SPECS, ModelSpec, get_spec
from crmscore.scoring.apply import (
    CustomerOutputs,
    LeadInputs,
    explain_mask,
    lead_inputs,
    reasons_of,
    score_customers,
    score_leads,
)
from crmscore.scoring.rows import assemble_customer_scores, assemble_lead_scores

__all__ = [
    "ChampionModel",
    "CustomerOutputs",
    "NoChampionError",
    "ScoreRun",
    "input_counts",
    "resolve_champions",
    "run_score",
]

log = logging.getLogger(__name__)


class NoChampionError(RuntimeError):
    """A registered model has no @champion version yet."""


@dataclass
class ChampionModel:
    """A champion model version loaded as an MLflow pyfunc, with its fitted estimator."""

    kind: str
    name: str
    version: int
    pyfunc: Any

    @property
    def spec(self) -> ModelSpec:
        """The kind's spec."""
        return get_spec(self.kind)

    @property
    def model(self) -> Any:
        """The fitted estimator behind the pyfunc (what :meth:`predict` runs)."""
        return self.pyfunc.unwrap_python_model().model

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """The kind's outputs for ``X`` (index ``X.index``): what is written."""
        return self.spec.predict(self.model, X)


@dataclass
class ScoreRun:
    """What one scoring run produced.

    ``timings`` holds the wall time (s) of each step: those of
    :func:`crmscore.scoring.apply.score_customers` / ``score_leads`` plus
    ``models`` (resolving and loading the champions), ``run_id`` (the digests of the input
    data and of the settings), ``assemble`` (previous scores, score rows), ``write``
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
    #: what this run left out and why (kinds without a champion or data, no worklist ...)
    notes: list[str] = field(default_factory=list)
    scored_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))
    #: the inputs counted for the input volume guard and the run log (:func:`input_counts`)
    input_counts: dict[str, Any] | None = None
    #: digest of the settings of the run, kept in the run log (None: not computed)
    settings_digest: str | None = None


def resolve_champions(
    cfg: Config, kinds: Iterable[str] | None = None, notes: list[str] | None = None
) -> dict[str, ChampionModel]:
    """Resolve and load the @champion version of each model kind once.

    A kind without a champion is left out (with a note in ``notes`` when given, and a
    warning); the others are loaded.

    Parameters
    ----------
    cfg : Config
        ``tracking`` block.
    kinds : iterable of str, optional
        Kinds to look up (default every kind).
    notes : list, optional
        Receives one line per kind left out.

    Raises
    ------
    NoChampionError
        No kind has a champion (run ``crmscore train`` first, or ``crmscore promote``).
    """
    from crmscore.tracking import TrackingSession

    models: dict[str, ChampionModel] = {}
    missing: list[str] = []
    with TrackingSession(cfg.tracking, must_exist=True) as ts:
        for kind in kinds if kinds is not None else SPECS:
            name = get_spec(kind).registered_name(cfg)
            version = ts.champion(name)
            if version is None:
                missing.append(name)
                _note(notes, f"{kind}: not scored: registered model {name!r} has no @champion version")
                continue
            with stage(f"loading {name} v{version}"):
                models[kind] = ChampionModel(kind, name, int(version), ts.load_version(name, int(version)))
    if not models:
        raise NoChampionError(
            f"no registered model has a @champion version ({', '.join(missing)}): run 'crmscore train' "
            "or 'crmscore promote KIND VERSION' first"
        )
    return models


def _kinds_of_this_crm(data: CRMData, cfg: Config) -> list[str]:
    """Every kind, less the CLV kind that ``clv.kind`` does not choose for this CRM.

    Only one of ``clv`` (transactional) and ``clv_contractual`` scores a CRM: the other is not
    looked up, so no note says it "has no champion" on a CRM it never applies to.
    """
    from crmscore.estimators.specs import clv_kind

    other = "clv_contractual" if clv_kind(data, cfg) == "transactional" else "clv"
    log.info("clv.kind %r: %s is not this CRM's lifetime-value kind", cfg.clv.kind, other)
    return [k for k in SPECS if k != other]


def _note(notes: list[str] | None, text: str) -> None:
    log.warning("%s", text)
    if notes is not None:
        notes.append(text)


def _usable(models: dict[str, ChampionModel], data: CRMData, cfg: Config, notes: list[str] | None) -> dict:
    """The champions whose data this CRM has (the others noted and left out)."""
    out = {}
    for kind, m in models.items():
        missing = m.spec.missing_data(data, cfg)
        if missing:
            _note(notes, f"{kind}: not scored: {missing}")
            continue
        out[kind] = m
    return out


def input_counts(data: CRMData, as_of: date, cfg: Config) -> dict[str, Any]:
    """The volume of a run's inputs: what the input volume guard compares between runs.

    Vectorised (one mask and one ``nunique`` over the transactions, masks over the leads).

    Returns
    -------
    dict
        ``tables``: rows per input table (after validation: at or before ``as_of``; on
        PostgreSQL the leads and their activities in the scoring scope);
        ``customers_active_365d``: customers with a transaction in the 365 days up to ``as_of``
        (with a transactions table); ``open_leads``: the open leads in the scoring population
        (with a leads table: created by the cutoff, not converted, conversion window still
        running unless ``leads.include_stale`` or ``leads.label_column``).
    """
    from crmscore.core.time import cutoff_end
    from crmscore.features.leads import open_lead_mask, window_closed_mask

    out: dict[str, Any] = {"tables": {name: len(df) for name, df in data.tables().items()}}
    end = cutoff_end(as_of)
    tx = data.transactions
    if tx is not None:
        ts = tx["ts"]
        recent = ((ts >= end - pd.Timedelta(days=365)) & (ts < end)).to_numpy(dtype=bool, na_value=False)
        out["customers_active_365d"] = int(tx["customer_id"][recent].nunique())
    leads = data.leads
    if leads is not None:
        scored = open_lead_mask(leads, as_of, open_only=True)
        lc = cfg.leads
        if not (lc.include_stale or lc.label_column is not None):
            scored &= ~window_closed_mask(leads, as_of, lc.conversion_window_days)
        out["open_leads"] = int(scored.sum())
    return out


def _run_record(run: ScoreRun, data: CRMData, cfg: Config) -> Any:
    """The run log's :class:`crmscore.io.scores.RunRecord` of ``run`` (the inputs counted here)."""
    from crmscore.io.scores import RunRecord

    run.input_counts = input_counts(data, run.as_of, cfg)
    return RunRecord(
        run.run_id,
        run.as_of,
        run.scored_at,
        model_versions=run.model_versions,
        input_counts=run.input_counts,
        settings_digest=run.settings_digest,
        notes=tuple(run.notes),
    )


#: keys that do not change a score: where the scores go and how they are written (``scoring``),
#: model fitting, training gates and training cutoffs (``churn``, ``leads``, ``features``),
#: where the data are read from (``data``; a table's ``name`` too)
_NOT_SCORING: dict[str, frozenset[str]] = {
    "scoring": frozenset(
        {
            "customer_scores_table",
            "customer_history_table",
            "lead_scores_table",
            "lead_history_table",
            "runs_table",
            "scores_folder",
            "chunksize",
            "lock_timeout_s",
            "idle_in_transaction_timeout_s",
        }
    ),
    "features": frozenset({"as_of", "cutoffs", "cutoff_step_days"}),
    # the fitting and gate keys of a classifier block (the model version stands for them)
    "classifier": frozenset({*CLASSIFIER_PARAMS, "holdout_fraction", "max_eval_auc"}),
    "data": frozenset({"source", "crm_url", "db_schema", "folder", "file_format", "quarantine", "tables"}),
}


def _scoring_settings(cfg: Config) -> dict[str, Any]:
    """The settings the scores depend on, as plain values (:func:`crmscore.core.digest.settings_digest`).

    Every key of ``scoring``, ``features``, ``churn``, ``leads`` and ``clv`` but those of
    :data:`_NOT_SCORING` (a key added later counts until it is listed there: a new run rather
    than a replay that keeps stale scores), and of ``data`` what changes the meaning of the
    inputs: the time zone of naive timestamps, the required tables and each table's column
    map, encoding and column roles.
    """
    out: dict[str, Any] = {
        "scoring": cfg.scoring.model_dump(mode="json", exclude=set(_NOT_SCORING["scoring"])),
        "features": cfg.features.model_dump(mode="json", exclude=set(_NOT_SCORING["features"])),
        "churn": cfg.churn.model_dump(mode="json", exclude=set(_NOT_SCORING["classifier"])),
        "leads": cfg.leads.model_dump(mode="json", exclude=set(_NOT_SCORING["classifier"])),
        "clv": cfg.clv.model_dump(mode="json"),
        "data": cfg.data.model_dump(mode="json", exclude=set(_NOT_SCORING["data"])),
    }
    tables = {t: tc.model_dump(mode="json", exclude={"name"}) for t, tc in sorted(cfg.data.tables.items())}
    default = TableConfig().model_dump(mode="json", exclude={"name"})
    out["data"]["tables"] = {t: d for t, d in tables.items() if d != default}  # (a name only: as absent)
    return out


def _run_id(
    as_of: date,
    models: dict[str, ChampionModel],
    data: CRMData,
    settings: str,
    input_digest: Mapping[str, str] | None,
) -> str:
    """The deterministic run id: 32 hex digits of SHA-256 over what the scores depend on.

    ``as_of``, the model names and versions, the content digest of each input table at
    ``as_of`` (``input_digest``'s when it has every table of ``data``, else computed here) and
    ``settings`` (:func:`_scoring_settings` digested).
    """
    present = list(data.tables())
    given = dict(input_digest or {})
    tables = (
        {t: given[t] for t in present} if all(t in given for t in present) else content_digests(data, as_of)
    )
    payload = {
        "as_of": str(as_of),
        "models": {k: [m.name, m.version] for k, m in sorted(models.items())},
        "data": {"content": tables},
        "settings": settings,
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
    force: bool = False,
) -> ScoreRun:
    """Score every customer and open lead at ``as_of`` with the champions there are, and write.

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
        ``ValidationReport.input_digest`` of ``data``, validated at this ``as_of``: its
        per-table content digests (computed by the validation from Arrow strings) enter the
        run id instead of digesting the validated tables again (same values, slower).
    force : bool
        Write even when an input guard refuses (the input volume dropped beyond
        ``scoring.max_input_drop``, inputs unlike a model's training data); logged as a warning
        and kept in the run's notes.

    Raises
    ------
    NoChampionError
        No kind has a champion, or none whose data this CRM has.
    """
    timings: dict[str, float] = {}
    notes: list[str] = []
    start = time.perf_counter()
    models = _usable(resolve_champions(cfg, _kinds_of_this_crm(data, cfg), notes=notes), data, cfg, notes)
    if not models:
        raise NoChampionError("no champion model can score this CRM: " + "; ".join(notes))
    timings["models"] = time.perf_counter() - start
    versions = {k: {"name": m.name, "version": m.version} for k, m in models.items()}
    start = time.perf_counter()
    settings = settings_digest(_scoring_settings(cfg))
    rid = run_id or _run_id(as_of, models, data, settings, input_digest)
    timings["run_id"] = time.perf_counter() - start
    run = ScoreRun(rid, as_of, None, None, versions, timings=timings, notes=notes, settings_digest=settings)
    customers = any(m.spec.target == "customer" for m in models.values())
    outputs = None
    if customers:  # the features of every kind are checked first (scoring.input_checks)
        outputs = score_customers(data, as_of, cfg, models, timings, force=force, notes=notes)
    leads_in = lead_inputs(data, as_of, cfg, models, timings, force=force, notes=notes)
    if outputs is None or not outputs.frames:
        _note(notes, "no customer model: customer scores are not written")
    _score_and_write(data, as_of, cfg, models, outputs, run, write_back, leads_in, force=force)
    with timed_stage("files", "writing the worklist and score files", timings):
        _write_files(run, data, cfg, output, worklist_dir)
    return run


def _score_and_write(
    data: CRMData,
    as_of: date,
    cfg: Config,
    models: dict[str, ChampionModel],
    outputs: CustomerOutputs | None,
    run: ScoreRun,
    write_back: bool,
    leads_in: LeadInputs | None = None,
    *,
    force: bool = False,
) -> None:
    """Assemble the score rows, compute the reasons and write everything in one transaction."""
    from crmscore.io.crm import create_engine

    to_crm = write_back and cfg.data.source == "crm"
    to_folder = write_back and cfg.data.source == "folder"  # the folder store (io.score_files)
    engine = create_engine(cfg.data.resolved_crm_url()) if to_crm else None
    timings = run.timings
    record = _run_record(run, data, cfg) if engine is not None or to_folder else None
    try:
        store = _folder_store(cfg) if to_folder else engine
        with _write_back(store, cfg, timings, record, force) as writer:
            if outputs is not None and outputs.frames:
                _customer_rows(engine, writer, as_of, cfg, outputs, run)
            leads = score_leads(leads_in, cfg, timings)
            if leads is not None:
                lead_model, lead_out = leads
                with timed_stage("assemble", "assembling the lead score rows", timings):
                    run.lead_scores = assemble_lead_scores(
                        lead_out,
                        as_of=as_of,
                        run_id=run.run_id,
                        model_version=run.model_versions[lead_model.kind],
                        scored_at=run.scored_at,
                    )
                if writer is not None:
                    writer.write("lead", run.lead_scores, lead_out.index)
    finally:
        if engine is not None:
            engine.dispose()
    run.written = None if writer is None else writer.result
    if writer is not None:
        run.notes += writer.result.notes  # guards overridden by force


def _customer_rows(
    engine: Any, writer: Any, as_of: date, cfg: Config, outputs: CustomerOutputs, run: ScoreRun
) -> None:
    """Customer score rows: assembled, sent, then completed with their reasons (in place on ``run``)."""
    from crmscore.io.score_files import FileScoreWriter, read_previous_score_files
    from crmscore.io.scores import read_previous_scores

    features, timings = outputs.features, run.timings
    explained, explain = explain_mask(outputs, cfg)  # reasons follow once the rows are on their way
    with timed_stage("assemble", "assembling the score rows", timings):
        if engine is not None:
            previous = read_previous_scores(engine, cfg.scoring, as_of=as_of, schema=cfg.data.db_schema)
        elif isinstance(writer, FileScoreWriter):  # a folder CRM: its scores folder
            previous = read_previous_score_files(writer.folder, as_of=as_of)
        else:
            previous = None
        scores = assemble_customer_scores(
            features,
            *outputs.all_frames(),
            as_of=as_of,
            run_id=run.run_id,
            model_versions=run.model_versions,
            scored_at=run.scored_at,
            previous=previous,
            cfg=cfg.scoring,
        )
        explained_ids = pd.Index(features.index[explain].astype(str))
        held = scores["customer_id"].isin(explained_ids).to_numpy()
    if writer is not None:
        # the rows go to the CRM while the reasons and the leads are computed
        writer.write("customer", scores, features.index, defer_reasons=held)
    reasons = pd.Series([], dtype=object)
    if explained is not None:
        with timed_stage("churn_reasons", "churn reasons", timings):
            n = getattr(cfg, explained.kind).n_reasons
            reasons = pd.Series(reasons_of(explained, features, explain, n), index=explained_ids).reindex(
                scores.loc[held, "customer_id"].to_numpy()
            )
    if writer is not None and held.any():
        writer.complete_reasons("customer", reasons.to_numpy(dtype=object))
    top = np.full(len(scores), None, dtype=object)
    top[held] = reasons.to_numpy(dtype=object)
    scores["top_reasons"] = top
    run.customer_scores = scores


def _write_files(
    run: ScoreRun, data: CRMData, cfg: Config, output: Path | None, worklist_dir: Path | None
) -> None:
    """``--output`` files and the customer-success worklist (without a churn model: a note)."""
    from crmscore.scoring.worklist import build_worklist, write_scores_file, write_worklist

    scores = run.customer_scores
    if output is not None:
        if scores is not None:
            run.files.append(write_scores_file(scores, output))
        if run.lead_scores is not None:
            lead_path = output.with_name(f"{output.stem}_leads{output.suffix}")
            run.files.append(write_scores_file(run.lead_scores, lead_path))
    if scores is None or scores["churn_probability"].isna().all():
        _note(run.notes, "worklist not written: it ranks churn risk, and no churn model scored this run")
        return
    if scores["value_at_risk"].isna().all():
        _note(
            run.notes,
            "no value at risk (no CLV model, no transactions): the worklist ranks by churn probability",
        )
    elif scores["predicted_clv"].isna().all():
        _note(run.notes, "no CLV model: value at risk = churn probability x revenue of the last 365 days")
    folder = worklist_dir or Path("reports")
    worklist = build_worklist(scores, data.customers, cfg.scoring)
    _check_worklist_explained(worklist, scores)
    run.files += write_worklist(
        worklist, folder / "worklist.csv", folder / "worklist.html", as_of=run.as_of, run_id=run.run_id
    )


def _folder_store(cfg: Config) -> Path:
    """The scores folder of a folder CRM (``scoring.scores_folder``)."""
    from crmscore.io.score_files import scores_folder

    return scores_folder(cfg)


@contextmanager
def _write_back(
    engine: Any, cfg: Config, timings: dict[str, float], record: Any = None, force: bool = False
) -> Iterator[Any]:
    """A :class:`crmscore.io.scores.ScoreWriter` on ``engine`` (None without one).

    ``engine`` a :class:`pathlib.Path` (``data.source: folder``): a
    :class:`crmscore.io.score_files.FileScoreWriter` on that scores folder instead.
    ``record`` (a :class:`crmscore.io.scores.RunRecord`) and ``force`` go to the writer.
    Its wait at the end (the rest of the transaction, the commit) is ``timings["write"]``.
    """
    if engine is None:
        yield None
        return
    from crmscore.io.score_files import FileScoreWriter
    from crmscore.io.scores import ScoreWriter

    writer: Any
    if isinstance(engine, Path):
        writer = FileScoreWriter(engine, cfg.scoring, run=record, force=force)
    else:
        writer = ScoreWriter(engine, cfg.scoring, schema=cfg.data.db_schema, run=record, force=force)
    writer.__enter__()
    try:
        yield writer
    except BaseException as exc:
        writer.__exit__(type(exc), exc, exc.__traceback__)  # rolls back, then the error goes on
        raise
    with timed_stage("write", "writing scores to the CRM (one transaction)", timings):
        writer.__exit__(None, None, None)


def _check_worklist_explained(worklist: pd.DataFrame, scores: pd.DataFrame) -> None:
    """Warn if a worklist account has no reasons (the explain rule guarantees they all have)."""
    shown = scores.loc[scores["customer_id"].isin(worklist["customer_id"]), "top_reasons"]
    if shown.isna().any():
        log.warning("%d worklist accounts have no reasons", int(shown.isna().sum()))
