"""The generative process of the synthetic CRM (:mod:`crmscore.ingest.synth`), as arrays.

Holds the true parameters (:class:`TrueParams`), the categorical vocabularies and the
known coefficients, and the processes themselves: leads and their activities, customers
with their latent ``(lam, p, nu)`` and copula attributes, the BG/NBD repeat purchases,
transactions with refunds, and support tickets (:func:`_simulate` runs them in order).
Every time is in days from the start of the window; the tables are built from these
arrays by :mod:`crmscore.ingest.synth_tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

# --- categorical vocabularies (ordered: the copula maps higher latent scores to later levels)
PLANS = ("starter", "professional", "subscription", "enterprise")
PLAN_PROBS = (0.35, 0.25, 0.28, 0.12)
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
COMPANY_SIZE_PROBS = (0.30, 0.30, 0.20, 0.13, 0.07)
INDUSTRIES = (
    "healthcare",
    "finance",
    "manufacturing",
    "technology",
    "services",
    "education",
    "media",
    "retail",
    "hospitality",
)
INDUSTRY_PROBS = (0.08, 0.10, 0.14, 0.16, 0.15, 0.07, 0.08, 0.14, 0.08)
REGIONS = ("south", "west", "central", "north", "east")
REGION_PROBS = (0.22, 0.24, 0.20, 0.18, 0.16)
SELF_SERVE_CHANNELS = ("organic", "paid_search", "paid_social")  # ordered by rising churn
SELF_SERVE_PROBS = (0.40, 0.35, 0.25)
LEAD_SOURCES = ("web_form", "referral", "partner", "event", "outbound")
LEAD_SOURCE_PROBS = (0.35, 0.12, 0.13, 0.15, 0.25)
BUDGETS = ("unknown", "<10k", "10k-50k", "50k+")
BUDGET_PROBS = (0.35, 0.30, 0.23, 0.12)
AUTHORITIES = ("none", "influencer", "decision_maker")
AUTHORITY_PROBS = (0.40, 0.35, 0.25)
NEEDS = ("low", "medium", "high")
NEED_PROBS = (0.35, 0.40, 0.25)
TIMELINES = ("unknown", ">6m", "3-6m", "<3m")
TIMELINE_PROBS = (0.35, 0.25, 0.22, 0.18)
PRODUCTS = ("software", "services", "training", "support")
PRODUCT_PROBS = (0.55, 0.20, 0.10, 0.15)
PRIORITIES = ("low", "normal", "high", "urgent")
ACTIVITIES = ("email_open", "email_click", "web_visit", "webinar", "call", "demo", "meeting")
CHANNELS = ("email", "web", "phone", "video", "in_person")
OWNERS = (
    "Alex Meyer",
    "Bea Schmidt",
    "Carl Jensen",
    "Dana Rossi",
    "Emil Novak",
    "Fay Dubois",
    "Gus Lindqvist",
    "Hana Kowalska",
    "Ivo Petrov",
    "Jule Martin",
    "Kai Berger",
    "Lea Moreau",
    "Max Fischer",
    "Nina Horvat",
    "Oli Andersen",
)

#: Mean acquisition cost (EUR) per acquisition channel.
CHANNEL_COST: dict[str, float] = {
    "organic": 15.0,
    "paid_search": 120.0,
    "paid_social": 80.0,
    "web_form": 150.0,
    "referral": 90.0,
    "partner": 250.0,
    "event": 400.0,
    "outbound": 500.0,
}

#: Logistic model of lead conversion: logit(p) = intercept + sum of level coefficients.
LEAD_COEFFICIENTS: dict[str, dict[str, float]] = {
    "source": {"web_form": 0.0, "referral": 1.0, "partner": 0.6, "event": 0.3, "outbound": -0.5},
    "industry": dict.fromkeys(INDUSTRIES, 0.0) | {"technology": 0.3, "finance": 0.2, "retail": -0.2},
    "company_size": {"1-10": -0.3, "11-50": 0.0, "51-200": 0.2, "201-1000": 0.3, "1000+": 0.1},
    "budget": {"unknown": 0.0, "<10k": 0.2, "10k-50k": 0.7, "50k+": 1.0},
    "authority": {"none": 0.0, "influencer": 0.5, "decision_maker": 1.1},
    "need": {"low": 0.0, "medium": 0.6, "high": 1.3},
    "timeline": {"unknown": 0.0, ">6m": -0.2, "3-6m": 0.4, "<3m": 0.9},
}
LEAD_INTERCEPT = -3.9


@dataclass(frozen=True)
class TrueParams:
    """True population parameters of the synthetic CRM (all written to ``truth``).

    Rates of the purchase process are per week; durations named ``*_days`` are in days.
    """

    # BG/NBD (Fader, Hardie & Lee 2005): lam ~ Gamma(r, rate alpha) per week, p ~ Beta(a, b)
    r: float = 0.75
    alpha: float = 7.0
    a: float = 0.8
    b: float = 2.5
    # Gamma-Gamma (Fader & Hardie 2013): z ~ Gamma(p_gg, rate nu), nu ~ Gamma(q, rate v)
    p_gg: float = 6.0
    q: float = 4.0
    v: float = 50.0
    # acquisition intensity grows linearly: (1 + growth * t / window)
    growth: float = 1.0
    acquisition_cost_sigma: float = 0.25
    # refunds (extra negative rows)
    refund_rate: float = 0.03
    refund_full_share: float = 0.5
    refund_delay_days: tuple[float, float] = (1.0, 14.0)
    # subscription notice delay (uniform, days)
    notice_days: tuple[float, float] = (7.0, 30.0)
    # support tickets
    ticket_rate_per_day: float = 1.0 / 180.0
    ticket_rate_shape: float = 2.0
    pre_dropout_days: float = 60.0
    pre_dropout_multiplier: float = 6.0
    csat_missing: float = 0.3
    # leads
    lead_decision_shape: float = 2.0
    lead_decision_scale_days: float = 15.0
    activities_lost: float = 1.5
    activities_won: float = 4.0
    # copula strengths
    rho_plan: float = 0.6
    rho_company_size: float = 0.6
    rho_industry: float = 0.4
    rho_region: float = 0.2
    rho_channel: float = 0.4
    rho_onboarding: float = 0.5

    def __post_init__(self) -> None:
        positive = ("r", "alpha", "a", "b", "p_gg", "q", "v", "ticket_rate_per_day")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrueParams.{name} must be positive")
        if self.q <= 1:
            raise ValueError("TrueParams.q must exceed 1 (mean spend p_gg * v / (q - 1))")
        if self.growth < 0:
            raise ValueError("TrueParams.growth must be non-negative")
        if not 0 <= self.refund_rate < 1:
            raise ValueError("TrueParams.refund_rate must be in [0, 1)")


@dataclass(frozen=True)
class _Simulation:
    """The simulated arrays of one CRM (times in days from the start of the window)."""

    leads: dict[str, Any]
    activities: dict[str, np.ndarray]
    customers: dict[str, Any]
    repeats: dict[str, np.ndarray]
    transactions: dict[str, np.ndarray]
    tickets: dict[str, np.ndarray]
    ticket_base: np.ndarray


def _simulate(
    rngs: Sequence[np.random.Generator], n_customers: int, n_leads: int, window_days: float, prm: TrueParams
) -> _Simulation:
    """Run the processes in order, each on its own generator.

    ``rngs`` are those of the leads, the activities, the customers, the purchases, the
    transactions and the tickets.
    """
    rng_leads, rng_act, rng_cust, rng_buy, rng_tx, rng_tick = rngs
    leads = _simulate_leads(rng_leads, n_leads, window_days, prm)
    acts = _lead_activities(rng_act, leads, window_days, prm)
    cust = _simulate_customers(rng_cust, n_customers, leads, window_days, prm)
    rep = _simulate_purchases(rng_buy, cust, window_days)
    tx = _transactions(rng_tx, cust, rep, window_days, prm)
    tickets, ticket_base = _tickets(rng_tick, cust, rep, window_days, prm)
    return _Simulation(leads, acts, cust, rep, tx, tickets, ticket_base)


# --------------------------------------------------------------------------------------
# small vectorised helpers
# --------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, probs: tuple[float, ...], n: int) -> np.ndarray:
    """Codes drawn iid from ``probs`` (vectorised inverse CDF)."""
    cum = np.cumsum(probs)
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(probs) - 1)


def _choice_rows(rng: np.random.Generator, row: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Codes drawn from ``table[row]`` (one probability vector per row of ``table``).

    One ``searchsorted`` over the row-offset cumulative table (row ``i`` spans ``[i, i + 1)``).
    """
    table = np.asarray(table, dtype=float)
    k = table.shape[1]
    cum = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    flat = (cum + np.arange(table.shape[0])[:, None]).ravel()
    pos = np.searchsorted(flat, row + rng.random(row.shape[0]), side="right")
    return np.clip(pos - row * k, 0, k - 1)


