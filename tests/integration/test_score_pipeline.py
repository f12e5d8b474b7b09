"""``crmscore score`` end to end: champion models → scores written to SQLite and PostgreSQL.

The trained CRM is the session's shared one (``trained_project``, tests/integration/conftest.py:
3,000 customers, few trees); scoring only reads its registry. Which rows get reasons, as a
pure rule: unit/scoring/test_explain.py.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore.config import config_from_mapping
from crmscore.ingest.validation import load_validated
from crmscore.io.crm import create_engine, write_sql_tables
from crmscore.io.scores import read_scores
from crmscore.pipelines.score import run_score

AS_OF = date(2025, 12, 31)


@pytest.fixture
def trained(trained_project):
    """The session's SQLite CRM with a trained registry; returns (root, params dict, synthetic CRM)."""
    models = trained_project.report["models"]
    assert models["churn"]["status"] == "trained" and models["clv"]["status"] == "trained"
    return trained_project.root, trained_project.params, trained_project.crm


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CRMSCORE_CRM_URL", raising=False)


def _score(params: dict, root: Path, **kw):
    cfg = config_from_mapping(params)
    data, _ = load_validated(cfg, as_of=AS_OF)
    return cfg, data, run_score(data, AS_OF, cfg, worklist_dir=root / "reports", **kw)


def _tables(cfg) -> dict[str, pd.DataFrame]:
    engine = create_engine(cfg.data.resolved_crm_url())
    try:
        return {
            w: read_scores(engine, cfg.scoring, w, cfg.data.db_schema)
            for w in ("customer_scores", "customer_history", "lead_scores", "lead_history")
        }
    finally:
        engine.dispose()


def test_cli_scores_every_customer_and_writes_outputs(trained, env, monkeypatch, capsys):
    from crmscore.cli import main

    root, params, crm = trained  # root / "params.yaml" holds params
    monkeypatch.chdir(root)
    monkeypatch.setattr(
        sys, "argv", ["crmscore", "--params", "params.yaml", "score", "--as-of", "2025-12-31", "-o", "s.csv"]
    )
    with pytest.raises(SystemExit) as info:
        main()
    text = capsys.readouterr().out
    assert info.value.code == 0, text
    scores = pd.read_csv(root / "s.csv")
    known = crm.tables["customers"]["created_at"] < pd.Timestamp("2026-01-01", tz="UTC")
    assert len(scores) == int(known.sum()) and scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert (
        scores["value_at_risk"] - scores["churn_probability"] * scores["predicted_clv"].fillna(0)
    ).abs().max() < 1e-9
    assert (root / "reports" / "worklist.html").exists() and (root / "reports" / "worklist.csv").exists()
    tables = _tables(config_from_mapping(params))
    assert len(tables["customer_scores"]) == len(scores)


def test_written_score_equals_the_registered_pyfunc(trained, env):
    from crmscore.features.tables import build_feature_table, build_lead_features
    from crmscore.tracking import TrackingSession, load_pyfunc, prepare_input

    root, params, _ = trained
    cfg, data, run = _score(params, root)
    written = _tables(cfg)["customer_scores"].set_index("customer_id")
    features = build_feature_table(data, AS_OF, cfg)
    with TrackingSession(cfg.tracking):
        model = load_pyfunc(f"models:/{cfg.tracking.registered_names.churn}@champion")
        w = model.unwrap_python_model()
        expected = model.predict(prepare_input(w.spec, w.model, features))
        leads = load_pyfunc(f"models:/{cfg.tracking.registered_names.leads}@champion")
        lead_features = build_lead_features(data, AS_OF, cfg)
        w = leads.unwrap_python_model()
        lead_expected = leads.predict(prepare_input(w.spec, w.model, lead_features))
    expected.index = features.index
    got = written.loc[features.index, "churn_probability"].astype(float)
    # bit for bit: the pipeline scores with the estimator the pyfunc's predict calls
    np.testing.assert_array_equal(got.to_numpy(), expected["churn_probability"].to_numpy())
    written_leads = _tables(cfg)["lead_scores"].set_index("lead_id").loc[lead_features.index]
    np.testing.assert_array_equal(
        written_leads["conversion_probability"].astype(float).to_numpy(),
        lead_expected["conversion_probability"].to_numpy(),
    )
    assert (written_leads["lead_grade"].to_numpy() == lead_expected["lead_grade"].to_numpy()).all()
    assert (written["run_id"] == run.run_id).all()
    assert set(written["churn_model_version"].astype(str)) == {str(run.model_versions["churn"]["version"])}


def test_replay_changes_nothing(trained, env):
    root, params, _ = trained
    cfg, _, first = _score(params, root)
    before = _tables(cfg)
    _, _, again = _score(params, root)
    after = _tables(cfg)
    assert again.run_id == first.run_id
    assert again.written.history_inserted == {k: 0 for k in again.written.history_inserted}
    for name in before:
        cols = [c for c in before[name].columns if c != "scored_at"]
        pd.testing.assert_frame_equal(before[name][cols], after[name][cols])


