"""The tables of the synthetic CRM, built from the arrays of :mod:`crmscore.ingest.simulate`.

:func:`_assemble` turns times in days into UTC timestamps (never at or after the end of the
window), codes into string columns and positions into ids (``C…``, ``L…``, ``T…``, ``K…``):
the six canonical tables and the latent frames of :class:`crmscore.ingest.synth.SyntheticCRM`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from crmscore.ingest.simulate import (
    ACTIVITIES,
    CHANNELS,
    COMPANY_SIZES,
    INDUSTRIES,
    OWNERS,
    PLANS,
    PRIORITIES,
    PRODUCTS,
    REGIONS,
    TrueParams,
    _Simulation,
)

_US_PER_DAY = 86_400_000_000
_STR = pd.StringDtype(na_value=np.nan)

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


def _days_to_us(start_us: int, days: np.ndarray) -> np.ndarray:
    return start_us + np.round(days * _US_PER_DAY).astype(np.int64)


def _assemble(
    rng: np.random.Generator, start_us: int, window_days: float, prm: TrueParams, sim: _Simulation
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Build the canonical tables and latent frames from the simulated arrays.

    ``rng`` draws the subscriptions' notice delays (:func:`_customers_table`).
    """
    cust, leads = sim.customers, sim.leads
    end_us = start_us + round(window_days * _US_PER_DAY)
    cust_ids = _ids("C", cust["birth"].shape[0])
    lead_ids = _ids("L", leads["wins"].shape[0])
    birth_us = _days_to_us(start_us, cust["birth"])
    customers = _customers_table(rng, start_us, end_us, prm, sim, birth_us, cust_ids)
    tables = {
        "customers": customers,
        "transactions": _transactions_table(start_us, end_us, sim.transactions, cust_ids),
        "leads": _leads_table(start_us, sim, birth_us, cust_ids, lead_ids),
        "lead_activities": _activities_table(start_us, end_us, sim.activities, lead_ids),
        "support_tickets": _tickets_table(start_us, end_us, sim.tickets, cust_ids),
        "marketing_spend": _marketing_spend(birth_us, cust, start_us, end_us),
    }
    latent = {
        "customers": _latent_customers(start_us, prm, sim, customers["created_at"], cust_ids, lead_ids),
        "leads": _latent_leads(start_us, leads, lead_ids),
    }
    return tables, latent


def _customers_table(
    rng: np.random.Generator,
    start_us: int,
    end_us: int,
    prm: TrueParams,
    sim: _Simulation,
    birth_us: np.ndarray,
    cust_ids: pa.Array,
) -> pd.DataFrame:
    """``customers``; subscriptions churn a notice delay after their dropout (before the end)."""
    cust, rep = sim.customers, sim.repeats
    n = cust["birth"].shape[0]
    is_sub = cust["plan"] == PLANS.index("subscription")
    notice = rng.uniform(*prm.notice_days, n)
    churn_us = _days_to_us(start_us, np.nan_to_num(rep["dropout_days"], nan=0.0) + notice)
    churn_missing = rep["alive"] | ~is_sub | (churn_us >= end_us)
    return pd.DataFrame(
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


def _transactions_table(
    start_us: int, end_us: int, tx: dict[str, np.ndarray], cust_ids: pa.Array
) -> pd.DataFrame:
    """``transactions`` sorted by customer then time (sequential id lookups); ids in that order."""
    tx_us = np.minimum(_days_to_us(start_us, tx["t"]), end_us - 1)
    order = np.lexsort((tx_us, tx["who"]))
    m = order.shape[0]
    return pd.DataFrame(
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


def _tickets_table(
    start_us: int, end_us: int, tickets: dict[str, np.ndarray], cust_ids: pa.Array
) -> pd.DataFrame:
    """``support_tickets``; those still open at the end have no ``closed_at``."""
    k = tickets["who"].shape[0]
    return pd.DataFrame(
        {
            "ticket_id": pd.Series(_ids("K", k, 8), dtype=_STR),
            "customer_id": _take_str(cust_ids, tickets["who"]),
            "opened_at": _ts(np.minimum(_days_to_us(start_us, tickets["opened"]), end_us - 1)),
            "closed_at": _ts(_days_to_us(start_us, tickets["closed"]), tickets["still_open"]),
            "priority": _cat_str(tickets["priority"], PRIORITIES),
            "csat": tickets["csat"],
        }
    )


def _leads_table(
    start_us: int, sim: _Simulation, birth_us: np.ndarray, cust_ids: pa.Array, lead_ids: pa.Array
) -> pd.DataFrame:
    """``leads``; a converted lead's ``converted_at`` is its customer's ``created_at``."""
    cust, leads = sim.customers, sim.leads
    cust_idx_of_lead = np.full(leads["wins"].shape[0], -1, dtype=np.int64)
    from_lead = cust["lead_of"] >= 0
    cust_idx_of_lead[cust["lead_of"][from_lead]] = np.flatnonzero(from_lead)
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
    return pd.DataFrame(lead_frame)


def _activities_table(
    start_us: int, end_us: int, acts: dict[str, np.ndarray], lead_ids: pa.Array
) -> pd.DataFrame:
    """``lead_activities``."""
    return pd.DataFrame(
        {
            "lead_id": _take_str(lead_ids, acts["lead_idx"]),
            "ts": _ts(np.minimum(_days_to_us(start_us, acts["t"]), end_us - 1)),
            "activity": _cat_str(acts["activity"], ACTIVITIES),
            "channel": _cat_str(acts["channel"], CHANNELS),
        }
    )


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


def _latent_customers(
    start_us: int,
    prm: TrueParams,
    sim: _Simulation,
    created_at: pd.Series,
    cust_ids: pa.Array,
    lead_ids: pa.Array,
) -> pd.DataFrame:
    """Each customer's latent truth: uniforms, ``lam, p, nu``, repeats, dropout, ticket rate."""
    cust, rep = sim.customers, sim.repeats
    alive = rep["alive"]
    dropout_us = _days_to_us(start_us, np.nan_to_num(rep["dropout_days"], nan=0.0))
    return pd.DataFrame(
        {
            "customer_id": pd.Series(cust_ids, dtype=_STR),
            "created_at": created_at,
            "T": rep["T"],
            "u_lam": cust["u_lam"],
            "u_p": cust["u_p"],
            "u_nu": cust["u_nu"],
            "lam": cust["lam"],
            "p": cust["p"],
            "nu": cust["nu"],
            "mean_spend": prm.p_gg / cust["nu"],
            "repeats_before_dropout": rep["J"],
            "repeats_observed": rep["K"],
            "alive_at_end": alive,
            "dropout_time": _ts(dropout_us, alive),
            "ticket_rate_per_day": sim.ticket_base,
            "lead_id": _take_str(lead_ids, cust["lead_of"]),
        }
    )


def _latent_leads(start_us: int, leads: dict[str, Any], lead_ids: pa.Array) -> pd.DataFrame:
    """Each lead's conversion probability, outcome, decision time and status at the end."""
    status = np.where(~leads["decided"], 2, np.where(leads["wins"], 0, 1))
    return pd.DataFrame(
        {
            "lead_id": pd.Series(lead_ids, dtype=_STR),
            "p_convert": leads["p_convert"],
            "converts": leads["wins"],
            "decision_at": _ts(_days_to_us(start_us, leads["decision"])),
            "status_at_end": _cat_str(status, ("won", "lost", "open")),
        }
    )
