"""Which churn rows get reasons (crmscore.scoring.explain): top value at risk, the worklist,
risk bands and the top probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.config import config_from_mapping


def _policy_frames(n: int = 1000, seed: int = 0):
    """Churn and CLV outputs where low-band customers hold much of the value at risk."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"C{i:04d}" for i in range(n)], name="customer_id")
    p = np.round(rng.uniform(0, 1, n), 2)  # ties in probability
    band = np.where(p >= 0.5, "high", np.where(p >= 0.25, "medium", "low"))
    clv = np.round(rng.gamma(2.0, 100.0, n), 0)
    clv[band == "low"] *= 50  # low band: most value at risk
    clv[::10] = np.nan  # no purchase: no CLV, value at risk 0
    churn_out = pd.DataFrame({"churn_probability": p, "churn_risk": band}, index=ids)
    clv_out = pd.DataFrame({"predicted_clv": clv}, index=ids).dropna()
    return churn_out, clv_out


def test_explain_rule_top_value_at_risk_plus_worklist():
    from crmscore.scoring.explain import churn_rows_to_explain
    from crmscore.scoring.worklist import top_by_value_at_risk

    churn_out, clv_out = _policy_frames()
    cfg = config_from_mapping({"scoring": {"explain_top_n": 50, "worklist_top_n": 40}})
    mask, why = churn_rows_to_explain(churn_out, clv_out, cfg)
    var = churn_out["churn_probability"] * clv_out["predicted_clv"].reindex(churn_out.index).fillna(0)
    ranked = pd.DataFrame(
        {"customer_id": churn_out.index, "value_at_risk": var.to_numpy(), **churn_out.reset_index(drop=True)}
    )
    full = ranked.sort_values(
        ["value_at_risk", "churn_probability", "customer_id"], ascending=[False, False, True]
    )
    top = set(full.head(50)["customer_id"])
    worklist = set(full[full["churn_risk"] != "low"].head(40)["customer_id"])
    assert not worklist <= top  # the low band holds the top value at risk here
    assert set(churn_out.index[mask]) == top | worklist
    assert "top 50 by value at risk" in why and f"{len(worklist - top)} more worklist accounts" in why
    # the worklist ranks with the same function, on the assembled rows
    assert set(top_by_value_at_risk(ranked, 40, bands=("high", "medium"))["customer_id"]) == worklist


def test_explain_rule_adds_bands_and_top_probability():
    from crmscore.scoring.explain import churn_rows_to_explain

    churn_out, clv_out = _policy_frames()
    base = {"scoring": {"explain_top_n": 200}}
    plain, _ = churn_rows_to_explain(churn_out, clv_out, config_from_mapping(base))
    banded, why = churn_rows_to_explain(
        churn_out,
        clv_out,
        config_from_mapping({**base, "churn": {"explain_bands": ["high"], "explain_top_n": 7}}),
    )
    high = (churn_out["churn_risk"] == "high").to_numpy()
    top_p = churn_out["churn_probability"].rank(method="first", ascending=False).to_numpy() <= 7
    np.testing.assert_array_equal(banded, plain | high | top_p)
    assert "risk bands high" in why and "top 7 by churn probability" in why
