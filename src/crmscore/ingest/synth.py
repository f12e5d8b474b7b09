"""Seeded synthetic CRM with known ground truth (demo data, tests, benchmarks).

The generator draws every table of the canonical contract (:mod:`crmscore.core.schema`) from a
known generative process and returns the process' parameters (``truth``) and each
entity's latent values (``latent``), so that estimators can be checked against the truth.

Generative process
------------------
*Time unit.* Purchase rates are per **week** (``days / 7``), as in the BG/NBD literature.
All timestamps are timezone-aware UTC, lie in ``[start 00:00, end + 1 day)`` (nothing is
dated after the end of day ``end``; see :mod:`crmscore.core.time`) and carry a
continuous time of day.

*Customers* are acquired over the window with a linearly growing intensity (twice as many
per day at the end as at the start), either self-serve (channels ``organic``,
``paid_search``, ``paid_social``) or by converting a lead (their ``created_at`` is the
lead's ``converted_at`` and their channel the lead's ``source``).

*Transactions* follow a true BG/NBD process (Fader, Hardie & Lee 2005) with Gamma-Gamma
spend (Fader & Hardie 2013):

* each customer has three latent uniforms ``u_lam, u_p, u_nu`` (iid, independent of the
  acquisition time), and ``lam = Gamma(r, rate=alpha).ppf(u_lam)``,
  ``p = Beta(a, b).ppf(u_p)``, ``nu = Gamma(q, rate=v).ppf(u_nu)``; the *marginal*
  population is therefore exactly BG/NBD / Gamma-Gamma with the parameters in ``truth``;
* attributes (``plan``, ``company_size``, ``industry``, ``region``, ``onboarding_score``,
  self-serve ``acquisition_channel``) are noisy functions of those uniforms (Gaussian
  copula: ``z = rho * Phi^-1(u) + sqrt(1 - rho^2) * eps`` cut at the attribute's marginal
  quantiles), so they predict behaviour without changing the marginal law. For customers
  acquired through a lead, ``industry`` and ``company_size`` are copied from the lead and
  carry no information about ``lam, p, nu``;
* the first purchase happens at ``created_at`` (time 0); repeat purchases follow a
  Poisson process of rate ``lam`` while alive; after each *repeat* purchase the customer
  drops out with probability ``p`` (``J ~ Geometric(p)`` on ``{1, 2, ...}`` repeats; the
  dropout happens at the ``J``-th repeat purchase);
* every purchase's amount is ``Gamma(shape=p_gg, rate=nu)`` (rounded to cents), so a
  customer's mean spend is ``p_gg / nu`` and the population mean ``p_gg * v / (q - 1)``.

*Refunds* are **extra rows, not purchases**: a fraction ``refund_rate`` of purchases gets a
later row with a negative amount (full or partial), a few days later and before the end
(refunds that would fall after the end are not generated). Counting purchases means
counting rows with ``amount > 0``.

*Subscriptions.* Customers with ``plan == "subscription"`` have a contractual
``churned_at`` = dropout time + a notice delay; it is NaT when the customer is alive at the
end or the notice period ends after the end. Other plans never have a ``churned_at``.

*Support tickets* arrive as a Poisson process with a per-customer base rate while the
customer is alive, multiplied in the ``pre_dropout_days`` before the dropout; tickets in
that window are more often high/urgent and get lower CSAT.

*Leads* have BANT-style attributes; conversion follows a known logistic model (``truth
["leads"]["coefficients"]``, per-lead ``p_convert`` in ``latent["leads"]``); the decision
(won or lost) happens a Gamma-distributed delay after creation; leads whose decision
falls after the end are still open. Activities are spread between creation and decision,
more of them (and more demos and meetings) for leads that convert.

*Marketing spend* per (month, channel) is the sum of the acquisition costs of the
customers acquired through that channel in that month.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import special, stats

from crmscore.core.serial import jsonable

__all__ = [
    "SyntheticCRM",
    "TrueParams",
    "generate",
    "read_latent",
    "read_truth",
    "write_truth",
]

logger = logging.getLogger(__name__)

_US_PER_DAY = 86_400_000_000
_STR = pd.StringDtype(na_value=np.nan)
_TS = "datetime64[us, UTC]"

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


@dataclass
class SyntheticCRM:
    """A generated CRM and its ground truth.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Canonical tables (:data:`crmscore.core.schema.SCHEMAS`): customers, transactions, leads,
        lead_activities, support_tickets, marketing_spend.
    truth : dict
        JSON-serialisable population parameters, units, seed, window and row counts.
    latent : dict of str to DataFrame
        Per-entity latent truth: ``"customers"`` (``lam``, ``p``, ``nu``, ``dropout_time``,
        ``alive_at_end``, ...) and ``"leads"`` (``p_convert``, ``decision_at``, ...).
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, Any]
    latent: dict[str, pd.DataFrame] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# small vectorised helpers
