"""Assembly of score rows (crmscore.scoring.rows): formulas, trend, cold start, intervals.

The checks of the assembled rows (crmscore.core.score_contract): core/test_score_contract.py.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from crmscore.core.score_contract import (
    CUSTOMER_SCORE_COLUMNS,
    LEAD_SCORE_COLUMNS,
    ScoreValidationError,
    check_customer_scores,
    check_lead_scores,
)
from crmscore.scoring.rows import assemble_customer_scores, assemble_lead_scores, health_score, trend_labels
from helpers import SCORED_AT, VERSIONS, assemble, small_inputs
from helpers import SCORING_CFG as CFG


def test_customer_rows_have_the_contract_columns_and_values():
    out = assemble().set_index("customer_id")
    assert list(out.reset_index().columns) == list(CUSTOMER_SCORE_COLUMNS)
    assert list(out.index) == ["C1", "C2", "C3"]
    assert (out["as_of"] == date(2026, 1, 31)).all()
    assert (out["scored_at"] == pd.Timestamp(SCORED_AT)).all()
    assert out.loc["C3", "value_at_risk"] == pytest.approx(0.6 * 40.0)
    assert out.loc["C1", "value_at_risk"] == pytest.approx(0.1 * 500.0)
    # no purchase: no CLV estimate (NULL) and nothing measured at risk
    assert np.isnan(out.loc["C2", "predicted_clv"]) and out.loc["C2", "value_at_risk"] == 0.0
    assert out.loc["C2", "rfm_segment"] == "No purchases"
    assert out.loc["C3", "predicted_clv_upper"] == 70.0
    assert json.loads(out.loc["C3", "top_reasons"])[0]["feature"] == "recency_days"
    assert pd.isna(out.loc["C1", "top_reasons"])
    assert set(out["trend"]) == {"new"}
    assert out[["churn_model", "churn_model_version", "clv_model", "clv_model_version"]].iloc[0].tolist() == [
        "crmscore-churn", "3", "crmscore-clv", "2",
    ]  # fmt: skip
    # cold start: C3 tenure 30 d and one purchase; C2 no purchase; C1 established
    assert out["cold_start"].to_dict() == {"C1": False, "C2": True, "C3": True}
    check_customer_scores(out.reset_index(), expected_ids=["C1", "C2", "C3"])


def test_inputs_are_not_modified():
    f, c, v, i = small_inputs()
    copies = [x.copy(deep=True) for x in (f, c, v, i)]
    assemble_customer_scores(
        f, c, v, i, as_of="2026-01-31", run_id="r", model_versions=VERSIONS, scored_at=SCORED_AT,
        previous=None, cfg=CFG,
    )  # fmt: skip
    for before, after in zip(copies, (f, c, v, i), strict=True):
        pd.testing.assert_frame_equal(before, after)


def test_health_score_formula_by_hand():
    f, c, v, _ = small_inputs()
    p = c["churn_probability"]
    alive = v["p_alive"].reindex(f.index)
    h = health_score(p, alive, f, CFG)
    w = CFG.health_weights
    # C1: retention .9, alive .9, engagement mean(0.5**0, (1+1)/2)=1, support mean(1/(1+0), (5-1)/4)=1
    c1 = (w["retention"] * 0.9 + w["alive"] * 0.9 + w["engagement"] * 1 + w["support"] * 1) / sum(w.values())
    assert h["C1"] == pytest.approx(round(100 * c1, 1))
    # C3: retention .4, alive .5, engagement mean(0.5**(60/60), 0)=.25, support mean(1/2)=.5
    c3 = (w["retention"] * 0.4 + w["alive"] * 0.5 + w["engagement"] * 0.25 + w["support"] * 0.5) / sum(
        w.values()
    )
    assert h["C3"] == pytest.approx(round(100 * c3, 1))
    # C2: only retention is known -> 100 * (1 - 0.3); missing measures neither reward nor penalise
    assert h["C2"] == pytest.approx(70.0)
    assert h.between(0, 100).all()


def test_trend_thresholds_and_new():
    now = pd.Series([0.50, 0.50, 0.50, 0.50], index=["a", "b", "c", "d"])
    prev = pd.Series([0.60, 0.45, 0.52, 0.40], index=["a", "b", "c", "x"])
    t = trend_labels(now, prev, threshold=0.05)
    assert t.to_dict() == {"a": "improving", "b": "declining", "c": "steady", "d": "new"}
    assert set(trend_labels(now, None, 0.05)) == {"new"}


def test_trend_against_previous_frame():
    prev = pd.DataFrame({"customer_id": ["C1", "C3"], "churn_probability": [0.3, 0.6]})
    out = assemble(previous=prev).set_index("customer_id")
    assert out["trend"].to_dict() == {"C1": "improving", "C2": "new", "C3": "steady"}


def test_lead_rows():
    lead_out = pd.DataFrame(
        {
            "conversion_probability": [0.8, 0.1],
            "lead_score": np.array([80, 10]),
            "lead_grade": ["A", "D"],
            "top_reasons": ["[]", None],
        },
        index=pd.Index(["L2", "L1"], name="lead_id"),
    )
    out = assemble_lead_scores(
        lead_out,
        as_of=date(2026, 1, 31),
        run_id="r",
        model_version=("crmscore-leads", "7"),
        scored_at=SCORED_AT,
    )
    assert list(out.columns) == list(LEAD_SCORE_COLUMNS)
    assert out["lead_id"].tolist() == ["L1", "L2"]
    assert out["model_version"].unique().tolist() == ["7"]
    check_lead_scores(out, expected_ids=["L1", "L2"])


def test_scored_at_must_be_aware_and_as_of_a_day():
    f, c, v, i = small_inputs()
    kw = {"run_id": "r", "model_versions": VERSIONS, "previous": None, "cfg": CFG}
    with pytest.raises(ValueError, match="timezone-aware"):
        assemble_customer_scores(f, c, v, i, as_of="2026-01-31", scored_at=datetime(2026, 2, 1), **kw)
    with pytest.raises(ValueError, match="must be a day"):
        assemble_customer_scores(f, c, v, i, as_of="2026-01-31 10:00", scored_at=SCORED_AT, **kw)


def test_interval_missing_its_point_is_widened_swapped_is_refused(caplog):
    f, c, v, i = small_inputs()
    kw = {"as_of": "2026-01-31", "run_id": "r", "model_versions": VERSIONS, "scored_at": SCORED_AT}
    miss = i.assign(predicted_clv_lower=[510.0, 20.0])  # C1: point 500 below the lower bound 510
    with caplog.at_level("WARNING", logger="crmscore.scoring.rows"):
        out = assemble_customer_scores(f, c, v, miss, previous=None, cfg=CFG, **kw).set_index("customer_id")
    assert out.loc["C1", "predicted_clv_lower"] == 500.0 and out.loc["C1", "predicted_clv_upper"] == 650.0
    assert "1 intervals did not contain the point estimate" in caplog.text
    swapped = i.rename(
        columns={"predicted_clv_lower": "predicted_clv_upper", "predicted_clv_upper": "predicted_clv_lower"}
    )
    with pytest.raises(ScoreValidationError, match=r"predicted_clv: 2 rows with lower > upper"):
        assemble_customer_scores(f, c, v, swapped, previous=None, cfg=CFG, **kw)


def test_real_model_outputs_assemble_write_and_rank(tmp_path):
    """The contract with the estimators: real churn and CLV outputs → rows → SQLite → worklist."""
    from crmscore.config import ChurnConfig, Config
    from crmscore.core.schema import CRMData
    from crmscore.estimators.churn import CalibratedChurnModel
    from crmscore.estimators.clv import ClvModel
    from crmscore.features.tables import build_churn_training_set, build_feature_table
    from crmscore.ingest.synth import generate
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import read_scores, write_scores
    from crmscore.scoring.worklist import build_worklist

    synth = generate(1000, seed=3, leads_per_customer=0.5)
    t = synth.tables
    data = CRMData(
        customers=t["customers"], transactions=t["transactions"], support_tickets=t["support_tickets"]
    )
    cfg = Config()
    train = build_churn_training_set(
        data, "2025-06-30", cfg, n_cutoffs=3, step_days=90, observed_until="2025-12-31"
    )
    # the model explains whole risk bands only when asked (default: none; `crmscore score`
    # picks the rows by value at risk): ask for the bands the worklist shows
    churn_cfg = ChurnConfig(
        min_rows=200, min_positives=30, min_calibration_positives=10, n_estimators=40, num_leaves=7, n_jobs=1,
        explain_bands=("high", "medium"),
    )  # fmt: skip
    model = CalibratedChurnModel.from_config(churn_cfg).fit(
        train.drop(columns=["churn"]), train["churn"].to_numpy()
    )
    feats = build_feature_table(data, "2025-09-30", cfg)
    summary = feats.loc[feats["frequency"].notna(), ["frequency", "recency", "T", "monetary_value"]]
    clv = ClvModel(n_bootstrap=20).fit(summary)
    churn_out = model.predict_frame(feats)
    risky = churn_out["churn_risk"].isin(["high", "medium"]).to_numpy()
    reasons = pd.Series(model.reasons_json(feats[risky]), index=feats.index[risky], dtype=object)
    churn_out["top_reasons"] = reasons.reindex(feats.index)
    out = assemble_customer_scores(
        feats, churn_out, clv.predict(summary), clv.predict_interval(summary),
        as_of="2025-09-30", run_id="it-1", model_versions=VERSIONS, scored_at=SCORED_AT, previous=None,
        cfg=cfg.scoring,
    )  # fmt: skip
    check_customer_scores(out, expected_ids=feats.index)
    engine = create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    write_scores(engine, out, cfg=cfg.scoring, expected_customer_ids=feats.index)
    back = read_scores(engine, cfg.scoring)
    assert len(back) == len(feats) and back["top_reasons"].notna().any()
    assert np.allclose(back["value_at_risk"], back["churn_probability"] * back["predicted_clv"].fillna(0))
    wl = build_worklist(back, t["customers"], cfg.scoring)
    assert wl["value_at_risk"].is_monotonic_decreasing and wl["owner"].notna().all()
    assert wl["reasons"].str.contains("↑").any()
    assert back.loc[back["churn_risk"].isin(["high", "medium"]), "top_reasons"].notna().all()
    assert back.loc[back["churn_risk"] == "low", "top_reasons"].isna().all()
