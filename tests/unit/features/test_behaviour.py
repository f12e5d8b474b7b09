"""Behaviour features (crmscore.features.behaviour) on small hand-checked frames."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from crmscore.features.behaviour import behaviour_features, known_customer_ids
from helpers import ts

AS_OF = "2024-03-31"


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b", "c", "d"], dtype="str"),
            "created_at": ts("2023-01-01", "2024-03-31 23:59", "2024-04-01", None),
            "churned_at": ts("2024-05-01", None, None, None),
            "plan": pd.array(["pro", "basic", "pro", None], dtype="str"),
            "seats": [10.0, 2.0, 1.0, np.nan],
            "churn": [True, False, False, False],
            "renewal_at": ts("2025-01-01", None, None, None),
        }
    )


@pytest.fixture
def transactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.array(["a", "a", "a", "a", "a", "d", "c"], dtype="str"),
            "ts": ts(
                "2023-12-01",  # 121 days before the cutoff day
                "2024-02-15",  # 45
                "2024-03-21",  # 10
                "2024-03-25",  # 6, refund
                "2024-04-01",  # after the cutoff
                "2024-03-31 12:00",  # d: undated customer known through this purchase
                "2024-03-01",  # c: created later, not known
            ),
            "amount": [100.0, 50.0, 30.0, -20.0, 999.0, 7.0, 5.0],
            "product": pd.array(["x", "y", "x", "x", "z", "x", "x"], dtype="str"),
        }
    )


def test_known_customers(customers, transactions):
    ids = known_customer_ids(customers, transactions, AS_OF)
    assert list(ids) == ["a", "b", "d"]
    assert list(known_customer_ids(None, transactions, AS_OF)) == ["a", "c", "d"]


def test_transaction_features(customers, transactions):
    f = behaviour_features(customers, transactions, None, AS_OF, windows_days=(30, 90), trend_window_days=30)
    a = f.loc["a"]
    assert a["n_purchases"] == 3 and a["spend_total"] == 180.0
    assert a["avg_order_value"] == 60.0
    assert a["recency_days"] == 10 and a["days_since_first_purchase"] == 121
    assert a["n_purchases_30d"] == 1 and a["spend_30d"] == 30.0
    assert a["n_purchases_90d"] == 2 and a["spend_90d"] == 80.0
    # trend: last 30 days (1 purchase, 30) vs the 30 before (1 purchase, 50)
    assert a["purchase_trend"] == 0.0
    assert a["spend_change"] == -20.0
    assert a["spend_trend"] == pytest.approx(-20 / 80)
    assert a["gap_mean_days"] == pytest.approx((76 + 35) / 2)
    assert a["gap_max_days"] == 76
    assert a["gap_std_days"] == pytest.approx(np.std([76, 35]))
    assert a["overdue_ratio"] == pytest.approx(10 / 55.5)
    assert a["n_refunds"] == 1 and a["refund_amount"] == 20.0
    assert a["n_products"] == 2
    b = f.loc["b"]
    assert b["n_purchases"] == 0 and np.isnan(b["recency_days"]) and np.isnan(b["purchase_trend"])
    assert f.loc["d", "recency_days"] == 0
    assert f.loc["a", "tenure_days"] == 455 and f.loc["b", "tenure_days"] == 0
    assert np.isnan(f.loc["d", "tenure_days"])


def test_attributes_carried_and_labels_excluded(customers, transactions):
    f = behaviour_features(customers, transactions, None, AS_OF, exclude=("churn",))
    assert isinstance(f["plan"].dtype, pd.CategoricalDtype)
    assert list(f["plan"].cat.categories) == ["basic", "pro"]
    assert f["seats"].dtype == np.float64
    for col in ("churned_at", "churn", "created_at", "renewal_at", "customer_id"):
        assert col not in f.columns


def test_ticket_closed_after_cutoff_is_open():
    tickets = pd.DataFrame(
        {
            "ticket_id": ["t1", "t2", "t3", "t4"],
            "customer_id": pd.array(["a", "a", "a", "a"], dtype="str"),
            "opened_at": ts("2024-03-01", "2024-03-20", "2024-03-30", "2024-04-02"),
            "closed_at": ts("2024-03-03", "2024-04-05", None, "2024-04-03"),
            "csat": [4.0, 1.0, np.nan, 5.0],
        }
    )
    ids = pd.Index(["a"], name="customer_id")
    cust = pd.DataFrame({"customer_id": ids.astype("str"), "created_at": ts("2023-01-01")})
    f = behaviour_features(cust, None, tickets, AS_OF, windows_days=(7, 90))
    a = f.loc["a"]
    assert a["tickets_total"] == 3 and a["tickets_7d"] == 1 and a["tickets_90d"] == 3
    assert a["tickets_open"] == 2  # t2 closes after the cutoff, t3 never closed
    assert a["resolution_days_mean"] == 2.0  # only t1
    assert a["csat_mean"] == 4.0  # t2's CSAT is recorded after the cutoff
    assert a["days_since_last_ticket"] == 1


def test_missing_tables_mean_absent_features(customers, caplog):
    with caplog.at_level(logging.INFO):
        f = behaviour_features(customers, None, None, AS_OF)
    assert "n_purchases" not in f.columns and "tickets_open" not in f.columns
    assert "no transactions table" in caplog.text and "no support_tickets table" in caplog.text
    # c is created after the cutoff; d has no created_at and, with no transactions table at
    # all (a snapshot export), is part of the customer base as listed
    assert list(f.index) == ["a", "b", "d"]