# --------------------------------------------------------------------------------------


_DIGITS4 = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype=np.uint8).reshape(
    10_000, 4
)


def _ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    """Arrow string array ``prefix + zero-padded 1..n`` built without Python loops."""
    width = max(width, len(str(n)))
    padded = -(-width // 4) * 4
    digits = np.empty((n, padded), dtype=np.uint8)
    x = np.arange(1, n + 1, dtype=np.int64)
    for j in range(padded // 4 - 1, -1, -1):
        digits[:, 4 * j : 4 * j + 4] = _DIGITS4[x % 10_000]
        x //= 10_000
    buf = np.empty((n, len(prefix) + width), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    buf[:, len(prefix) :] = digits[:, padded - width :]
    w = buf.shape[1]
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))


def _take_str(values: pa.Array, idx: np.ndarray) -> pd.Series:
    """String Series ``values[idx]``; negative ``idx`` gives missing values."""
    mask = idx < 0
    indices = pa.array(np.where(mask, 0, idx).astype(np.int64), mask=mask)
    return pd.Series(values.take(indices), dtype=_STR)


def _cat_str(codes: np.ndarray, labels: tuple[str, ...]) -> pd.Series:
    """String Series of ``labels[codes]`` (via an Arrow dictionary, fast for many rows)."""
    arr = pa.array(list(labels), type=pa.large_string()).take(pa.array(codes.astype(np.int32)))
    return pd.Series(arr, dtype=_STR)


def _ts(us: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
    """UTC timestamps from integer microseconds since the epoch (``missing`` → NaT)."""
    vals = us.astype("datetime64[us]")
    if missing is not None:
        vals[missing] = np.datetime64("NaT")
    return pd.Series(pd.DatetimeIndex(vals).tz_localize("UTC"))


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


def _days_to_us(start_us: int, days: np.ndarray) -> np.ndarray:
    return start_us + np.round(days * _US_PER_DAY).astype(np.int64)


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


# --------------------------------------------------------------------------------------
# assembly
# --------------------------------------------------------------------------------------


def _window(start: date, end: date) -> tuple[int, float, pd.Timestamp, pd.Timestamp]:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    start_ts = pd.Timestamp(start).tz_localize("UTC")
    end_excl = pd.Timestamp(end).tz_localize("UTC") + pd.Timedelta(days=1)
    start_us = (start - date(1970, 1, 1)).days * _US_PER_DAY
    window_days = (end_excl - start_ts) / pd.Timedelta(days=1)
    return start_us, float(window_days), start_ts, end_excl


def generate(
    n_customers: int,
    *,
    seed: int = 42,
    start: date = date(2023, 1, 1),
    end: date = date(2025, 12, 31),
    leads_per_customer: float = 3.0,
    params: TrueParams | None = None,
) -> SyntheticCRM:
    """Generate a synthetic CRM with known ground truth.

    Parameters
    ----------
    n_customers : int
        Number of customers (each has at least its first purchase).
    seed : int
        Seed of :class:`numpy.random.SeedSequence`; the same arguments give identical frames.
    start, end : date
        First and last calendar day (UTC) of the window; every timestamp lies in
        ``[start 00:00, end + 1 day)``.
    leads_per_customer : float
        Number of leads generated per customer (``round(leads_per_customer * n_customers)``).
        The leads that convert before the end become customers; the rest are self-serve.
    params : TrueParams, optional
        True population parameters; defaults to :class:`TrueParams()`.

    Returns
    -------
    SyntheticCRM
        Canonical tables, the truth (JSON-serialisable) and per-entity latent values.

    Raises
    ------
    ValueError
        Bad arguments, or more converted leads than ``n_customers``.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be positive")
    if leads_per_customer < 0:
        raise ValueError("leads_per_customer must be non-negative")
    prm = params or TrueParams()
    t0 = time.perf_counter()
    start_us, window_days, start_ts, end_excl = _window(start, end)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    rng_leads, rng_act, rng_cust, rng_buy, rng_tx, rng_tick, rng_misc = rngs

    n_leads = round(leads_per_customer * n_customers)
    leads = _simulate_leads(rng_leads, n_leads, window_days, prm)
    acts = _lead_activities(rng_act, leads, window_days, prm)
    cust = _simulate_customers(rng_cust, n_customers, leads, window_days, prm)
    rep = _simulate_purchases(rng_buy, cust, window_days)
    tx = _transactions(rng_tx, cust, rep, window_days, prm)
    tickets, ticket_base = _tickets(rng_tick, cust, rep, window_days, prm)
    logger.debug("simulated in %.2f s", time.perf_counter() - t0)

    cust_ids = _ids("C", n_customers)
    lead_ids = _ids("L", n_leads)
    tables, latent = _assemble(
        rng_misc,
        start_us,
        window_days,
        prm,
        cust,
        rep,
        tx,
        tickets,
        ticket_base,
        leads,
        acts,
        cust_ids,
        lead_ids,
    )
    truth = _truth(seed, start, end, start_ts, end_excl, prm, n_leads, tables, latent, tx)
    logger.info(
        "generated %d customers, %d transactions, %d leads in %.2f s",
        n_customers,
        len(tables["transactions"]),
        n_leads,
        time.perf_counter() - t0,
    )
    return SyntheticCRM(tables=tables, truth=truth, latent=latent)


def _assemble(
    rng: np.random.Generator,
    start_us: int,
    window_days: float,
    prm: TrueParams,
    cust: dict[str, Any],
    rep: dict[str, np.ndarray],
    tx: dict[str, np.ndarray],
    tickets: dict[str, np.ndarray],
    ticket_base: np.ndarray,
    leads: dict[str, Any],
    acts: dict[str, np.ndarray],
    cust_ids: pa.Array,
    lead_ids: pa.Array,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Build the canonical tables and latent frames from the simulated arrays."""
    n = cust["birth"].shape[0]
    end_us = start_us + round(window_days * _US_PER_DAY)
    birth_us = _days_to_us(start_us, cust["birth"])
    alive = rep["alive"]
    dropout_us = _days_to_us(start_us, np.nan_to_num(rep["dropout_days"], nan=0.0))
    is_sub = cust["plan"] == PLANS.index("subscription")
    notice = rng.uniform(*prm.notice_days, n)
    churn_us = _days_to_us(start_us, np.nan_to_num(rep["dropout_days"], nan=0.0) + notice)
    churn_missing = alive | ~is_sub | (churn_us >= end_us)

    cust_idx_of_lead = np.full(leads["wins"].shape[0], -1, dtype=np.int64)
    from_lead = cust["lead_of"] >= 0
    cust_idx_of_lead[cust["lead_of"][from_lead]] = np.flatnonzero(from_lead)

    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(cust_ids, dtype=_STR),
            "created_at": _ts(birth_us),
            "churned_at": _ts(churn_us, churn_missing),
            "acquisition_cost": cust["acquisition_cost"],
            "acquisition_channel": _cat_str(cust["channel"], cust["channels"]),
            "owner": _cat_str(cust["owner"], OWNERS),
            "region": _cat_str(cust["region"], REGIONS),
            "industry": _cat_str(cust["industry"], INDUSTRIES),
            "company_size": _cat_str(cust["company_size"], COMPANY_SIZES),
            "plan": _cat_str(cust["plan"], PLANS),
            "onboarding_score": cust["onboarding_score"],
        }
    )

    # transactions sorted by customer then time (sequential id lookups); ids in that order
    tx_us = np.minimum(_days_to_us(start_us, tx["t"]), end_us - 1)
    order = np.lexsort((tx_us, tx["who"]))
    m = order.shape[0]
    transactions = pd.DataFrame(
        {
            "transaction_id": pd.Series(_ids("T", m, 9), dtype=_STR),
            "customer_id": _take_str(cust_ids, tx["who"][order]),
            "ts": _ts(tx_us[order]),
            "amount": tx["amount"][order],
            "currency": _cat_str(np.zeros(m, np.int8), ("EUR",)),
            "quantity": tx["quantity"][order],
            "product": _cat_str(tx["product"][order], PRODUCTS),
        }
    )

    k = tickets["who"].shape[0]
    support_tickets = pd.DataFrame(
        {
            "ticket_id": pd.Series(_ids("K", k, 8), dtype=_STR),
            "customer_id": _take_str(cust_ids, tickets["who"]),
            "opened_at": _ts(np.minimum(_days_to_us(start_us, tickets["opened"]), end_us - 1)),
            "closed_at": _ts(_days_to_us(start_us, tickets["closed"]), tickets["still_open"]),
            "priority": _cat_str(tickets["priority"], PRIORITIES),
            "csat": tickets["csat"],
        }
    )

    lead_created_us = _days_to_us(start_us, leads["created"])
    converted = leads["wins"] & leads["decided"]
    lead_cust = np.where(converted, cust_idx_of_lead, -1)
    conv_us = np.where(converted, birth_us[np.maximum(lead_cust, 0)], 0)
    lead_frame = {
        "lead_id": pd.Series(lead_ids, dtype=_STR),
        "created_at": _ts(lead_created_us),
        "converted_at": _ts(conv_us, ~converted),
        "customer_id": _take_str(cust_ids, lead_cust),
    }
    for name, (codes, labels) in leads["attrs"].items():
        lead_frame[name] = _cat_str(codes, labels)
    leads_df = pd.DataFrame(lead_frame)

    lead_activities = pd.DataFrame(
        {
            "lead_id": _take_str(lead_ids, acts["lead_idx"]),
            "ts": _ts(np.minimum(_days_to_us(start_us, acts["t"]), end_us - 1)),
            "activity": _cat_str(acts["activity"], ACTIVITIES),
            "channel": _cat_str(acts["channel"], CHANNELS),
        }
    )

    marketing_spend = _marketing_spend(birth_us, cust, start_us, end_us)

    tables = {
        "customers": customers,
        "transactions": transactions,
        "leads": leads_df,
        "lead_activities": lead_activities,
        "support_tickets": support_tickets,
        "marketing_spend": marketing_spend,
    }

    n_repeats_observed = rep["K"]
    latent_customers = pd.DataFrame(
        {
            "customer_id": pd.Series(cust_ids, dtype=_STR),
            "created_at": customers["created_at"],
            "T": rep["T"],
            "u_lam": cust["u_lam"],
            "u_p": cust["u_p"],
            "u_nu": cust["u_nu"],
            "lam": cust["lam"],
            "p": cust["p"],
            "nu": cust["nu"],
            "mean_spend": prm.p_gg / cust["nu"],
            "repeats_before_dropout": rep["J"],
            "repeats_observed": n_repeats_observed,
            "alive_at_end": alive,
            "dropout_time": _ts(dropout_us, alive),
            "ticket_rate_per_day": ticket_base,
            "lead_id": _take_str(lead_ids, cust["lead_of"]),
        }
    )
    status = np.where(~leads["decided"], 2, np.where(leads["wins"], 0, 1))
    latent_leads = pd.DataFrame(
        {
            "lead_id": pd.Series(lead_ids, dtype=_STR),
            "p_convert": leads["p_convert"],
            "converts": leads["wins"],
            "decision_at": _ts(_days_to_us(start_us, leads["decision"])),
            "status_at_end": _cat_str(status, ("won", "lost", "open")),
        }
    )
    return tables, {"customers": latent_customers, "leads": latent_leads}


