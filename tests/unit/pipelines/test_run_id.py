"""The scoring run id (crmscore.pipelines.score._run_id): what the scores depend on, nothing else.

A replay (same id) for the same logical inputs however read; a new run for any value known at
``as_of``, model version or scoring setting that changes.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from crmscore.config import Config
from crmscore.core.digest import settings_digest
from crmscore.core.schema import CRMData
from crmscore.pipelines.score import ChampionModel, _run_id, _scoring_settings

AS_OF = date(2025, 6, 30)


@pytest.fixture(scope="module")
def validated() -> tuple[dict[str, pd.DataFrame], CRMData, dict[str, str]]:
    from crmscore.ingest.synth import generate
    from crmscore.ingest.validation import validate_tables

    raw = generate(300, seed=11).tables
    data, report = validate_tables(dict(raw), Config(), as_of=AS_OF, now="2026-01-01")
    return raw, data, report.input_digest


def _models(version: int = 1) -> dict[str, ChampionModel]:
    return {
        "churn": ChampionModel("churn", "crmscore-churn", version, None),
        "clv": ChampionModel("clv", "crmscore-clv", 3, None),
    }


def _id(data: CRMData, *, cfg: Config | None = None, version: int = 1, digest=None) -> str:
    settings = settings_digest(_scoring_settings(cfg or Config()))
    return _run_id(AS_OF, _models(version), data, settings, digest)


def _with(data: CRMData, **tables: pd.DataFrame) -> CRMData:
    return CRMData(**{**data.tables(), **tables})


def test_run_id_is_the_same_for_the_same_logical_inputs(validated) -> None:
    _, data, digest = validated
    base = _id(data)
    assert _id(data, digest=digest) == base  # the validation's digests = the validated tables'
    tx = data.transactions
    assert _id(_with(data, transactions=tx.sample(frac=1, random_state=1).reset_index(drop=True))) == base
    later = tx.iloc[[0]].assign(ts=pd.Timestamp("2025-07-01 08:00", tz="UTC"))
    assert _id(_with(data, transactions=pd.concat([tx, later], ignore_index=True))) == base
    customers = data.customers.copy()
    customers["region"] = customers["region"].astype("str")  # text stored as Arrow strings
    assert _id(_with(data, customers=customers)) == base
    # settings that do not change a score
    cfg = Config(
        scoring={"chunksize": 7, "lock_timeout_s": 5, "customer_scores_table": "cs"},
        churn={"n_estimators": 17, "n_jobs": 1},
        features={"cutoffs": 5},
        data={"crm_url": "sqlite:///elsewhere.sqlite", "tables": {"customers": {"name": "clients"}}},
    )
    assert _id(data, cfg=cfg) == base


def test_run_id_changes_with_a_known_value_a_model_version_or_a_setting(validated) -> None:
    _, data, _ = validated
    base = _id(data)
    tx = data.transactions.copy()
    tx.loc[0, "amount"] += 0.01
    assert _id(_with(data, transactions=tx)) != base
    assert _id(data, version=2) != base
    for cfg in (
        Config(
            scoring={"health_weights": {"retention": 0.7, "alive": 0.1, "engagement": 0.1, "support": 0.1}}
        ),
        Config(scoring={"trend_threshold": 0.1}),
        Config(churn={"risk_thresholds": {"high": 0.6, "medium": 0.3}}),
        Config(leads={"conversion_window_days": 60}),
        Config(features={"windows_days": [30, 90]}),
        Config(clv={"horizon_months": 6}),
        Config(data={"source_timezone": "Europe/Berlin"}),
        Config(data={"tables": {"customers": {"columns": {"owner": "account_owner"}}}}),
    ):
        assert _id(data, cfg=cfg) != base, cfg
    assert (
        _run_id(date(2025, 7, 1), _models(), data, settings_digest(_scoring_settings(Config())), None) != base
    )


def test_scoring_settings_leave_out_only_what_cannot_change_a_score() -> None:
    settings = _scoring_settings(Config())
    assert {"health_weights", "trend_threshold", "explain_top_n", "max_input_drop"} <= set(
        settings["scoring"]
    )
    assert not {"chunksize", "runs_table", "lock_timeout_s"} & set(settings["scoring"])
    assert "n_estimators" not in settings["churn"] and "risk_thresholds" in settings["churn"]
    assert "crm_url" not in settings["data"] and "source_timezone" in settings["data"]
