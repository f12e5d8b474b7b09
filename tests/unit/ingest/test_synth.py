"""Tests of the synthetic CRM generator (crmscore.ingest.synth): contract, determinism, truth."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from crmscore.core.schema import SCHEMAS
from crmscore.ingest.synth import SyntheticCRM, TrueParams, generate, read_latent, read_truth, write_truth

START, END = date(2023, 1, 1), date(2025, 12, 31)
END_EXCL = pd.Timestamp("2026-01-01", tz="UTC")


def _zscore(diff: np.ndarray) -> float:
    """|mean| of per-unit differences in standard errors (a one-sample z statistic)."""
    return abs(diff.mean()) / (diff.std(ddof=1) / np.sqrt(diff.shape[0]))


@pytest.fixture(scope="module")
def big() -> SyntheticCRM:
    return generate(40_000, seed=7, start=START, end=END)


@pytest.fixture(scope="module")
def small() -> SyntheticCRM:
    return generate(3_000, seed=11, start=START, end=END)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames(small: SyntheticCRM) -> None:
    again = generate(3_000, seed=11, start=START, end=END)
    assert again.tables.keys() == small.tables.keys()
    for name, df in small.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], df, obj=name)
    for name, df in small.latent.items():
        pd.testing.assert_frame_equal(again.latent[name], df, obj=f"latent {name}")
    assert json.dumps(again.truth, sort_keys=True) == json.dumps(small.truth, sort_keys=True)


def test_different_seed_gives_different_data(small: SyntheticCRM) -> None:
    other = generate(3_000, seed=12, start=START, end=END)
    a, b = small.tables["transactions"], other.tables["transactions"]
    assert len(a) != len(b) or not np.allclose(a["amount"].to_numpy(), b["amount"].to_numpy())
    assert not small.tables["customers"]["created_at"].equals(other.tables["customers"]["created_at"])
    assert other.truth["seed"] == 12


# ---------------------------------------------------------------- contract


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_tables_match_canonical_schema(small: SyntheticCRM, table: str) -> None:
    spec = SCHEMAS[table]
    df = small.tables[table]
    assert len(df) > 0
    for col in spec.columns:
        assert col.name in df.columns, f"{table}.{col.name} missing"
        s = df[col.name]
        if col.kind == "timestamp":
            assert isinstance(s.dtype, pd.DatetimeTZDtype), f"{table}.{col.name}: {s.dtype}"
            assert str(s.dtype.tz) == "UTC"
            assert (s.dropna() < END_EXCL).all(), f"{table}.{col.name} after end"
            assert (s.dropna() >= pd.Timestamp(START, tz="UTC")).all()
        elif col.kind == "number":
            assert s.dtype == np.float64, f"{table}.{col.name}: {s.dtype}"
        elif col.kind in ("id", "text"):
            assert pd.api.types.is_string_dtype(s.dtype), f"{table}.{col.name}: {s.dtype}"
        if col.required:
            assert s.notna().all(), f"{table}.{col.name} has missing values"
    if spec.key is not None:
        assert df[spec.key].is_unique
    if spec.parent is not None:
        col, parent = spec.parent
        assert df[col].isin(small.tables[parent][SCHEMAS[parent].key or col]).all()


def test_id_formats(small: SyntheticCRM) -> None:
    t = small.tables
    assert t["customers"]["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert t["leads"]["lead_id"].str.fullmatch(r"L\d{7}").all()
    assert t["transactions"]["transaction_id"].str.fullmatch(r"T\d{9}").all()
    assert t["support_tickets"]["ticket_id"].str.fullmatch(r"K\d{8}").all()
    assert (t["transactions"]["currency"] == "EUR").all()


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        generate(0)
    with pytest.raises(ValueError):
        generate(100, start=END, end=START)
    with pytest.raises(ValueError, match="leads_per_customer"):
        generate(100, leads_per_customer=200.0)
    with pytest.raises(ValueError):
        TrueParams(q=0.5)


# ---------------------------------------------------------------- purchase process


def test_latent_marginals_are_exact_bgnbd_gamma_gamma(big: SyntheticCRM) -> None:
    lc, tr = big.latent["customers"], big.truth
    bg, gg = tr["bgnbd"], tr["gamma_gamma"]
    assert tr["time_unit"] == "week" and tr["days_per_unit"] == 7.0
    assert stats.kstest(lc["lam"], stats.gamma(bg["r"], scale=1 / bg["alpha"]).cdf).pvalue > 1e-3
    assert stats.kstest(lc["p"], stats.beta(bg["a"], bg["b"]).cdf).pvalue > 1e-3
    assert stats.kstest(lc["nu"], stats.gamma(gg["q"], scale=1 / gg["v"]).cdf).pvalue > 1e-3
    # u is the CDF of the latent value (the copula's uniform)
    np.testing.assert_allclose(lc["u_lam"], special.gammainc(bg["r"], bg["alpha"] * lc["lam"]), atol=1e-9)


def test_first_purchase_is_at_creation(big: SyntheticCRM) -> None:
    tx, cust = big.tables["transactions"], big.tables["customers"]
    first = tx[tx["amount"] > 0].groupby("customer_id")["ts"].min()
    created = cust.set_index("customer_id")["created_at"]
    pd.testing.assert_series_equal(first.sort_index(), created.sort_index(), check_names=False)


def test_repeat_counts_match_bgnbd_expectation(big: SyntheticCRM) -> None:
    """Observed repeats vs E[X(T) | lam, p] = (1 - exp(-lam p T)) / p (FHL 2005, eq. 7)."""
    tx, lc = big.tables["transactions"], big.latent["customers"]
    n_purchases = tx[tx["amount"] > 0].groupby("customer_id").size()
    repeats = (n_purchases.reindex(lc["customer_id"]).to_numpy() - 1).astype(float)
    np.testing.assert_array_equal(repeats, lc["repeats_observed"].to_numpy())
    lam, p, T = lc["lam"].to_numpy(), lc["p"].to_numpy(), lc["T"].to_numpy()
    expected = -np.expm1(-lam * p * T) / p
    assert _zscore(repeats - expected) < 4
    assert abs(repeats.mean() / expected.mean() - 1) < 0.05
    # P(alive at T | lam, p) = exp(-lam p T)
    alive = lc["alive_at_end"].to_numpy().astype(float)
    assert _zscore(alive - np.exp(-lam * p * T)) < 4
    assert 0.3 < alive.mean() < 0.8
    # dropout happens exactly at the last observed repeat purchase
    dead = lc[~lc["alive_at_end"]].set_index("customer_id")["dropout_time"]
    last = tx[tx["amount"] > 0].groupby("customer_id")["ts"].max().reindex(dead.index)
    assert (last == dead).all()
    assert lc.loc[lc["alive_at_end"], "dropout_time"].isna().all()


def test_spend_matches_gamma_gamma(big: SyntheticCRM) -> None:
    tx, lc, tr = big.tables["transactions"], big.latent["customers"], big.truth
    gg = tr["gamma_gamma"]
    purchases = tx[tx["amount"] > 0]
    true_mean = gg["p"] * gg["v"] / (gg["q"] - 1)
    assert true_mean == pytest.approx(tr["derived"]["mean_spend"])
    assert purchases["amount"].mean() == pytest.approx(true_mean, rel=0.05)
    # conditional on the customers' nu: E[z] = p_gg / nu per purchase
    mean_spend = lc.set_index("customer_id")["mean_spend"]
    expected = mean_spend.reindex(purchases["customer_id"]).to_numpy()
    assert _zscore(purchases["amount"].to_numpy() - expected) < 4


def test_refunds_are_extra_negative_rows(big: SyntheticCRM) -> None:
    tx, tr = big.tables["transactions"], big.truth
    refunds, purchases = tx[tx["amount"] < 0], tx[tx["amount"] > 0]
    assert len(refunds) + len(purchases) == len(tx)
    assert tr["counts"]["refunds"] == len(refunds) and tr["counts"]["purchases"] == len(purchases)
    rate = len(refunds) / len(purchases)
    # slightly under the true rate: refunds that would fall after the end are not generated
    assert tr["params"]["refund_rate"] * 0.85 < rate <= tr["params"]["refund_rate"] * 1.05
    # a refund follows one of its customer's purchases of at least the refunded amount
    m = refunds.merge(purchases, on="customer_id", suffixes=("_r", "_p"))
    m = m[(m["ts_p"] < m["ts_r"]) & (m["amount_p"] >= -m["amount_r"])]
    assert set(m["transaction_id_r"]) == set(refunds["transaction_id"])


# ---------------------------------------------------------------- customers


def test_subscription_churned_at(big: SyntheticCRM) -> None:
    cust, lc = big.tables["customers"], big.latent["customers"]
    churned = cust["churned_at"].notna()
    assert churned.sum() > 100
    assert (cust.loc[churned, "plan"] == "subscription").all()
    assert (churned <= ~lc["alive_at_end"]).all()
    delay = (cust["churned_at"] - lc["dropout_time"])[churned].dt.total_seconds() / 86400
    lo, hi = big.truth["params"]["notice_days"]
    assert delay.between(lo, hi).all()
    # every subscriber who dropped out early enough has a churned_at
    early = (cust["plan"] == "subscription") & (lc["dropout_time"] < END_EXCL - pd.Timedelta(days=hi))
    assert churned[early].all()


def test_attributes_carry_signal_about_latents(big: SyntheticCRM) -> None:
    cust, lc = big.tables["customers"], big.latent["customers"]
    self_serve = cust["acquisition_channel"].isin(["organic", "paid_search", "paid_social"])
    p_by_channel = lc["p"][self_serve].groupby(cust["acquisition_channel"][self_serve]).mean()
    assert p_by_channel["paid_social"] > p_by_channel["organic"] * 1.1
    sizes = ["1-10", "11-50", "51-200", "201-1000", "1000+"]
    spend_by_size = lc["mean_spend"][self_serve].groupby(cust["company_size"][self_serve]).median()
    assert spend_by_size[sizes[-1]] > spend_by_size[sizes[0]] * 1.3
    assert stats.spearmanr(cust["onboarding_score"], lc["p"]).statistic < -0.2
    assert cust["owner"].nunique() > 5


def test_marketing_spend_matches_acquisition_costs(big: SyntheticCRM) -> None:
    ms, cust = big.tables["marketing_spend"], big.tables["customers"]
    naive = ms["period"].dt.tz_localize(None)
    assert (naive == naive.dt.to_period("M").dt.start_time).all()
    assert ms["period"].nunique() == 36
    month = cust["created_at"].dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    expected = cust.groupby([month, cust["acquisition_channel"]])["acquisition_cost"].sum()
    got = ms.set_index(["period", "channel"])["amount"]
    got = got[got > 0]
    expected.index.names = got.index.names
    pd.testing.assert_series_equal(
        got.sort_index(), expected.sort_index(), check_names=False, atol=0.05, check_index_type=False
    )


# ---------------------------------------------------------------- tickets


def test_tickets_rise_before_dropout(big: SyntheticCRM) -> None:
    tk, cust, lc = big.tables["support_tickets"], big.tables["customers"], big.latent["customers"]
    window = pd.Timedelta(days=big.truth["params"]["pre_dropout_days"])
    info = pd.DataFrame(
        {"created_at": cust["created_at"].to_numpy(), "dropout": lc["dropout_time"].to_numpy()},
        index=cust["customer_id"],
    )
    # no ticket after the dropout
    t = tk.join(info, on="customer_id")
    assert not (t["opened_at"] >= t["dropout"]).any()
    # customers who lived at least a year before dropping out
    long = info[(info["dropout"] - info["created_at"]) > pd.Timedelta(days=365)]
    t = t[t["customer_id"].isin(long.index)]
    near = (t["opened_at"] >= t["dropout"] - window).sum()
    days_near = len(long) * window.days
    days_early = ((long["dropout"] - window - long["created_at"]).dt.total_seconds() / 86400).sum()
    rate_near, rate_early = near / days_near, (len(t) - near) / days_early
    assert rate_near > 3 * rate_early
    # tickets near churn are more urgent and less satisfied
    is_near = t["opened_at"] >= t["dropout"] - window
    assert t.loc[is_near, "csat"].mean() < t.loc[~is_near, "csat"].mean() - 1


def test_ticket_fields(big: SyntheticCRM) -> None:
    tk = big.tables["support_tickets"]
    closed = tk["closed_at"].notna()
    assert (tk.loc[closed, "closed_at"] > tk.loc[closed, "opened_at"]).all()
    assert 0 < (~closed).sum() < len(tk) * 0.01
    assert set(tk["priority"].unique()) == {"low", "normal", "high", "urgent"}
    csat = tk["csat"].dropna()
    assert set(csat.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 0.2 < tk["csat"].isna().mean() < 0.4
    assert tk.loc[~closed, "csat"].isna().all()


# ---------------------------------------------------------------- leads


def test_lead_conversion_follows_logistic_truth(big: SyntheticCRM) -> None:
    leads, ll, tr = big.tables["leads"], big.latent["leads"], big.truth["leads"]
    logit = np.full(len(leads), tr["intercept"])
    for attr, coefs in tr["coefficients"].items():
        logit += leads[attr].map(coefs).to_numpy(dtype=float)
    np.testing.assert_allclose(special.expit(logit), ll["p_convert"].to_numpy(), rtol=1e-12)
    decided = (ll["status_at_end"] != "open").to_numpy()
    converted = leads["converted_at"].notna().to_numpy()
    assert _zscore((converted - ll["p_convert"].to_numpy())[decided]) < 4
    # open leads exist and are recent (decision after the end)
    assert 0 < (~decided).sum() < 0.2 * len(leads)
    assert (ll.loc[~decided, "decision_at"] >= END_EXCL).all()
    assert leads.loc[~decided, "converted_at"].isna().all()


def test_converted_leads_are_customers(big: SyntheticCRM) -> None:
    leads, cust = big.tables["leads"], big.tables["customers"]
    conv = leads[leads["converted_at"].notna()]
    assert len(conv) > 1000
    assert leads.loc[leads["converted_at"].isna(), "customer_id"].isna().all()
    assert conv["customer_id"].is_unique
    m = conv.merge(cust, on="customer_id", how="left", suffixes=("_lead", ""))
    assert m["created_at"].notna().all()
    assert (m["created_at"] == m["converted_at"]).all()
    assert (m["converted_at"] > m["created_at_lead"]).all()
    assert (m["acquisition_channel"] == m["source"]).all()
    assert (m["industry"] == m["industry_lead"]).all()
    assert big.truth["counts"]["customers_from_leads"] == len(conv)


def test_lead_activities(big: SyntheticCRM) -> None:
    acts, leads, ll = big.tables["lead_activities"], big.tables["leads"], big.latent["leads"]
    a = acts.merge(leads[["lead_id", "created_at", "converted_at"]], on="lead_id")
    assert (a["ts"] >= a["created_at"]).all()
    conv = a["converted_at"].notna()
    assert (a.loc[conv, "ts"] <= a.loc[conv, "converted_at"]).all()
    per_lead = acts.groupby("lead_id").size().reindex(leads["lead_id"], fill_value=0)
    status = ll["status_at_end"].to_numpy()
    assert per_lead[status == "won"].mean() > 1.5 * per_lead[status == "lost"].mean()
    demo_share = a["activity"].isin(["demo", "meeting"]).groupby(conv).mean()
    assert demo_share[True] > 2 * demo_share[False]
    assert (acts.loc[acts["activity"] == "email_open", "channel"] == "email").all()


# ---------------------------------------------------------------- truth persistence


def test_truth_round_trip(small: SyntheticCRM, tmp_path) -> None:
    paths = write_truth(small, tmp_path / "truth")
    assert [p.name for p in paths] == ["truth.json", "truth_customers.parquet", "truth_leads.parquet"]
    assert all(p.exists() for p in paths)
    back = read_truth(tmp_path / "truth")
    assert back == json.loads(json.dumps(small.truth))
    assert back["bgnbd"] == {"r": 0.75, "alpha": 7.0, "a": 0.8, "b": 2.5}
    assert back["counts"]["customers"] == 3_000
    latent = read_latent(tmp_path / "truth")
    for name, df in small.latent.items():
        pd.testing.assert_frame_equal(latent[name], df, check_dtype=False, obj=name)
