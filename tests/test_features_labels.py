"""Labels after the cutoff, the pipeline table, stacked training sets and writers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig, Config, LeadsConfig
from crmscore.core.schema import CRMData
from crmscore.features.labels import churn_labels, lead_labels
from crmscore.features.tables import (
    build_churn_training_set,
    build_feature_table,
    build_lead_training_set,
)
from crmscore.pipelines.features import write_feature_table

AS_OF = "2024-03-31"


def ts(*values) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


@pytest.fixture
def data() -> CRMData:
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b", "c", "d", "e"], dtype="str"),
            "created_at": ts("2023-01-01", "2023-06-01", "2024-01-01", "2024-04-01", "2023-01-01"),
            # a churns on day 1 of the window, b on the day after it ends, c churned before
            "churned_at": ts("2024-04-01", "2024-04-30", "2024-03-31", None, None),
            "churn": [True, False, None, False, True],
        }
    )
    tx = pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b", "b", "c", "e", "e", "d"], dtype="str"),
            "ts": ts(
                "2024-03-01",
                "2023-07-01",
                "2024-04-29 23:00",
                "2024-03-01",
                "2024-03-30",
                "2024-04-10",
                "2024-04-02",
            ),
            "amount": [10.0, 5.0, 7.0, 3.0, 4.0, -4.0, 1.0],
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": pd.array(["l1", "l2", "l3", "l4", "l5"], dtype="str"),
            "created_at": ts("2024-03-20", "2024-03-25", "2023-12-01", "2024-03-30", "2024-04-02"),
            "converted_at": ts("2024-04-15", None, None, "2024-03-31", None),
            "source": pd.array(["web"] * 5, dtype="str"),
            "won": [True, False, False, True, None],
        }
    )
    return CRMData(customers=customers, transactions=tx, leads=leads)


def test_contractual(data):
    y = churn_labels(data, AS_OF, ChurnConfig(definition="contractual", horizon_days=29))
    assert y.to_dict() == {"a": True, "b": False, "e": False}  # c churned before, d created after
    y30 = churn_labels(data, AS_OF, ChurnConfig(definition="contractual", horizon_days=30))
    assert y30["b"]


def test_inactivity(data):
    cfg = ChurnConfig(definition="inactivity", horizon_days=29)
    y = churn_labels(data, AS_OF, cfg)
    # a churned (contractually) at the boundary: still eligible, no purchase after -> churn
    # b bought inside the window; e only refunded after the cutoff -> churn; c churned before
    assert y.to_dict() == {"a": True, "b": False, "e": True}
    y_lb = churn_labels(
        data, AS_OF, ChurnConfig(definition="inactivity", horizon_days=29, activity_lookback_days=60)
    )
    assert list(y_lb.index) == ["a", "e"]  # b's last purchase is older than 60 days
    with pytest.raises(ValueError, match="censored"):
        churn_labels(data, AS_OF, cfg, observed_until="2024-04-15")
    churn_labels(data, AS_OF, cfg, observed_until="2024-04-29")


def test_label_column(data):
    y = churn_labels(data, AS_OF, ChurnConfig(definition="label", label_column="churn"))
    assert y.to_dict() == {"a": True, "b": False, "e": True}  # c: missing label; d: unknown at cutoff


def test_lead_labels(data):
    y = lead_labels(data.leads, AS_OF, LeadsConfig(conversion_window_days=30))
    # l1 converts 26 days after creation; l2 open; l3 stale (window ended before the cutoff);
    # l4 converted before the cutoff; l5 created after
    assert y.to_dict() == {"l1": True, "l2": False}
    stale = lead_labels(data.leads, AS_OF, LeadsConfig(conversion_window_days=30, include_stale=True))
    assert stale.to_dict() == {"l1": True, "l2": False, "l3": False}
    short = lead_labels(
        data.leads, AS_OF, LeadsConfig(conversion_window_days=30), observed_until="2024-04-20"
    )
    assert list(short.index) == ["l1"]  # l2's window (to 2024-04-24) is not over by then
    given = lead_labels(data.leads, AS_OF, LeadsConfig(label_column="won"))
    assert given.to_dict() == {"l1": True, "l2": False, "l3": False, "l4": True}


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
