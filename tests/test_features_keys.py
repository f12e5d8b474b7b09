"""Integer id codes for the feature build: same results as on the string ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import Config
from crmscore.core.ids import decode_index, encode_ids, id_index, isin, sorted_unique
from crmscore.core.schema import CRMData
from crmscore.features import tables as feature_pipeline
from crmscore.ingest.synth import generate


@pytest.fixture(scope="module")
def crm() -> CRMData:
    from crmscore.ingest.validation import validate_tables

    raw = generate(1500, seed=7).tables
    data, report = validate_tables(raw, Config(), as_of="2025-12-31", now="2026-01-01")
    assert report.usable
    return data


def test_isin_matches_pandas() -> None:
    values = pd.Series(["a", "b", None, "c", "b"], dtype="str")
    test = pd.Series(["b", "x", "b", None], dtype=object)
    got = isin(values, test)
    assert got.tolist() == [False, True, False, False, True]
    assert isin(pd.Index([1, 2, 3]), [3, 3, 7]).tolist() == [False, False, True]
    assert isin(pd.Index(["a"]), []).tolist() == [False]
    assert isin(pd.Index([], dtype="str"), ["a"]).tolist() == []


def test_sorted_unique_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for x in (
        rng.integers(0, 50, 1000),
        rng.integers(0, 10**12, 1000),
        np.array([], dtype=np.int64),
        np.array([5]),
    ):
        np.testing.assert_array_equal(sorted_unique(x), np.unique(x))


def test_codes_follow_string_order_and_decode(crm: CRMData) -> None:
    enc, codes = encode_ids(crm)
    assert codes.customers is not None and codes.leads is not None
    assert codes.customers.is_monotonic_increasing and codes.customers.is_unique
    for table in ("customers", "transactions", "support_tickets"):
        col = enc.get(table)["customer_id"]
        assert col.dtype == np.int64
        back = decode_index(pd.Index(col.to_numpy()), codes.customers)
        assert back.tolist() == crm.get(table)["customer_id"].tolist()
    for table in ("leads", "lead_activities"):
        back = decode_index(pd.Index(enc.get(table)["lead_id"].to_numpy()), codes.leads)
        assert back.tolist() == crm.get(table)["lead_id"].tolist()
    # leads.customer_id is not a key of the lead features: left as it was
    assert enc.leads["customer_id"].tolist() == crm.leads["customer_id"].tolist()
    # the input is not modified
    assert crm.transactions["customer_id"].dtype != np.int64


def test_missing_ids_are_not_encoded() -> None:
    tx = pd.DataFrame({"customer_id": pd.Series(["a", None], dtype=object), "ts": pd.NaT, "amount": 1.0})
    data = CRMData(transactions=tx)
    enc, codes = encode_ids(data)
    assert codes.customers is None
    assert enc.transactions is tx


def test_id_index_keeps_codes_and_sorts_text() -> None:
    assert id_index(pd.Index([3, 1, 2]), "customer_id", sort=True).tolist() == [1, 2, 3]
    idx = id_index(pd.Index(["b", "a"], dtype=object), "lead_id", sort=True)
    assert idx.tolist() == ["a", "b"] and idx.dtype == "str" and idx.name == "lead_id"


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
