"""Leakage proof: nothing dated after ``as_of`` changes a feature; row order and inputs are inert."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmscore.config import Config
from crmscore.core.schema import CRMData
from crmscore.features.tables import build_feature_table, build_lead_features

AS_OF = "2024-03-31"
START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-04-01", tz="UTC")  # cutoff_end(AS_OF)
PAST_HOURS = int((END - START) / pd.Timedelta(hours=1)) - 1
CFG = Config.model_validate({"features": {"windows_days": [7, 30], "trend_window_days": 14}})
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

past_ts = st.integers(0, PAST_HOURS).map(lambda h: START + pd.Timedelta(hours=h))
# the cutoff instant itself is the first unknown instant: include it
future_ts = st.integers(0, 90 * 24).map(lambda h: END + pd.Timedelta(hours=h))
CUSTOMERS = [f"c{i}" for i in range(6)]
LEADS = [f"l{i}" for i in range(6)]


def utc(values) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=True)).astype("datetime64[us, UTC]")


@st.composite
def past_world(draw):
    """Everything known at the cutoff, with markers where a value is only known later."""
    customers = [
        {
            "customer_id": c,
            "created_at": draw(st.one_of(st.none(), past_ts)),
            "churned_at": draw(st.sampled_from(["none", "future", "past"])),
            "segment": draw(st.sampled_from(["smb", "ent", None])),
            "acquisition_cost": draw(st.floats(0, 100)),
        }
        for c in CUSTOMERS
    ]
    for row in customers:
        if row["churned_at"] == "past":
            row["churned_at"] = draw(past_ts)
    tx = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": st.sampled_from(CUSTOMERS),
                    "ts": past_ts,
                    "amount": st.sampled_from([-20.0, 0.0, 5.5, 30.0, 99.99]),
                    "product": st.sampled_from(["p1", "p2", "p3"]),
                }
            ),
            max_size=25,
        )
    )
    tickets = []
    for i in range(draw(st.integers(0, 6))):
        opened = draw(past_ts)
        closed = draw(st.sampled_from(["open", "future", "past"]))
        if closed == "past":
            closed = opened + pd.Timedelta(hours=draw(st.integers(0, 200)))
            closed = closed if closed < END else "future"
        tickets.append(
            {
                "ticket_id": f"t{i}",
                "customer_id": draw(st.sampled_from(CUSTOMERS)),
                "opened_at": opened,
                "closed_at": closed,
                "csat": draw(st.sampled_from([1.0, 3.0, 5.0])) if not isinstance(closed, str) else "later",
            }
        )
    leads = []
    for lid in LEADS:
        converted = draw(st.sampled_from(["open", "future", "past"]))
        created = draw(past_ts)
        if converted == "past":
            converted = created + pd.Timedelta(hours=draw(st.integers(0, 100)))
            converted = converted if converted < END else "future"
        leads.append(
            {
                "lead_id": lid,
                "created_at": created,
                "converted_at": converted,
                "source": draw(st.sampled_from(["web", "event", None])),
                "budget": draw(st.floats(0, 1e4)),
            }
        )
    acts = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "lead_id": st.sampled_from(LEADS),
                    "ts": past_ts,
                    "activity": st.sampled_from(["email", "call", "Web visit"]),
                }
            ),
            max_size=15,
        )
    )
    return {"customers": customers, "tx": tx, "tickets": tickets, "leads": leads, "acts": acts}


@st.composite
def with_future(draw, past):
    """Complete ``past`` with arbitrary values and rows dated after the cutoff."""
    past = copy.deepcopy(past)
    maybe_future = st.one_of(st.none(), future_ts)
    customers = past["customers"]
    for row in customers:
        if row["churned_at"] == "future":
            row["churned_at"] = draw(future_ts)
        elif row["churned_at"] == "none":
            row["churned_at"] = draw(maybe_future)
        row["churn"] = draw(st.booleans())  # a label column: never a feature
    new_customers = draw(st.lists(st.sampled_from(["f1", "f2", "c0"]), max_size=3, unique=True))
    for j, c in enumerate(new_customers):
        created = draw(future_ts)
        cid = c if c != "c0" else f"late{j}"
        customers.append(
            {
                "customer_id": cid,
                "created_at": created,
                "churned_at": None,
                "segment": draw(st.sampled_from(["new-seg", "smb"])),
                "acquisition_cost": 1.0,
                "churn": False,
            }
        )
        past["tx"].append({"customer_id": cid, "ts": created, "amount": 10.0, "product": "p9"})
    future_tx = st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(CUSTOMERS),
            "ts": future_ts,
            "amount": st.sampled_from([-5.0, 12.0, 1000.0]),
            "product": st.sampled_from(["p1", "p9"]),
        }
    )
    past["tx"] += draw(st.lists(future_tx, max_size=6))
    for t in past["tickets"]:
        if t["closed_at"] == "future":
            t["closed_at"] = draw(future_ts)
        elif t["closed_at"] == "open":
            t["closed_at"] = draw(maybe_future)
        if t["csat"] == "later":
            t["csat"] = draw(st.sampled_from([None, 1.0, 5.0]))
    for k in range(draw(st.integers(0, 3))):
        opened = draw(future_ts)
        past["tickets"].append(
            {
                "ticket_id": f"ft{k}",
                "customer_id": draw(st.sampled_from(CUSTOMERS)),
                "opened_at": opened,
                "closed_at": opened + pd.Timedelta(days=1),
                "csat": 2.0,
            }
        )
    for lead in past["leads"]:
        if lead["converted_at"] == "future":
            lead["converted_at"] = draw(future_ts)
        elif lead["converted_at"] == "open":
            lead["converted_at"] = draw(maybe_future)
        lead["customer_id"] = draw(st.sampled_from([None, "c1", "c2"]))
    for k in range(draw(st.integers(0, 2))):
        past["leads"].append(
            {
                "lead_id": f"fl{k}",
                "created_at": draw(future_ts),
                "converted_at": None,
                "source": "partner",
                "budget": 1.0,
            }
        )
    past["acts"] += draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "lead_id": st.sampled_from(LEADS),
                    "ts": future_ts,
                    "activity": st.sampled_from(["email", "demo"]),
                }
            ),
            max_size=5,
        )
    )
    return to_crm(past)


def to_crm(w: dict) -> CRMData:
    customers = pd.DataFrame(w["customers"])
    for col in ("created_at", "churned_at"):
        customers[col] = utc(customers[col])
    customers["customer_id"] = customers["customer_id"].astype("str")
    customers["segment"] = customers["segment"].astype("str")
    tx = pd.DataFrame(w["tx"], columns=["customer_id", "ts", "amount", "product"])
    tx["ts"] = utc(tx["ts"])
    tx = tx.astype({"customer_id": "str", "amount": "float64", "product": "str"})
    tickets = pd.DataFrame(
        w["tickets"], columns=["ticket_id", "customer_id", "opened_at", "closed_at", "csat"]
    )
    for col in ("opened_at", "closed_at"):
        tickets[col] = utc(tickets[col])
    tickets["csat"] = tickets["csat"].astype("float64")
    leads = pd.DataFrame(w["leads"])
    for col in ("created_at", "converted_at"):
        leads[col] = utc(leads[col])
    leads["source"] = leads["source"].astype("str")
    acts = pd.DataFrame(w["acts"], columns=["lead_id", "ts", "activity"])
    acts["ts"] = utc(acts["ts"])
    return CRMData(
        customers=customers,
        transactions=tx,
        support_tickets=tickets,
        leads=leads,
        lead_activities=acts,
    )


def features(data: CRMData) -> tuple[pd.DataFrame, pd.DataFrame]:
    return build_feature_table(data, AS_OF, CFG), build_lead_features(data, AS_OF, CFG)


def shuffled(data: CRMData, seed: int) -> CRMData:
    rng = np.random.default_rng(seed)
    return CRMData(
        **{
            name: df.iloc[rng.permutation(len(df))].reset_index(drop=True)
            for name, df in data.tables().items()
        }
    )


@SETTINGS
@given(data=st.data(), past=past_world())
def test_rows_after_as_of_change_no_feature(data, past):
    a = data.draw(with_future(past), label="future A")
    b = data.draw(with_future(past), label="future B")
    fa, la = features(a)
    fb, lb = features(b)
    pd.testing.assert_frame_equal(fa, fb)
    pd.testing.assert_frame_equal(la, lb)
    assert not {"churned_at", "churn", "created_at"} & set(fa.columns)
    assert not {"converted_at", "customer_id", "created_at"} & set(la.columns)


@SETTINGS
@given(data=st.data(), past=past_world(), seed=st.integers(0, 2**16))
def test_features_ignore_row_order_and_never_mutate_inputs(data, past, seed):
    a = data.draw(with_future(past))
    frozen = {k: v.copy(deep=True) for k, v in a.tables().items()}
    fa, la = features(a)
    for k, v in a.tables().items():
        pd.testing.assert_frame_equal(v, frozen[k])
    fs, ls = features(shuffled(a, seed))
    pd.testing.assert_frame_equal(fa, fs)
    pd.testing.assert_frame_equal(la, ls)
