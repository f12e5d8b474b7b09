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

This module holds the public entry (:func:`generate`, :class:`SyntheticCRM`, the truth and
its files: :func:`write_truth`, :func:`read_truth`, :func:`read_latent`). The process is
simulated in :mod:`crmscore.ingest.simulate` (where :class:`TrueParams` lives, re-exported
here) and its tables are built in :mod:`crmscore.ingest.synth_tables`.
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

from crmscore.core.serial import jsonable
from crmscore.ingest.simulate import CHANNEL_COST, LEAD_COEFFICIENTS, LEAD_INTERCEPT, TrueParams, _simulate
from crmscore.ingest.synth_tables import _US_PER_DAY, _assemble

__all__ = [
    "SyntheticCRM",
    "TrueParams",
    "generate",
    "read_latent",
    "read_truth",
    "write_truth",
]

logger = logging.getLogger(__name__)


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
# generation
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
    n_leads = round(leads_per_customer * n_customers)
    sim = _simulate(rngs[:6], n_customers, n_leads, window_days, prm)
    logger.debug("simulated in %.2f s", time.perf_counter() - t0)
    tables, latent = _assemble(rngs[6], start_us, window_days, prm, sim)
    truth = _truth(seed, start, end, start_ts, end_excl, prm, n_leads, tables, latent, sim.transactions)
    logger.info(
        "generated %d customers, %d transactions, %d leads in %.2f s",
        n_customers,
        len(tables["transactions"]),
        n_leads,
        time.perf_counter() - t0,
    )
    return SyntheticCRM(tables=tables, truth=truth, latent=latent)


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