def _marketing_spend(birth_us: np.ndarray, cust: dict[str, Any], start_us: int, end_us: int) -> pd.DataFrame:
    """Spend per (month start UTC, channel) = acquisition costs of that month's customers."""
    months = np.arange(
        np.datetime64(start_us, "us").astype("datetime64[M]"),
        np.datetime64(end_us - 1, "us").astype("datetime64[M]") + 1,
    )
    month_of = np.searchsorted(months, birth_us.astype("datetime64[us]").astype("datetime64[M]"), "right") - 1
    n_ch = len(cust["channels"])
    cell = month_of * n_ch + cust["channel"]
    amount = np.bincount(cell, weights=cust["acquisition_cost"], minlength=months.shape[0] * n_ch)
    period_us = months.astype("datetime64[us]").astype(np.int64)
    return pd.DataFrame(
        {
            "period": _ts(np.repeat(period_us, n_ch)),
            "channel": _cat_str(np.tile(np.arange(n_ch), months.shape[0]), cust["channels"]),
            "amount": np.round(amount, 2),
        }
    )


def _truth(
    seed: int,
    start: date,
    end: date,
    start_ts: pd.Timestamp,
    end_excl: pd.Timestamp,
    prm: TrueParams,
    n_leads: int,
    tables: dict[str, pd.DataFrame],
    latent: dict[str, pd.DataFrame],
    tx: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The JSON-serialisable ground truth."""
    lc = latent["customers"]
    ll = latent["leads"]
    n_refunds = int((tables["transactions"]["amount"] < 0).sum())
    return {
        "generator": "crmscore.ingest.synth",
        "seed": int(seed),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "window": {"start": start_ts.isoformat(), "end_exclusive": end_excl.isoformat()},
        "time_unit": "week",
        "days_per_unit": 7.0,
        "currency": "EUR",
        "bgnbd": {"r": prm.r, "alpha": prm.alpha, "a": prm.a, "b": prm.b},
        "gamma_gamma": {"p": prm.p_gg, "q": prm.q, "v": prm.v},
        "derived": {
            "mean_lam_per_week": prm.r / prm.alpha,
            "mean_p": prm.a / (prm.a + prm.b),
            "mean_spend": prm.p_gg * prm.v / (prm.q - 1.0),
        },
        "params": jsonable(asdict(prm)),
        "leads": {
            "n_leads": int(n_leads),
            "intercept": LEAD_INTERCEPT,
            "coefficients": LEAD_COEFFICIENTS,
            "model": "logit(p_convert) = intercept + sum of the coefficients of the lead's levels",
            "mean_p_convert": float(ll["p_convert"].mean()) if len(ll) else None,
        },
        "acquisition_cost_mean_by_channel": CHANNEL_COST,
        "conventions": {
            "first_purchase": "at customers.created_at (time 0 of the BG/NBD process)",
            "refunds": "extra transaction rows with amount < 0; not purchases",
            "churned_at": "subscription plan only: dropout + notice delay; NaT if alive or after end",
            "timestamps": "UTC, every one < window.end_exclusive",
            "marketing_spend": "sum of acquisition_cost per (month start, acquisition_channel)",
        },
        "counts": {
            **{name: len(df) for name, df in tables.items()},
            "purchases": int(tx["n_purchases"]),
            "refunds": n_refunds,
            "alive_at_end": int(lc["alive_at_end"].sum()),
            "subscription_churned": int(tables["customers"]["churned_at"].notna().sum()),
            "customers_from_leads": int(lc["lead_id"].notna().sum()),
            "leads_converted": int(tables["leads"]["converted_at"].notna().sum()),
            "leads_open": int((ll["status_at_end"] == "open").sum()),
        },
    }


# --------------------------------------------------------------------------------------
# persistence of the truth
# --------------------------------------------------------------------------------------

TRUTH_JSON = "truth.json"
TRUTH_CUSTOMERS = "truth_customers.parquet"
TRUTH_LEADS = "truth_leads.parquet"


def write_truth(synth: SyntheticCRM, folder: Path) -> list[Path]:
    """Write the truth (``truth.json``) and latent frames (Parquet) into ``folder``.

    Parameters
    ----------
    synth : SyntheticCRM
        The generated CRM.
    folder : Path
        Destination; created if missing.

    Returns
    -------
    list of Path
        ``truth.json``, ``truth_customers.parquet`` and ``truth_leads.parquet``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / TRUTH_JSON, folder / TRUTH_CUSTOMERS, folder / TRUTH_LEADS]
    paths[0].write_text(json.dumps(jsonable(synth.truth), indent=2, sort_keys=True), encoding="utf-8")
    synth.latent["customers"].to_parquet(paths[1], index=False)
    synth.latent["leads"].to_parquet(paths[2], index=False)
    logger.info("wrote truth to %s", folder)
    return paths


def read_truth(folder: Path) -> dict[str, Any]:
    """Read ``truth.json`` written by :func:`write_truth`."""
    return json.loads((Path(folder) / TRUTH_JSON).read_text(encoding="utf-8"))


def read_latent(folder: Path) -> dict[str, pd.DataFrame]:
    """Read the latent frames written by :func:`write_truth` (``customers``, ``leads``)."""
    folder = Path(folder)
    return {
        "customers": pd.read_parquet(folder / TRUTH_CUSTOMERS),
        "leads": pd.read_parquet(folder / TRUTH_LEADS),
    }
