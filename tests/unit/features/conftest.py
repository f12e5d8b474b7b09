"""Fixtures of the feature tests."""

from __future__ import annotations

import pandas as pd
import pytest

from crmscore.core.schema import CRMData
from helpers import ts


@pytest.fixture
def data() -> CRMData:
    """Five customers and five leads around the cutoff 2024-03-31 (test_labels.py, test_tables.py)."""
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
