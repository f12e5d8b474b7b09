"""The feature and training tables (crmscore.features.tables) and their writer: the pipeline
table, stacked training sets, and the same results on integer id codes as on the string ids."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from crmscore.config import Config
from crmscore.core.ids import encode_ids
from crmscore.core.schema import CRMData
from crmscore.features import tables as feature_pipeline
from crmscore.features.tables import (
    build_churn_training_set,
    build_feature_table,
    build_lead_training_set,
)
from crmscore.pipelines.features import write_feature_table

AS_OF = "2024-03-31"


def test_feature_table_and_writers(data, tmp_path):
    cfg = Config()
    f = build_feature_table(data, AS_OF, cfg)
    assert list(f.index) == ["a", "b", "c", "e"]
    for col in ("frequency", "recency", "T", "monetary_value", "rfm_segment", "recency_days", "n_purchases"):
        assert col in f.columns
    assert "churn" not in f.columns and "churned_at" not in f.columns
    assert f.loc["b", "T"] == pytest.approx(
        (pd.Timestamp("2024-03-31") - pd.Timestamp("2023-07-01")).days / 7
    )
    csv = write_feature_table(f, tmp_path / "out" / "f.csv")
    back = pd.read_csv(csv, index_col="customer_id")
    assert list(back.index) == list(f.index)
    pq = write_feature_table(f, tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(pq), f, check_index_type=False, check_dtype=False)
    with pytest.raises(ValueError, match="extension"):
        write_feature_table(f, tmp_path / "f.xlsx")
    only_customers = build_feature_table(CRMData(customers=data.customers), AS_OF, cfg)
    assert "frequency" not in only_customers.columns and len(only_customers) == 4


def test_stacked_training_sets(data):
    cfg = Config.model_validate(
        {"churn": {"definition": "contractual", "horizon_days": 29}, "leads": {"conversion_window_days": 30}}
    )
    train = build_churn_training_set(data, AS_OF, cfg, n_cutoffs=2, step_days=30)
    assert set(train["cutoff"]) == {
        pd.Timestamp("2024-03-01", tz="UTC"),
        pd.Timestamp("2024-03-31", tz="UTC"),
    }
    last = train[train["cutoff"] == pd.Timestamp("2024-03-31", tz="UTC")]
    assert last["churn"].to_dict() == {"a": True, "b": False, "e": False}
    assert train["churn"].dtype == np.bool_
    leads = build_lead_training_set(data, AS_OF, cfg, n_cutoffs=2, step_days=10)
    assert "converted" in leads.columns and "cutoff" in leads.columns
    assert "won" in leads.columns  # an attribute here: only excluded when it is the label column


# ----------------------------------------------------------- on integer id codes (fixture crm)


@pytest.mark.parametrize("as_of", ["2024-06-30", "2025-12-31"])
def test_feature_tables_equal_on_codes_and_strings(crm: CRMData, as_of: str) -> None:
    cfg = Config()
    on_codes = feature_pipeline.build_feature_table(crm, as_of, cfg)
    on_strings = feature_pipeline._feature_table(crm, as_of, cfg)  # the same functions on the raw ids
    pd.testing.assert_frame_equal(on_codes, on_strings, check_exact=True)
    leads_codes = feature_pipeline.build_lead_features(crm, as_of, cfg)
    scored = feature_pipeline._without_stale_leads(crm, as_of, cfg)
    leads_strings = feature_pipeline._lead_feature_table(scored, as_of, cfg)
    pd.testing.assert_frame_equal(leads_codes, leads_strings, check_exact=True)


def test_training_sets_equal_on_codes_and_strings(crm: CRMData, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    coded = feature_pipeline.build_churn_training_set(crm, "2025-09-30", cfg, observed_until="2025-12-31")
    leads_coded = feature_pipeline.build_lead_training_set(
        crm, "2025-09-30", cfg, observed_until="2025-12-31"
    )
    # the same pipeline with encoding switched off
    monkeypatch.setattr(feature_pipeline, "encode_ids", lambda data: (data, type(encode_ids(CRMData())[1])()))
    plain = feature_pipeline.build_churn_training_set(crm, "2025-09-30", cfg, observed_until="2025-12-31")
    leads_plain = feature_pipeline.build_lead_training_set(
        crm, "2025-09-30", cfg, observed_until="2025-12-31"
    )
    assert coded["churn"].sum() > 0 and leads_coded["converted"].sum() > 0
    pd.testing.assert_frame_equal(coded, plain, check_exact=True)
    pd.testing.assert_frame_equal(leads_coded, leads_plain, check_exact=True)


def test_scoring_leaves_out_open_leads_past_their_conversion_window(
    crm: CRMData, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    cfg = Config()
    as_of = pd.Timestamp("2025-12-31", tz="UTC")
    end = as_of + pd.Timedelta(days=1)
    leads = crm.leads
    open_ = (leads["created_at"] < end) & ~(leads["converted_at"] < end)
    running = leads["created_at"] + pd.Timedelta(days=cfg.leads.conversion_window_days) >= end
    with caplog.at_level(logging.INFO, logger="crmscore.features.tables"):
        scored = feature_pipeline.build_lead_features(crm, "2025-12-31", cfg)
    assert set(scored.index) == set(leads.loc[open_ & running, "lead_id"])
    n_stale = int((open_ & ~running).sum())
    assert n_stale > 0 and f"{n_stale:,} open leads are past their 90-day conversion window" in caplog.text
    # the model's population: the training labels keep the same leads (window still running)
    every = Config(leads={"include_stale": True})
    assert set(feature_pipeline.build_lead_features(crm, "2025-12-31", every).index) == set(
        leads.loc[open_, "lead_id"]
    )


# ----------------------------------------------------------- feature roles (crmscore.ingest.roles)


def _pii_crm(n: int = 150) -> CRMData:
    """``n`` customers and leads created over a year, with identifying and personal columns."""
    created = pd.Series(pd.date_range("2023-01-01", periods=n, freq="2D", tz="UTC"))
    plans = pd.array(["basic", "pro", "team"] * (n // 3), dtype="str")
    customers = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{i:04d}" for i in range(n)], dtype="str"),
            "created_at": created,
            "owner": pd.array(["Alex Meyer", "Bea Schmidt"] * (n // 2), dtype="str"),
            "email": pd.array([f"p{i}@example.com" for i in range(n)], dtype="str"),
            "ref": pd.array([f"R{i}" for i in range(n)], dtype="str"),  # near-unique over the whole table
            "plan": plans,
            "churn": [i % 3 == 0 for i in range(n)],
        }
    )
    tx = pd.DataFrame(
        {"customer_id": customers["customer_id"], "ts": created + pd.Timedelta(days=1), "amount": 10.0}
    )
    leads = pd.DataFrame(
        {
            "lead_id": pd.array([f"L{i:04d}" for i in range(n)], dtype="str"),
            "created_at": created,
            "converted_at": pd.Series([pd.NaT] * n, dtype="datetime64[ns, UTC]"),
            "sales_rep": pd.array(["Alex Meyer", "Bea Schmidt"] * (n // 2), dtype="str"),
            "contact_name": pd.array([f"Person {i}" for i in range(n)], dtype="str"),
            "source": pd.array(["web", "event"] * (n // 2), dtype="str"),
        }
    )
    return CRMData(customers=customers, transactions=tx, leads=leads)


EXCLUDED = {"owner", "email", "ref", "sales_rep", "contact_name"}


def test_non_feature_columns_are_absent_from_every_feature_table():
    crm = _pii_crm()
    cfg = Config.model_validate({"leads": {"include_stale": True}})
    tables = {
        "feature table": feature_pipeline.build_feature_table(crm, "2023-12-31", cfg),
        "churn training set": build_churn_training_set(crm, "2023-09-30", cfg, n_cutoffs=3, step_days=60),
        "lead features": feature_pipeline.build_lead_features(crm, "2023-12-31", cfg),
        "lead training set": build_lead_training_set(crm, "2023-09-30", cfg, n_cutoffs=2, step_days=60),
    }
    for what, table in tables.items():
        assert not EXCLUDED & set(table.columns), what
    assert "plan" in tables["feature table"] and "source" in tables["lead features"]
    # the decision is taken once on the whole table: at the earliest cutoff fewer than 100
    # customers are known (too few to judge 'ref' near-unique on them) and 'ref' is still absent
    first = tables["churn training set"]["cutoff"].min()
    assert (tables["churn training set"]["cutoff"] == first).sum() < 100
    from crmscore.features.snapshot import snapshot_churn_set

    snap = snapshot_churn_set(crm.customers, cfg.churn)
    assert "plan" in snap and not EXCLUDED & set(snap.columns)


def test_stored_and_declared_roles_decide():
    crm = _pii_crm()
    # roles stored at validation are used as they are: here plan is declared personal data
    stored = dataclasses.replace(crm, roles={"customers": {"plan": "pii", "email": "feature"}})
    f = build_feature_table(stored, "2023-12-31", Config())
    assert "plan" not in f.columns and "email" in f.columns
    # without stored roles the config's declarations opt a column back in (or out)
    cfg = Config.model_validate(
        {"data": {"tables": {"customers": {"roles": {"owner": "feature", "plan": "free_text"}}}}}
    )
    g = build_feature_table(crm, "2023-12-31", cfg)
    assert "owner" in g.columns and "plan" not in g.columns and "email" not in g.columns
