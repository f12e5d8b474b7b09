"""Labels after the cutoff (crmscore.features.labels): contractual, inactivity, a label column, leads.

The feature table and stacked training sets built on the same data: test_tables.py.
"""

from __future__ import annotations

import pytest

from crmscore.config import ChurnConfig, LeadsConfig
from crmscore.features.labels import churn_labels, lead_labels

AS_OF = "2024-03-31"


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
