"""Business KPIs on a tiny hand-computed CRM (every expected number worked out in the comments).

Period under test: March 2025 (``[2025-03-01, 2025-04-01)``), previous period February,
``as_of = 2025-03-31``.

Customers (created, churned_at, channel): A 01-10 (-, organic), B 01-20 (03-15, paid), C 02-05 (-, paid),
D 03-10 (-, organic), E 03-20 (03-25, paid), F 02-25 (02-28, organic).
Transactions: A 01-15 10, 02-10 100, 03-05 150; B 02-12 80, 03-02 20; C 02-06 50;
D 03-11 200, 03-12 -30 (refund); E 03-21 40; F 02-26 60.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ReportConfig
from crmscore.core.schema import CRMData
from crmscore.reporting.kpis import (
    Period,
    active_customers,
    arpu,
    average_sales_cycle_days,
    cac,
    cac_by_channel,
    churn_rate,
    compute_kpis,
    customer_counts,
    customer_growth_rate,
    historical_ltv,
    known_data,
    lead_conversion_rate,
    lead_velocity_rate,
    ltv_to_cac,
    periods_until,
    predicted_ltv,
    qualified_leads,
    retention_rate,
    revenue,
    revenue_bridge,
    revenue_growth,
    rfm_segments,
    top_customer_revenue_share,
)

AS_OF = "2025-03-31"
MARCH = Period.containing("2025-03-15")
CONTRACT = ReportConfig(customer_definition="contractual", qualified_lead={"need": ("high",)})
ACTIVITY = ReportConfig(
    customer_definition="activity",
    activity_window_days=30,
    qualified_lead={"need": ("high",)},
    lead_conversion_window_days=30,
)


def _ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601"), dtype="datetime64[us, UTC]")


def _data() -> CRMData:
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E", "F"],
            "created_at": _ts(
                [
                    "2025-01-10 09:00",
                    "2025-01-20 09:00",
                    "2025-02-05 09:00",
                    "2025-03-10 09:00",
                    "2025-03-20 09:00",
                    "2025-02-25 09:00",
                ]
            ),
            "churned_at": _ts([None, "2025-03-15", None, None, "2025-03-25", "2025-02-28"]),
            "acquisition_channel": ["organic", "paid", "paid", "organic", "paid", "organic"],
        }
    )
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "B", "C", "D", "D", "E", "F"],
            "ts": _ts(
                [
                    "2025-01-15 10:00",
                    "2025-02-10 10:00",
                    "2025-03-05 10:00",
                    "2025-02-12 10:00",
                    "2025-03-02 10:00",
                    "2025-02-06 10:00",
                    "2025-03-11 10:00",
                    "2025-03-12 10:00",
                    "2025-03-21 10:00",
                    "2025-02-26 10:00",
                ]
            ),
            "amount": [10.0, 100.0, 150.0, 80.0, 20.0, 50.0, 200.0, -30.0, 40.0, 60.0],
        }
    )
    spend = pd.DataFrame(
        {
            "period": _ts(["2025-02-01", "2025-02-01", "2025-03-01", "2025-03-01"]),
            "channel": ["organic", "paid", "organic", "paid"],
            "amount": [50.0, 50.0, 100.0, 300.0],
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6"],
            "created_at": _ts(
                [
                    "2025-02-03 08:00",
                    "2025-02-10 08:00",
                    "2025-03-01 08:00",
                    "2025-03-05 08:00",
                    "2025-03-15 08:00",
                    "2025-01-20 08:00",
                ]
            ),
            "converted_at": _ts(
                ["2025-02-13 08:00", None, "2025-03-21 08:00", None, "2025-03-25 08:00", "2025-03-11 08:00"]
            ),
            "need": ["high", "low", "high", "high", "low", "high"],
        }
    )
    return CRMData(customers=customers, transactions=tx, marketing_spend=spend, leads=leads)


def _later_rows(data: CRMData) -> CRMData:
    """The same CRM plus rows and values that only became known after ``AS_OF``."""
    cust = data.customers.copy()
    cust.loc[cust["customer_id"] == "A", "churned_at"] = pd.Timestamp("2025-04-05", tz="UTC")
    g = pd.DataFrame(
        {
            "customer_id": ["G"],
            "created_at": _ts(["2025-04-02"]),
            "churned_at": _ts([None]),
            "acquisition_channel": ["paid"],
        }
    )
    tx_late = pd.DataFrame(
        {"customer_id": ["A", "G"], "ts": _ts(["2025-04-01 00:00", "2025-04-03"]), "amount": [999.0, 5.0]}
    )
    leads = data.leads.copy()
    leads.loc[leads["lead_id"] == "L4", "converted_at"] = pd.Timestamp("2025-04-03", tz="UTC")
    late_lead = pd.DataFrame(
        {"lead_id": ["L7"], "created_at": _ts(["2025-04-01"]), "converted_at": _ts([None]), "need": ["high"]}
    )
    spend_late = pd.DataFrame({"period": _ts(["2025-04-01"]), "channel": ["paid"], "amount": [1000.0]})
    return CRMData(
        customers=pd.concat([cust, g], ignore_index=True),
        transactions=pd.concat([data.transactions, tx_late], ignore_index=True),
        leads=pd.concat([leads, late_lead], ignore_index=True),
        marketing_spend=pd.concat([data.marketing_spend, spend_late], ignore_index=True),
    )


# --- periods -------------------------------------------------------------------------------------


def test_periods():
    q = Period.containing("2025-03-31", "quarter")
    assert (q.label, q.start, q.end) == (
        "2025Q1",
        pd.Timestamp("2025-01-01", tz="UTC"),
        pd.Timestamp("2025-04-01", tz="UTC"),
    )
    assert q.previous().label == "2024Q4"
    assert MARCH.previous().label == "2025-02"
    # March is not complete on 03-30: the last complete periods are January and February
    assert [p.label for p in periods_until("2025-03-30", "month", 2)] == ["2025-01", "2025-02"]
    assert [p.label for p in periods_until(AS_OF, "month", 2)] == ["2025-02", "2025-03"]
    with pytest.raises(ValueError, match="ends after the cutoff"):
        revenue(_data(), MARCH, "2025-03-30")


# --- customers -----------------------------------------------------------------------------------


def test_customer_counts_contractual():
    # S at 03-01: A, B, C (F churned 02-28). E at 04-01: A, C, D (B, E churned). N = D, E. L = {B}.
    d = _data()
    assert customer_counts(d, MARCH, AS_OF, CONTRACT) == {
        "customers_start": 3,
        "customers_end": 3,
        "new_customers": 2,
        "lost_customers": 1,
    }
    assert retention_rate(d, MARCH, AS_OF, CONTRACT) == pytest.approx((3 - 2) / 3)
    assert churn_rate(d, MARCH, AS_OF, CONTRACT) == pytest.approx(1 / 3)
    assert customer_growth_rate(d, MARCH, AS_OF, CONTRACT) == 0.0


def test_customer_counts_activity():
    # 30-day window. At 03-01: purchases in [01-30, 03-01): A, B, C, F; F churned 02-28 -> S = {A, B, C}.
    # At 04-01: purchases in [03-02, 04-01): A, B, D, E; B and E churned -> E = {A, D}. L = {B, C}.
    d = _data()
    assert list(active_customers(d, MARCH.start, AS_OF, ACTIVITY)) == ["A", "B", "C"]
    assert list(active_customers(d, MARCH.end, AS_OF, ACTIVITY)) == ["A", "D"]
    assert customer_counts(d, MARCH, AS_OF, ACTIVITY) == {
        "customers_start": 3,
        "customers_end": 2,
        "new_customers": 2,
        "lost_customers": 2,
    }
    assert retention_rate(d, MARCH, AS_OF, ACTIVITY) == 0.0
    assert churn_rate(d, MARCH, AS_OF, ACTIVITY) == pytest.approx(2 / 3)
    assert customer_growth_rate(d, MARCH, AS_OF, ACTIVITY) == pytest.approx(-1 / 3)


# --- revenue -------------------------------------------------------------------------------------


def test_revenue_growth_arpu_ltv():
    d = _data()
    # March: 150 + 20 + 200 - 30 + 40 = 380; February: 100 + 80 + 50 + 60 = 290
    assert revenue(d, MARCH, AS_OF) == pytest.approx(380.0)
    assert revenue(d, MARCH.previous(), AS_OF) == pytest.approx(290.0)
    assert revenue_growth(d, MARCH, AS_OF) == pytest.approx(90 / 290)
    assert arpu(d, MARCH, AS_OF, CONTRACT) == pytest.approx(380 / ((3 + 3) / 2))
    assert arpu(d, MARCH, AS_OF, ACTIVITY) == pytest.approx(380 / ((3 + 2) / 2))
    # all revenue to 04-01 (10 + 290 + 380) over the 6 customers created by then
    assert historical_ltv(d, MARCH, AS_OF) == pytest.approx(680 / 6)


class _FlatClv:
    """A stand-in CLV model predicting 10 for every customer with a purchase."""

    time_unit = "week"

    def predict(self, summary: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"predicted_clv": np.full(len(summary), 10.0)}, index=summary.index)


def test_predicted_ltv_and_ltv_to_cac():
    d = _data()
    # revenue to date 680 + 6 buyers x 10, over 6 customers
    assert predicted_ltv(d, MARCH, AS_OF, _FlatClv()) == pytest.approx((680 + 60) / 6)
    # CAC = (100 + 300) / 2 new customers = 200
    assert cac(d, MARCH, AS_OF) == pytest.approx(200.0)
    assert ltv_to_cac(d, MARCH, AS_OF) == pytest.approx((680 / 6) / 200)
    assert ltv_to_cac(d, MARCH, AS_OF, _FlatClv()) == pytest.approx((740 / 6) / 200)


def test_cac_by_channel():
    tab = cac_by_channel(_data(), MARCH, AS_OF)
    # organic: 100 / D; paid: 300 / E
    assert tab.to_dict(orient="index") == {
        "organic": {"marketing_spend": 100.0, "new_customers": 1.0, "cac": 100.0},
        "paid": {"marketing_spend": 300.0, "new_customers": 1.0, "cac": 300.0},
    }


def test_revenue_bridge():
    # March vs February: new D (170) + E (40); A +50 expansion; B -60 contraction; C 50 + F 60 lost
    b = revenue_bridge(_data(), MARCH, AS_OF)
    assert b == pytest.approx(
        {
            "previous_revenue": 290.0,
            "revenue": 380.0,
            "new_customer_revenue": 210.0,
            "expansion_revenue": 50.0,
            "contraction_revenue": 60.0,
            "lost_revenue": 110.0,
            "reactivation_revenue": 0.0,
            "other_change": 0.0,
        }
    )
    total = (
        b["new_customer_revenue"]
        + b["reactivation_revenue"]
        + b["expansion_revenue"]
        - b["contraction_revenue"]
        - b["lost_revenue"]
        + b["other_change"]
    )
    assert total == pytest.approx(b["revenue"] - b["previous_revenue"])


def test_top_customer_revenue_share():
    # March buyers: A 150, B 20, D 170, E 40 -> top ceil(0.2 * 4) = 1 customer: D 170 of 380
    assert top_customer_revenue_share(_data(), MARCH, AS_OF) == pytest.approx(170 / 380)
    half = ReportConfig(top_customer_fraction=0.5)
    assert top_customer_revenue_share(_data(), MARCH, AS_OF, half) == pytest.approx((170 + 150) / 380)


# --- leads ---------------------------------------------------------------------------------------


def test_lead_kpis():
    d = _data()
    # qualified (need = high): February L1; March L3, L4
    assert qualified_leads(d, MARCH.previous(), AS_OF, ACTIVITY) == 1
    assert qualified_leads(d, MARCH, AS_OF, ACTIVITY) == 2
    assert lead_velocity_rate(d, MARCH, AS_OF, ACTIVITY) == pytest.approx(1.0)
    assert qualified_leads(d, MARCH, AS_OF, ReportConfig()) == 3  # empty rule: L3, L4, L5
    # converted in March: L3 (20 days), L5 (10), L6 (50)
    assert average_sales_cycle_days(d, MARCH, AS_OF) == pytest.approx(80 / 3)
    # 30-day window: February leads L1 (10 days, yes), L2 (no) -> 0.5; January L6 (50 days) -> 0
    assert lead_conversion_rate(d, MARCH.previous(), AS_OF, ACTIVITY) == pytest.approx(0.5)
    assert lead_conversion_rate(d, Period.containing("2025-01-05"), AS_OF, ACTIVITY) == 0.0
    assert math.isnan(lead_conversion_rate(d, MARCH, AS_OF, ACTIVITY))  # window still open


# --- segments ------------------------------------------------------------------------------------


def test_rfm_segments():
    # bins = 2 at 03-31 (see rfm.py): R scores C, F, B = 1 and A, D, E = 2; F scores A, B = 2;
    # M scores B, D, A = 2. Rescaled to 5 (1 -> 3, 2 -> 5): A (5,5,5) and D (5,3,5) Champions,
    # B (3,5,5) Loyal, C and F (3,3,3) Need attention, E (5,3,3) Potential loyalist.
    # Revenue of the 365 days: A 260, D 170, B 100, C 50, F 60, E 40 (total 680).
    seg = rfm_segments(_data(), AS_OF, bins=2)
    assert seg["customers"].to_dict() == {
        "Champions": 2,
        "Loyal": 1,
        "Potential loyalist": 1,
        "Need attention": 2,
    }
    assert seg["revenue"].to_dict() == pytest.approx(
        {"Champions": 430.0, "Loyal": 100.0, "Potential loyalist": 40.0, "Need attention": 110.0}
    )
    assert seg.loc["Champions", "revenue_share"] == pytest.approx(430 / 680)
    assert seg.loc["Loyal", "customer_share"] == pytest.approx(1 / 6)


# --- the whole table and the cutoff --------------------------------------------------------------


def _all(d: CRMData, cfg: ReportConfig) -> dict[str, object]:
    return {
        "counts": customer_counts(d, MARCH, AS_OF, cfg),
        "retention": retention_rate(d, MARCH, AS_OF, cfg),
        "churn": churn_rate(d, MARCH, AS_OF, cfg),
        "revenue": revenue(d, MARCH, AS_OF),
        "growth": revenue_growth(d, MARCH, AS_OF),
        "arpu": arpu(d, MARCH, AS_OF, cfg),
        "hist": historical_ltv(d, MARCH, AS_OF),
        "pred": predicted_ltv(d, MARCH, AS_OF, _FlatClv()),
        "cac": cac(d, MARCH, AS_OF),
        "channels": cac_by_channel(d, MARCH, AS_OF).to_dict(),
        "q": qualified_leads(d, MARCH, AS_OF, cfg),
        "lvr": lead_velocity_rate(d, MARCH, AS_OF, cfg),
        "conv": lead_conversion_rate(d, MARCH.previous(), AS_OF, cfg),
        "cycle": average_sales_cycle_days(d, MARCH, AS_OF),
        "bridge": revenue_bridge(d, MARCH, AS_OF),
        "top": top_customer_revenue_share(d, MARCH, AS_OF, cfg),
        "seg": rfm_segments(d, AS_OF, bins=2).to_dict(),
    }


@pytest.mark.parametrize("cfg", [CONTRACT, ACTIVITY], ids=["contractual", "activity"])
def test_nothing_after_as_of_is_used(cfg):
    d = _data()
    late = _later_rows(d)
    assert _all(late, cfg) == _all(d, cfg)
    pd.testing.assert_frame_equal(
        compute_kpis(late, AS_OF, cfg.model_copy(update={"n_periods": 2})).table,
        compute_kpis(d, AS_OF, cfg.model_copy(update={"n_periods": 2})).table,
    )
    # and they do count once known
    assert revenue(late, Period.containing("2025-04-01"), "2025-04-30") == pytest.approx(1004.0)


def test_known_data_masks_later_dates_without_mutating():
    late = _later_rows(_data())
    before = late.customers.copy()
    k = known_data(late, AS_OF)
    assert k.customers.set_index("customer_id").loc["A", "churned_at"] is pd.NaT
    assert "G" not in set(k.customers["customer_id"])
    assert k.leads.set_index("lead_id").loc["L4", "converted_at"] is pd.NaT
    pd.testing.assert_frame_equal(late.customers, before)


def test_compute_kpis_matches_functions():
    d = _data()
    res = compute_kpis(d, AS_OF, CONTRACT.model_copy(update={"n_periods": 2}), model=_FlatClv(), rfm_bins=2)
    assert list(res.table.index) == ["2025-02", "2025-03"]
    row = res.table.loc["2025-03"]
    assert row["retention_rate"] == pytest.approx(retention_rate(d, MARCH, AS_OF, CONTRACT))
    assert row["churn_rate"] == pytest.approx(1 / 3)
    assert row["revenue"] == pytest.approx(380.0)
    assert row["revenue_growth"] == pytest.approx(90 / 290)
    assert row["arpu"] == pytest.approx(380 / 3)
    assert row["historical_ltv"] == pytest.approx(680 / 6)
    assert row["predicted_ltv"] == pytest.approx(740 / 6)
    assert row["cac"] == pytest.approx(200.0)
    assert row["ltv_to_cac"] == pytest.approx((740 / 6) / 200)
    assert row["qualified_leads"] == 2
    assert row["lead_velocity_rate"] == pytest.approx(1.0)
    assert row["avg_sales_cycle_days"] == pytest.approx(80 / 3)
    assert row["expansion_revenue"] == pytest.approx(50.0)
    assert row["top_customer_revenue_share"] == pytest.approx(170 / 380)
    # channels over both periods: organic 150 / (D + F), paid 350 / (C + E)
    assert res.cac_by_channel["cac"].to_dict() == pytest.approx({"organic": 75.0, "paid": 175.0})
    assert res.segments["customers"].sum() == 6


def test_quarterly_kpis():
    # Q1 2025 = January to March: revenue 10 + 290 + 380; contractual S at 01-01 = 0 (nobody yet)
    cfg = CONTRACT.model_copy(update={"period": "quarter", "n_periods": 1})
    row = compute_kpis(_data(), AS_OF, cfg).table.loc["2025Q1"]
    assert row["revenue"] == pytest.approx(680.0)
    assert row["new_customers"] == 6
    assert row["customers_start"] == 0 and math.isnan(row["retention_rate"])
    assert row["customers_end"] == 3  # A, C, D
    assert row["cac"] == pytest.approx(500 / 6)


# --- absent tables: NaN or empty, never an error ---------------------------------------------


def test_kpis_without_a_table_are_nan_or_empty():
    d = _data()
    only_customers = CRMData(customers=d.customers)
    for f in (revenue, revenue_growth, historical_ltv, average_sales_cycle_days, cac):
        assert math.isnan(f(only_customers, MARCH, AS_OF)), f.__name__
    assert math.isnan(predicted_ltv(only_customers, MARCH, AS_OF, _FlatClv()))
    assert math.isnan(arpu(only_customers, MARCH, AS_OF, CONTRACT))
    assert math.isnan(ltv_to_cac(only_customers, MARCH, AS_OF))
    assert all(math.isnan(v) for v in revenue_bridge(only_customers, MARCH, AS_OF).values())
    assert math.isnan(top_customer_revenue_share(only_customers, MARCH, AS_OF))
    for f in (qualified_leads, lead_velocity_rate, lead_conversion_rate):
        assert math.isnan(f(only_customers, MARCH, AS_OF, ACTIVITY)), f.__name__
    assert cac_by_channel(only_customers, MARCH, AS_OF).empty
    assert rfm_segments(only_customers, AS_OF).empty
    # contractual: customers are known from created_at/churned_at alone
    assert customer_counts(only_customers, MARCH, AS_OF, CONTRACT) == customer_counts(
        d, MARCH, AS_OF, CONTRACT
    )
    # activity: who is active is unknown without purchases (N still is known)
    counts = customer_counts(only_customers, MARCH, AS_OF, ACTIVITY)
    assert counts["new_customers"] == 2
    assert all(math.isnan(counts[k]) for k in ("customers_start", "customers_end", "lost_customers"))
    assert math.isnan(churn_rate(only_customers, MARCH, AS_OF, ACTIVITY))


@pytest.mark.parametrize(
    "tables",
    [{"customers"}, {"transactions"}, {"customers", "transactions"}, set()],
    ids=["customers", "transactions", "customers+transactions", "nothing"],
)
@pytest.mark.parametrize("cfg", [CONTRACT, ACTIVITY], ids=["contractual", "activity"])
def test_compute_kpis_with_tables_missing(tables, cfg):
    d = _data()
    data = CRMData(**{t: d.get(t) for t in tables})
    res = compute_kpis(data, AS_OF, cfg.model_copy(update={"n_periods": 2}), model=_FlatClv(), rfm_bins=2)
    assert list(res.table.index) == ["2025-02", "2025-03"]
    row = res.table.loc["2025-03"]
    if "transactions" not in tables:
        assert math.isnan(row["revenue"]) and math.isnan(row["predicted_ltv"]) and res.segments.empty
    else:
        assert row["revenue"] == pytest.approx(380.0)
    assert math.isnan(row["cac"]) and math.isnan(row["qualified_leads"]) and res.cac_by_channel.empty