def test_missing_model_input_column_fails_naming_it_and_writes_nothing(trained, env, monkeypatch):
    import crmscore.features.tables as feats

    root, params, _ = trained
    cfg = config_from_mapping(params)
    _score(params, root)
    before = _tables(cfg)
    real = feats.build_feature_table
    monkeypatch.setattr(
        feats, "build_feature_table", lambda *a, **k: real(*a, **k).drop(columns=["tenure_days"])
    )
    with pytest.raises(ValueError, match="tenure_days"):
        _score(params, root, run_id="another-run")
    after = _tables(cfg)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


@pytest.mark.postgres
def test_scores_written_to_postgres_match_sqlite(trained, env, pg_engine, pg_schema, monkeypatch):
    root, params, crm = trained
    write_sql_tables(pg_engine, crm.tables, schema=pg_schema)
    monkeypatch.setenv("CRMSCORE_CRM_URL", pg_engine.url.render_as_string(hide_password=False))
    pg_params = {**params, "data": {**params["data"], "db_schema": pg_schema}}
    cfg, _, run = _score(pg_params, root)
    assert run.written.latest_updated["customer_scores"] == len(run.customer_scores)
    pg = _tables(cfg)["customer_scores"].set_index("customer_id").sort_index()
    monkeypatch.delenv("CRMSCORE_CRM_URL")
    _score(params, root)
    lite = _tables(config_from_mapping(params))["customer_scores"].set_index("customer_id").sort_index()
    np.testing.assert_allclose(pg["churn_probability"].astype(float), lite["churn_probability"].astype(float))
    np.testing.assert_allclose(pg["predicted_clv"].astype(float), lite["predicted_clv"].astype(float))


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["lead scoring", "customer upsert"])
def test_postgres_failure_while_customer_rows_are_in_flight_writes_nothing(
    trained, env, pg_engine, pg_schema, monkeypatch, where
):
    """On PostgreSQL the customer rows are sent while the leads are scored: a failure of
    either side after that (the scoring in the caller's thread, the writer's own statements)
    rolls the whole run back."""
    import crmscore.io.scores as scores_io
    import crmscore.pipelines.score as score_mod

    root, params, crm = trained
    write_sql_tables(pg_engine, crm.tables, schema=pg_schema)
    monkeypatch.setenv("CRMSCORE_CRM_URL", pg_engine.url.render_as_string(hide_password=False))
    pg_params = {**params, "data": {**params["data"], "db_schema": pg_schema}}
    cfg, _, first = _score(pg_params, root)
    assert "wait" in first.written.timings  # the background writer was used
    before = _tables(cfg)
    if where == "lead scoring":

        def failing(*a, **k):
            raise RuntimeError(f"injected failure in {where}")

        monkeypatch.setattr(score_mod, "score_leads", failing)
    else:
        real = scores_io._upsert_latest

        def failing(conn, kind, hist, latest, params, ids=None):
            if kind.name == "customer":
                raise RuntimeError(f"injected failure in {where}")
            return real(conn, kind, hist, latest, params, ids)

        monkeypatch.setattr(scores_io, "_upsert_latest", failing)
    with pytest.raises(RuntimeError, match=f"injected failure in {where}"):
        _score(pg_params, root, run_id="another-run")
    after = _tables(cfg)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


def test_scoring_explains_top_value_at_risk_and_every_worklist_account(trained, env, caplog, tmp_path):
    import logging

    _, params, _ = trained
    small = {**params, "scoring": {"explain_top_n": 300, "worklist_top_n": 200}}
    cfg = config_from_mapping(small)
    data, _ = load_validated(cfg, as_of=AS_OF)
    with caplog.at_level(logging.INFO, logger="crmscore"):  # logged by crmscore.scoring.apply
        run = run_score(data, AS_OF, cfg, worklist_dir=tmp_path, write_back=False)
    scores = run.customer_scores
    explained = scores["top_reasons"].notna()
    ranked = scores.sort_values(
        ["value_at_risk", "churn_probability", "customer_id"], ascending=[False, False, True]
    )
    top = set(ranked.head(300)["customer_id"])
    worklist = pd.read_csv(tmp_path / "worklist.csv", dtype={"customer_id": str})
    assert top <= set(scores.loc[explained, "customer_id"])
    assert set(worklist["customer_id"]) <= set(scores.loc[explained, "customer_id"])
    assert explained.sum() == len(top | set(worklist["customer_id"])) < len(scores)  # nobody else
    message = f"reasons for {explained.sum():,} of {len(scores):,} customers: top 300 by value at risk"
    assert any(r.getMessage().startswith(message) for r in caplog.records), caplog.text
    assert "set scoring.explain_top_n or churn.explain_bands to explain more" in caplog.text
    for text in scores.loc[explained, "top_reasons"]:
        assert isinstance(json.loads(text), list)
