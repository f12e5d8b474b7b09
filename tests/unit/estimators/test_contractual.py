"""The contractual CLV kind: its estimator wrapper, bundle and the ``clv.kind`` choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.estimators.contractual import ContractualClvModel, monthly_rate
from crmscore.estimators.specs import SPECS, clv_kind, load_model


def _fitted(segment: bool = False) -> tuple[ContractualClvModel, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 4000
    seg = rng.choice(["a", "b"], n)
    theta = rng.beta(np.where(seg == "a", 0.7, 0.5), np.where(seg == "a", 2.0, 12.0))
    life = rng.geometric(theta)
    age = rng.integers(1, 61, n)
    churned = life <= age - 1
    tenure = np.where(churned, life, age)
    model = ContractualClvModel("tenure_months", "charges", "plan" if segment else None)
    model.fit(tenure, churned, seg if segment else None)
    X = pd.DataFrame(
        {"tenure_months": [1.0, 12.0, np.nan], "charges": [50.0, 50.0, 50.0], "plan": ["a", "b", "a"]}
    )
    return model, X


def test_clv_is_derl_times_revenue_with_nulls_where_inputs_are_missing():
    model, X = _fitted()
    out = model.predict(X)
    derl = model.sbg.derl([0, 11], monthly_rate(0.10))
    assert np.allclose(out["predicted_clv"].iloc[:2], 50.0 * derl)
    assert np.isnan(out["predicted_clv"].iloc[2]) and out["p_alive"].isna().all()
    assert 0 < out["expected_purchases"].iloc[0] <= 12


def test_bundle_round_trip_reproduces_every_output(tmp_path):
    model, X = _fitted(segment=True)
    spec = SPECS["clv_contractual"]
    spec.save(model, tmp_path / "b")
    loaded_spec, loaded = load_model(tmp_path / "b")
    assert loaded_spec.kind == "clv_contractual"
    pd.testing.assert_frame_equal(spec.predict(loaded, X), spec.predict(model, X))
    assert [p.name for p in spec.profile(loaded)] == ["tenure_months", "charges", "plan"]


def _cfg(kind: str = "auto") -> Config:
    return Config.model_validate(
        {
            "churn": {"definition": "label", "label_column": "churn"},
            "clv": {"kind": kind, "revenue_column": "charges"},
        }
    )


def test_auto_is_contractual_without_transactions_and_exactly_one_clv_kind_trains():
    customers = pd.DataFrame(
        {
            "customer_id": ["1"],
            "created_at": pd.to_datetime(["2024-01-01"], utc=True),
            "charges": [9.0],
            "churn": [False],
        }
    )
    tx = pd.DataFrame({"customer_id": ["1"], "amount": [5.0]})
    sub, shop = CRMData(customers=customers), CRMData(customers=customers, transactions=tx)
    assert clv_kind(sub, _cfg()) == "contractual" and clv_kind(shop, _cfg()) == "transactional"
    for data in (sub, shop):
        reasons = [SPECS[k].missing_data(data, _cfg()) for k in ("clv", "clv_contractual")]
        assert sum(r is None for r in reasons) == 1, reasons
    assert "resolves to" in SPECS["clv_contractual"].missing_data(sub, _cfg("transactional"))
    no_revenue = CRMData(customers=customers.drop(columns="charges"))
    assert "charges" in SPECS["clv_contractual"].missing_data(no_revenue, _cfg("contractual"))


@pytest.mark.parametrize("days, months", [(0, 1), (30, 1), (31, 2), (365, 12)])
def test_tenure_days_from_created_at_count_the_month_in_progress(days, months):
    model = ContractualClvModel("tenure_days", "charges")
    assert model.months(pd.DataFrame({"tenure_days": [days]}))[0] == months