def _copula_codes(
    rng: np.random.Generator, g: np.ndarray, rho: float, probs: tuple[float, ...]
) -> np.ndarray:
    """Category codes from a latent normal score ``g`` (Gaussian copula).

    ``z = rho * g + sqrt(1 - rho^2) * eps`` is standard normal, and is cut at the normal
    quantiles of the cumulative ``probs``, so the marginal shares are exactly ``probs`` and
    higher ``g`` makes later categories likelier.
    """
    z = rho * g + np.sqrt(1.0 - rho**2) * rng.standard_normal(g.shape[0])
    cuts = stats.norm.ppf(np.cumsum(probs)[:-1] / np.sum(probs))
    return np.searchsorted(cuts, z)


def _birth_days(rng: np.random.Generator, n: int, window_days: float, growth: float) -> np.ndarray:
    """Acquisition times in days from the start, density proportional to ``1 + growth * x``."""
    u = rng.random(n)
    if growth == 0:
        return u * window_days
    return (np.sqrt(1.0 + 2.0 * growth * (1.0 + growth / 2.0) * u) - 1.0) / growth * window_days


def _group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at each group of ``counts`` consecutive rows."""
    total = np.cumsum(values)
    ends = np.cumsum(counts)
    starts = ends - counts
    offset = np.concatenate(([0.0], total))[starts]
    return total - np.repeat(offset, counts)


# --------------------------------------------------------------------------------------
# leads
# --------------------------------------------------------------------------------------


def _simulate_leads(
    rng: np.random.Generator, n_leads: int, window_days: float, prm: TrueParams
) -> dict[str, Any]:
    """Lead attributes, logistic conversion probability, outcome and decision time (days)."""
    attrs = {
        "source": (_choice(rng, LEAD_SOURCE_PROBS, n_leads), LEAD_SOURCES),
        "industry": (_choice(rng, INDUSTRY_PROBS, n_leads), INDUSTRIES),
        "company_size": (_choice(rng, COMPANY_SIZE_PROBS, n_leads), COMPANY_SIZES),
        "budget": (_choice(rng, BUDGET_PROBS, n_leads), BUDGETS),
        "authority": (_choice(rng, AUTHORITY_PROBS, n_leads), AUTHORITIES),
        "need": (_choice(rng, NEED_PROBS, n_leads), NEEDS),
        "timeline": (_choice(rng, TIMELINE_PROBS, n_leads), TIMELINES),
    }
    logit = np.full(n_leads, LEAD_INTERCEPT)
    for name, (codes, labels) in attrs.items():
        coef = np.array([LEAD_COEFFICIENTS[name][lab] for lab in labels])
        logit += coef[codes]
    p_convert = special.expit(logit)
    wins = rng.random(n_leads) < p_convert
    created = np.sort(_birth_days(rng, n_leads, window_days, prm.growth))
    delay = rng.gamma(prm.lead_decision_shape, prm.lead_decision_scale_days, n_leads)
    decision = created + delay
    return {
        "attrs": attrs,
        "p_convert": p_convert,
        "wins": wins,
        "created": created,
        "decision": decision,
        "decided": decision < window_days,
    }


def _lead_activities(
    rng: np.random.Generator, leads: dict[str, Any], window_days: float, prm: TrueParams
) -> dict[str, np.ndarray]:
    """Activities spread uniformly between lead creation and decision (truncated at the end).

    Each lead gets ``1 + Poisson(mu)`` activities (``mu`` larger for leads that convert);
    their times are uniform order statistics on the lead's span, drawn already sorted as
    normalised partial sums of exponentials, so no sort is needed.
    """
    wins = leads["wins"]
    counts = 1 + rng.poisson(np.where(wins, prm.activities_won, prm.activities_lost))
    # c + 1 exponential spacings per lead: t_k = G_k / G_{c+1}, k = 1..c
    G = _group_cumsum(rng.standard_exponential(int(counts.sum() + counts.shape[0])), counts + 1)
    ends = np.cumsum(counts + 1) - 1
    keep_slot = np.ones(G.shape[0], dtype=bool)
    keep_slot[ends] = False
    frac = G[keep_slot] / np.repeat(G[ends], counts)
    lead_idx = np.repeat(np.arange(wins.shape[0]), counts)
    created = leads["created"][lead_idx]
    t = created + frac * (leads["decision"][lead_idx] - created)
    keep = t < window_days
    lead_idx, t = lead_idx[keep], t[keep]
    won = wins[lead_idx]
    act_probs = np.array(
        [
            [0.35, 0.10, 0.30, 0.05, 0.12, 0.04, 0.04],  # lost
            [0.20, 0.10, 0.20, 0.05, 0.15, 0.15, 0.15],  # won
        ]
    )
    act = _choice_rows(rng, won.astype(np.int64), act_probs)
    # channel given activity: rows = ACTIVITIES, columns = CHANNELS
    channel_probs = np.array(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.6, 0.0, 0.4, 0.0],
            [0.0, 0.0, 0.8, 0.2, 0.0],
            [0.0, 0.0, 0.0, 0.7, 0.3],
            [0.0, 0.0, 0.1, 0.4, 0.5],
        ]
    )
    chan = _choice_rows(rng, act, channel_probs)
    return {"lead_idx": lead_idx, "t": t, "activity": act, "channel": chan}


# --------------------------------------------------------------------------------------
# customers and their purchase process
# --------------------------------------------------------------------------------------


def _simulate_customers(
    rng: np.random.Generator,
    n: int,
    leads: dict[str, Any],
    window_days: float,
    prm: TrueParams,
) -> dict[str, Any]:
    """Customers: acquisition time, channel, latent (lam, p, nu) and copula attributes."""
    won = np.flatnonzero(leads["wins"] & leads["decided"])
    n_lead = won.shape[0]
    if n_lead > n:
        raise ValueError(
            f"{n_lead} leads converted but only {n} customers requested: lower leads_per_customer"
        )
    n_self = n - n_lead
    birth = np.concatenate([leads["decision"][won], _birth_days(rng, n_self, window_days, prm.growth)])
    lead_of = np.concatenate([won, np.full(n_self, -1)])
    order = np.argsort(birth, kind="stable")
    birth, lead_of = birth[order], lead_of[order]
    from_lead = lead_of >= 0

    # Draw the latents forward and get their uniforms through the CDF: the same joint law
    # as u ~ U(0, 1), lam = F^-1(u), at a fraction of the cost of the inverse functions.
    lam = rng.gamma(prm.r, 1.0 / prm.alpha, n)
    p = rng.beta(prm.a, prm.b, n)
    nu = rng.gamma(prm.q, 1.0 / prm.v, n)
    tiny = 1e-12
    u_lam = np.clip(special.gammainc(prm.r, prm.alpha * lam), tiny, 1 - tiny)
    u_p = np.clip(special.betainc(prm.a, prm.b, p), tiny, 1 - tiny)
    u_nu = np.clip(special.gammainc(prm.q, prm.v * nu), tiny, 1 - tiny)
    g_lam, g_p, g_nu = special.ndtri(u_lam), special.ndtri(u_p), special.ndtri(u_nu)

    plan = _copula_codes(rng, (g_lam - g_p) / np.sqrt(2.0), prm.rho_plan, PLAN_PROBS)
    size = _copula_codes(rng, -g_nu, prm.rho_company_size, COMPANY_SIZE_PROBS)
    industry = _copula_codes(rng, g_p, prm.rho_industry, INDUSTRY_PROBS)
    region = _copula_codes(rng, g_lam, prm.rho_region, REGION_PROBS)
    channel_self = _copula_codes(rng, g_p, prm.rho_channel, SELF_SERVE_PROBS)
    onboarding = special.ndtr(
        prm.rho_onboarding * -g_p + np.sqrt(1 - prm.rho_onboarding**2) * rng.standard_normal(n)
    )
    onboarding = np.round(100.0 * onboarding, 1)

    li = lead_of[from_lead]
    size[from_lead] = leads["attrs"]["company_size"][0][li]
    industry[from_lead] = leads["attrs"]["industry"][0][li]
    all_channels = SELF_SERVE_CHANNELS + LEAD_SOURCES
    channel = channel_self.copy()
    channel[from_lead] = len(SELF_SERVE_CHANNELS) + leads["attrs"]["source"][0][li]
    mean_cost = np.array([CHANNEL_COST[c] for c in all_channels])[channel]
    s = prm.acquisition_cost_sigma
    cost = np.round(mean_cost * rng.lognormal(-(s**2) / 2.0, s, n), 2)
    owner = (region * 3 + rng.integers(0, 3, n)) % len(OWNERS)

    return {
        "birth": birth,
        "lead_of": lead_of,
        "u_lam": u_lam,
        "u_p": u_p,
        "u_nu": u_nu,
        "lam": lam,
        "p": p,
        "nu": nu,
        "plan": plan,
        "company_size": size,
        "industry": industry,
        "region": region,
        "channel": channel,
        "channels": all_channels,
        "acquisition_cost": cost,
        "onboarding_score": onboarding,
        "owner": owner,
    }


def _simulate_purchases(
    rng: np.random.Generator, cust: dict[str, Any], window_days: float
) -> dict[str, np.ndarray]:
    """Repeat purchase times of the BG/NBD process, exactly, without per-customer loops.

    With ``N ~ Poisson(lam T)`` arrivals in ``(0, T]`` and ``J ~ Geometric(p)``, the customer
    makes ``K = min(N, J)`` observed repeats and is alive at the end iff ``J > N``. The first
    ``K`` of ``N`` uniform order statistics on ``(0, T]`` are ``T * G_k / G_{N+1}`` where
    ``G_k`` are partial sums of standard exponentials and ``G_{N+1} = G_K + Gamma(N + 1 - K)``.
    """
    T = (window_days - cust["birth"]) / 7.0
    N = rng.poisson(cust["lam"] * T)
    J = rng.geometric(cust["p"])
    K = np.minimum(N, J)
    alive = J > N
    G = _group_cumsum(rng.standard_exponential(int(K.sum())), K)
    last = np.zeros(K.shape[0])
    has = K > 0
    last[has] = G[np.cumsum(K)[has] - 1]
    total = last + rng.gamma(N - K + 1.0)
    owner = np.repeat(np.arange(K.shape[0]), K)
    t_weeks = T[owner] * G / total[owner]
    dropout_days = np.full(K.shape[0], np.nan)
    dead = ~alive
    dropout_days[dead] = cust["birth"][dead] + 7.0 * t_weeks[np.cumsum(K)[dead] - 1]
    return {
        "T": T,
        "J": J,
        "K": K,
        "alive": alive,
        "owner": owner,
        "t_days": cust["birth"][owner] + 7.0 * t_weeks,
        "dropout_days": dropout_days,
    }


def _transactions(
    rng: np.random.Generator,
    cust: dict[str, Any],
    rep: dict[str, np.ndarray],
    window_days: float,
    prm: TrueParams,
) -> dict[str, np.ndarray]:
    """Purchases (first + repeats) with Gamma-Gamma amounts, plus refund rows."""
    n = cust["birth"].shape[0]
    who = np.concatenate([np.arange(n), rep["owner"]])
    t = np.concatenate([cust["birth"], rep["t_days"]])
    m = who.shape[0]
    amount = np.round(rng.gamma(prm.p_gg, 1.0 / cust["nu"][who]), 2)
    amount = np.maximum(amount, 0.01)
    product = _choice(rng, PRODUCT_PROBS, m)
    quantity = 1.0 + rng.poisson(0.3, m)

    refunded = np.flatnonzero(rng.random(m) < prm.refund_rate)
    lo, hi = prm.refund_delay_days
    rt = t[refunded] + rng.uniform(lo, hi, refunded.shape[0])
    ok = rt < window_days
    refunded, rt = refunded[ok], rt[ok]
    full = rng.random(refunded.shape[0]) < prm.refund_full_share
    share = np.where(full, 1.0, rng.uniform(0.1, 0.9, refunded.shape[0]))
    r_amount = -np.maximum(np.round(amount[refunded] * share, 2), 0.01)
    r_qty = np.where(full, -quantity[refunded], 0.0)

    return {
        "who": np.concatenate([who, who[refunded]]),
        "t": np.concatenate([t, rt]),
        "amount": np.concatenate([amount, r_amount]),
        "product": np.concatenate([product, product[refunded]]),
        "quantity": np.concatenate([quantity, r_qty]),
        "n_purchases": np.int64(m),
    }


def _tickets(
    rng: np.random.Generator,
    cust: dict[str, Any],
    rep: dict[str, np.ndarray],
    window_days: float,
    prm: TrueParams,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Support tickets: base Poisson rate while alive, multiplied before the dropout."""
    n = cust["birth"].shape[0]
    base = prm.ticket_rate_per_day * rng.gamma(prm.ticket_rate_shape, 1.0 / prm.ticket_rate_shape, n)
    stop = np.where(rep["alive"], window_days, rep["dropout_days"])
    w0 = np.where(rep["alive"], stop, np.maximum(cust["birth"], stop - prm.pre_dropout_days))
    seg_start = np.concatenate([cust["birth"], w0])
    seg_end = np.concatenate([w0, stop])
    rate = np.concatenate([base, base * prm.pre_dropout_multiplier])
    counts = rng.poisson(rate * np.maximum(seg_end - seg_start, 0.0))
    seg = np.repeat(np.arange(2 * n), counts)
    opened = seg_start[seg] + rng.random(seg.shape[0]) * (seg_end[seg] - seg_start[seg])
    near = seg >= n
    who = seg % n
    k = seg.shape[0]
    near_row = near.astype(np.int64)
    pri = _choice_rows(rng, near_row, np.array([[0.35, 0.45, 0.15, 0.05], [0.15, 0.40, 0.30, 0.15]]))
    hours = rng.gamma(1.5, np.array([72.0, 48.0, 24.0, 8.0])[pri] / 1.5)
    closed = opened + hours / 24.0
    still_open = closed >= window_days
    csat_probs = np.array([[0.04, 0.06, 0.15, 0.35, 0.40], [0.30, 0.30, 0.20, 0.12, 0.08]])
    csat = 1.0 + _choice_rows(rng, near_row, csat_probs)
    csat[still_open | (rng.random(k) < prm.csat_missing)] = np.nan
    order = np.lexsort((opened, who))
    out = {
        "who": who[order],
        "opened": opened[order],
        "closed": closed[order],
        "still_open": still_open[order],
        "priority": pri[order],
        "csat": csat[order],
    }
    return out, base
