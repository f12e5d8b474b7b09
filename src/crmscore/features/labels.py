"""Labels from the window after the cutoff: the one place that states every rule.

Notation: ``E = cutoff_end(as_of)`` (midnight UTC after the cutoff day; an event is known at the
cutoff iff it happened before ``E``); ``H`` = ``churn.horizon_days``; ``N`` =
``leads.conversion_window_days``; ``O = cutoff_end(observed_until)``, the end of the last day
the data covers. A customer is *known* at the cutoff when ``created_at < E`` or, without a
``created_at``, when one of their transactions is known (``behaviour.known_customer_ids``).
Purchases are transactions with ``amount >= 0`` (refunds are not purchases; with
``features.refunds = "include"`` every transaction is).

Churn (:func:`churn_labels`, ``churn.definition``)

``contractual``
    Eligible: known customers not churned at the cutoff (``churned_at`` missing or ``>= E``).
    Label: ``E <= churned_at < E + H days`` (churned within the ``H`` days after the cutoff day).
``inactivity``
    Eligible: known customers with at least one purchase known at the cutoff (and, with
    ``churn.activity_lookback_days = L``, one in the last ``L`` days up to the cutoff day),
    excluding customers with ``churned_at < E`` when that column exists.
    Label: no purchase with ``E <= ts < E + H days``.
``label``
    Eligible: known customers whose boolean ``churn.label_column`` is not missing.
    Label: that column (for snapshot exports without dates).

For ``contractual`` and ``inactivity`` the window must have been observed: if
``observed_until`` is given and ``E + H days > O``, a ``ValueError`` is raised (censored labels).

Lead conversion (:func:`lead_labels`)

Eligible: leads created by the cutoff (``created_at < E``), still open at the cutoff
(``converted_at`` missing or ``>= E``), whose conversion window was still running at the
cutoff (``created_at + N days >= E``; older open leads already have a known outcome and are
dropped unless ``leads.include_stale``), and whose window has fully elapsed by the observation
date (``created_at + N days < O``; ``observed_until`` defaults to ``as_of + N days``, by which
every eligible window has elapsed, so the data must reach that date).
Label: ``converted_at - created_at <= N days`` (converted within ``N`` days of creation).
With ``leads.label_column`` set: eligible are the leads created by the cutoff with a
non-missing label, and the label is that column.

Labels are never features: ``churned_at``, ``converted_at``, lead ``customer_id`` and the
label columns are excluded by the feature builders.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crmscore.config import ChurnConfig, LeadsConfig
from crmscore.core.ids import id_index, isin
from crmscore.core.schema import CRMData
from crmscore.core.time import DateLike, as_of_day, cutoff_end
from crmscore.features.btyd import RefundRule, purchase_mask
from crmscore.features.leads import open_lead_mask, window_closed_mask

__all__ = ["churn_labels", "lead_labels"]

logger = logging.getLogger(__name__)


def _known(ts: pd.Series, end: pd.Timestamp) -> np.ndarray:
    return (ts < end).to_numpy(dtype=bool, na_value=False, copy=True)


def _check_observed(as_of: DateLike, days: int, observed_until: DateLike | None, what: str) -> None:
    if observed_until is None:
        logger.debug("%s: observed_until not given; the caller guarantees the window was observed", what)
        return
    if cutoff_end(as_of) + pd.Timedelta(days=days) > cutoff_end(observed_until):
        raise ValueError(
            f"{what}: the {days}-day window after {as_of_day(as_of).date()} is not fully observed "
            f"by {as_of_day(observed_until).date()} (labels would be censored)"
        )


def _customer_table(data: CRMData) -> pd.DataFrame:
    if data.customers is None:
        raise ValueError("churn labels need the customers table")
    return data.customers.drop_duplicates("customer_id", keep="first").set_index("customer_id")


def churn_labels(
    data: CRMData,
    as_of: DateLike,
    cfg: ChurnConfig,
    *,
    refunds: RefundRule = "exclude",
    observed_until: DateLike | None = None,
) -> pd.Series:
    """Churn label of every eligible customer at the cutoff ``as_of`` (rules: module docstring).

    Parameters
    ----------
    data : CRMData
        The CRM tables (not modified).
    as_of : date-like
        Cutoff day.
    cfg : ChurnConfig
        ``definition``, ``horizon_days``, ``label_column``, ``activity_lookback_days``.
    refunds : {"exclude", "include"}
        Whether refunds count as purchases (inactivity definition).
    observed_until : date-like, optional
        Last day covered by the data; raises if the label window is not fully observed.

    Returns
    -------
    Series
        Boolean ``churn`` indexed by ``customer_id`` (sorted) over the eligible customers.
    """
    from crmscore.features.behaviour import known_customer_ids

    end = cutoff_end(as_of)
    ids = known_customer_ids(data.customers, data.transactions, as_of)
    if cfg.definition == "label":
        cust = _customer_table(data)
        if cfg.label_column not in cust:
            raise ValueError(f"churn.label_column {cfg.label_column!r} is not a column of customers")
        lab = cust[cfg.label_column].reindex(ids)
        lab = lab[lab.notna()]
        return lab.astype(bool).rename("churn")

    _check_observed(as_of, cfg.horizon_days, observed_until, "churn labels")
    horizon_end = end + pd.Timedelta(days=cfg.horizon_days)
    if cfg.definition == "contractual":
        cust = _customer_table(data)
        if "churned_at" not in cust:
            raise ValueError("contractual churn needs customers.churned_at")
        churned = cust["churned_at"].reindex(ids)
        eligible = ~_known(churned, end)
        churned = churned[eligible]
        label = _known(churned, horizon_end)
        return pd.Series(label, index=churned.index, name="churn")

    # inactivity
    tx = data.transactions
    if tx is None:
        raise ValueError("inactivity churn needs the transactions table")
    buy = purchase_mask(tx, refunds)
    ts = tx["ts"]
    before = buy & _known(ts, end)
    if cfg.activity_lookback_days is not None:
        start = end - pd.Timedelta(days=cfg.activity_lookback_days)
        before &= (ts >= start).to_numpy(dtype=bool, na_value=False, copy=True)
    active = ids[isin(ids, tx["customer_id"][before])]
    if data.customers is not None and "churned_at" in data.customers:
        churned = _customer_table(data)["churned_at"].reindex(active)
        active = active[~_known(churned, end)]
    after = buy & ~_known(ts, end) & _known(ts, horizon_end)
    bought_after = isin(active, tx["customer_id"][after])
    return pd.Series(~bought_after, index=active, name="churn")


def lead_labels(
    leads: pd.DataFrame,
    as_of: DateLike,
    cfg: LeadsConfig,
    *,
    observed_until: DateLike | None = None,
) -> pd.Series:
    """Conversion label of every eligible lead at the cutoff ``as_of`` (rules: module docstring).

    Parameters
    ----------
    leads : DataFrame
        Canonical leads (not modified).
    as_of : date-like
        Cutoff day.
    cfg : LeadsConfig
        ``conversion_window_days``, ``label_column``, ``include_stale``.
    observed_until : date-like, optional
        Last day covered by the data (default ``as_of + conversion_window_days``).

    Returns
    -------
    Series
        Boolean ``converted`` indexed by ``lead_id`` (sorted) over the eligible leads.
    """
    end = cutoff_end(as_of)
    if cfg.label_column is not None:
        if cfg.label_column not in leads:
            raise ValueError(f"leads.label_column {cfg.label_column!r} is not a column of leads")
        rows = leads[
            _known(leads["created_at"], end) & leads[cfg.label_column].notna().to_numpy(dtype=bool, copy=True)
        ]
        rows = rows.drop_duplicates("lead_id", keep="first").set_index("lead_id").sort_index()
        return rows[cfg.label_column].astype(bool).rename("converted")

    window = pd.Timedelta(days=cfg.conversion_window_days)
    if observed_until is None:
        observed_until = as_of_day(as_of) + window
    obs_end = cutoff_end(observed_until)
    mask = open_lead_mask(leads, as_of, open_only=True)
    window_end = leads["created_at"] + window
    mask &= _known(window_end, obs_end)
    if not cfg.include_stale:
        mask &= ~window_closed_mask(leads, as_of, cfg.conversion_window_days)
    rows = leads[mask].drop_duplicates("lead_id", keep="first").set_index("lead_id").sort_index()
    if "converted_at" in rows:
        delay = rows["converted_at"] - rows["created_at"]
        label = (delay <= window).to_numpy(dtype=bool, na_value=False, copy=True)
    else:
        label = np.zeros(len(rows), dtype=bool)
    return pd.Series(label, index=id_index(rows.index, "lead_id"), name="converted")
