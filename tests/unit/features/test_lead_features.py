"""Lead features (crmscore.features.leads) on a small hand-checked frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.features.leads import lead_features
from helpers import ts

AS_OF = "2024-03-31"


def test_lead_features():
    leads = pd.DataFrame(
        {
            "lead_id": pd.array(["l1", "l2", "l3", "l4"], dtype="str"),
            "created_at": ts("2024-03-01", "2024-03-10", "2024-03-15", "2024-04-05"),
            "converted_at": ts(None, "2024-03-20", "2024-04-10", None),
            "customer_id": pd.array([None, "a", "b", None], dtype="str"),
            "source": pd.array(["web", "event", "web", "ads"], dtype="str"),
            "budget": [1000.0, 5.0, np.nan, 3.0],
        }
    )
    acts = pd.DataFrame(
        {
            "lead_id": pd.array(["l1", "l1", "l3", "l3", "l1"], dtype="str"),
            "ts": ts("2024-03-02", "2024-03-29", "2024-03-16", "2024-04-02", "2024-04-01"),
            "activity": pd.array(["Email open", "call", "Email open", "demo", "demo"], dtype="str"),
        }
    )
    f = lead_features(leads, acts, AS_OF, min_type_rows=1)
    assert list(f.index) == ["l1", "l3"]  # l2 converted before, l4 created after
    assert f.loc["l1", "lead_age_days"] == 30
    assert f.loc["l1", "n_activities"] == 2 and f.loc["l1", "activities_7d"] == 1
    assert f.loc["l1", "days_since_last_activity"] == 2
    assert f.loc["l3", "activity_email_open"] == 1
    assert "activity_demo" not in f.columns  # only seen after the cutoff
    assert list(f["source"].cat.categories) == ["web"]
    assert not {"converted_at", "customer_id", "created_at"} & set(f.columns)
    g = lead_features(leads, None, AS_OF)
    assert "n_activities" not in g.columns


def test_rare_activity_types_are_pooled_never_feature_names():
    """A type name is stored in the model: free text typed into the type column stays out."""
    n = 30
    leads = pd.DataFrame(
        {
            "lead_id": pd.array([f"l{i}" for i in range(n)], dtype="str"),
            "created_at": ts(*["2024-03-01"] * n),
        }
    )
    kinds = ["call"] * 25 + ["called Zyx Canarysson at home"] + ["demo"] * 4
    acts = pd.DataFrame(
        {
            "lead_id": pd.array([f"l{i}" for i in range(n)], dtype="str"),
            "ts": ts(*["2024-03-02"] * n),
            "activity": pd.array(kinds, dtype="str"),
        }
    )
    f = lead_features(leads, acts, AS_OF, min_type_rows=20)
    types = sorted(c for c in f.columns if c.startswith("activity_"))
    assert types == ["activity_call", "activity_other"]
    assert f["activity_other"].sum() == 5 and f["activity_call"].sum() == 25
    assert (f.filter(like="activity_").sum(axis=1) == f["n_activities"]).all()  # nothing lost
