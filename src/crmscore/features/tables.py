"""Assembled feature tables: the point-in-time feature table at ``as_of`` and stacked training sets.

Pure functions of (tables, ``as_of``, config) composing the per-topic feature modules of
``crmscore.features`` (BTYD summary, behaviour, RFM, lead features, labels). Nothing is read
or written here (``crmscore.features.tables`` writes the table of ``crmscore features``).

Attribute columns are used only when their role is ``feature`` (:mod:`crmscore.ingest.roles`):
the roles stored on the data at validation, or, for data built without validation, the roles
decided here once per call on the whole tables (before any cutoff or stale-lead filter), so
every cutoff of a training set has the same columns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pandas as pd

from crmscore.config import Config
from crmscore.core.ids import IdCodes, encode_ids
from crmscore.core.schema import CRMData
from crmscore.core.time import DateLike, as_of_day, rolling_cutoffs
from crmscore.features.behaviour import behaviour_features
from crmscore.features.btyd import btyd_summary
from crmscore.features.labels import churn_labels, lead_labels
from crmscore.features.leads import lead_features, open_lead_mask, window_closed_mask
from crmscore.features.rfm import rfm_scores
from crmscore.ingest.roles import ROLE_TABLES, roles_for

__all__ = [
    "build_churn_training_set",
    "build_feature_table",
    "build_lead_features",
    "build_lead_training_set",
]

logger = logging.getLogger(__name__)


def _customer_exclusions(cfg: Config) -> tuple[str, ...]:
    return (cfg.churn.label_column,)


def _with_roles(data: CRMData, cfg: Config) -> CRMData:
    """``data`` with the feature roles of every present attribute table (decided on the whole
    tables when the data carry none: :func:`crmscore.ingest.roles.roles_for`)."""
    missing = [t for t in ROLE_TABLES if data.get(t) is not None and t not in data.roles]
    if not missing:
        return data
    roles = dict(data.roles)
    for t in missing:
        roles[t] = roles_for(data, t, cfg)
    return dataclasses.replace(data, roles=roles)


def build_feature_table(data: CRMData, as_of: DateLike, cfg: Config) -> pd.DataFrame:
    """One row per customer known at ``as_of``: BTYD summary, RFM and behaviour features.

    Parameters
    ----------
    data : CRMData
        Canonical CRM tables (not modified). Missing optional tables drop their features.
    as_of : date-like
        Cutoff day (UTC); nothing after it is used.
    cfg : Config
        Reads the ``features`` block (period, time unit, windows, RFM bins, refunds) and the
        churn label column name (never a feature).

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted). Columns ``frequency``, ``recency``, ``T``,
        ``monetary_value`` (NaN for customers without a purchase; time unit
        ``features.time_unit``), ``r_score``, ``f_score``, ``m_score``, ``rfm_score``,
        ``rfm_segment`` and the behaviour features (see docs/features.md).
    """
    encoded, codes = encode_ids(_with_roles(data, cfg))
    out = _feature_table(encoded, as_of, cfg)
    out.index = codes.decode(out.index, "customers")
    return out


def _feature_table(data: CRMData, as_of: DateLike, cfg: Config) -> pd.DataFrame:
    """:func:`build_feature_table` on data whose ids may be integer codes (``encode_ids``)."""
    fc = cfg.features
    as_of = as_of_day(as_of)
    table = behaviour_features(
        data.customers,
        data.transactions,
        data.support_tickets,
        as_of,
        windows_days=fc.windows_days,
        trend_window_days=fc.trend_window_days,
        refunds=fc.refunds,
        exclude=_customer_exclusions(cfg),
        roles=roles_for(data, "customers", cfg) if data.customers is not None else None,
    )
    parts = [table]
    if data.transactions is not None:
        summary = btyd_summary(
            data.transactions, as_of, period=fc.period, time_unit=fc.time_unit, refunds=fc.refunds
        )
        parts.insert(0, summary.reindex(table.index))
        parts.append(
            rfm_scores(table["recency_days"], table["n_purchases"], table["spend_total"], bins=fc.rfm_bins)
        )
    else:
        logger.warning("no transactions table: BTYD and RFM features absent")
    out = pd.concat(parts, axis=1)
    out.index.name = "customer_id"
    logger.info("feature table at %s: %d customers, %d columns", as_of.date(), len(out), out.shape[1])
    return out


def build_lead_features(data: CRMData, as_of: DateLike, cfg: Config) -> pd.DataFrame:
    """Features of the leads to score at ``as_of`` (empty frame without a leads table, logged).

    These are the leads open at ``as_of`` whose conversion window is still running
    (``created_at + leads.conversion_window_days >= cutoff_end(as_of)``): the population the
    model was trained on. An open lead whose window closed before the cutoff already has its
    outcome (not converted in time), so it is not scored; such leads are counted in the log.
    ``leads.include_stale: true`` scores them too (and trains on them), as does a
    ``leads.label_column`` (snapshot labels have no window).
    """
    if data.leads is None:
        logger.warning("no leads table: lead features absent")
        return pd.DataFrame(index=pd.Index([], dtype="str", name="lead_id"))
    data = _without_stale_leads(_with_roles(data, cfg), as_of, cfg)
    encoded, codes = encode_ids(_lead_tables(data))
    out = _lead_feature_table(encoded, as_of, cfg)
    out.index = codes.decode(out.index, "leads")
    return out


def _without_stale_leads(data: CRMData, as_of: DateLike, cfg: Config) -> CRMData:
    """``data`` without the open leads whose conversion window closed before ``as_of`` (logged)."""
    lc = cfg.leads
    if lc.include_stale or lc.label_column is not None or data.leads is None:
        return data
    leads = data.leads
    stale = window_closed_mask(leads, as_of, lc.conversion_window_days)
    stale &= open_lead_mask(leads, as_of, open_only=True)
    n_stale = int(stale.sum())
    if n_stale:
        logger.info(
            "%s open leads are past their %d-day conversion window at %s and are not scored "
            "(their outcome is known: not converted in time); leads.include_stale: true scores them",
            f"{n_stale:,}",
            lc.conversion_window_days,
            as_of_day(as_of).date(),
        )
    return CRMData(leads=leads[~stale], lead_activities=data.lead_activities, roles=data.roles)


def _lead_tables(data: CRMData) -> CRMData:
    return CRMData(leads=data.leads, lead_activities=data.lead_activities, roles=data.roles)


def _lead_feature_table(data: CRMData, as_of: DateLike, cfg: Config) -> pd.DataFrame:
    exclude = (cfg.leads.label_column,) if cfg.leads.label_column else ()
    return lead_features(
        data.leads,
        data.lead_activities,
        as_of,
        recent_days=cfg.features.lead_recent_days,
        exclude=exclude,
        roles=roles_for(data, "leads", cfg),
    )


def _cutoffs(last_cutoff: DateLike, cfg: Config, n: int | None, step_days: int | None) -> list[pd.Timestamp]:
    return rolling_cutoffs(
        last_cutoff, n if n is not None else cfg.features.cutoffs, step_days or cfg.features.cutoff_step_days
    )


def build_churn_training_set(
    data: CRMData,
    last_cutoff: DateLike,
    cfg: Config,
    *,
    n_cutoffs: int | None = None,
    step_days: int | None = None,
    observed_until: DateLike | None = None,
) -> pd.DataFrame:
    """Stacked churn training set over rolling-origin cutoffs (for backtests).

    For each cutoff of ``rolling_cutoffs(last_cutoff, n, step)`` (defaults from
    ``features.cutoffs`` / ``features.cutoff_step_days``): the feature table at that cutoff,
    restricted to the customers eligible for a churn label, with the ``churn`` label and a
    ``cutoff`` column (UTC day). Index ``customer_id`` (repeated across cutoffs).
    """
    encoded, codes = encode_ids(_with_roles(data, cfg))

    def rows_at(c: pd.Timestamp) -> tuple[pd.DataFrame, pd.Series]:
        refunds = cfg.features.refunds
        labels = churn_labels(encoded, c, cfg.churn, refunds=refunds, observed_until=observed_until)
        return _feature_table(encoded, c, cfg), labels

    return _stacked(_cutoffs(last_cutoff, cfg, n_cutoffs, step_days), rows_at, codes, "customers")


def _stacked(
    cutoffs: list[pd.Timestamp],
    rows_at: Callable[[pd.Timestamp], tuple[pd.DataFrame, pd.Series]],
    codes: IdCodes,
    key: str,
) -> pd.DataFrame:
    """Features joined with labels at each cutoff, stacked with a ``cutoff`` column, ids decoded."""
    frames = []
    for c in cutoffs:
        feats, labels = rows_at(c)
        frame = feats.join(labels, how="inner")
        frame.insert(0, "cutoff", c)
        frames.append(frame)
    out = pd.concat(frames, axis=0)
    out.index = codes.decode(out.index, key)
    return out


def build_lead_training_set(
    data: CRMData,
    last_cutoff: DateLike,
    cfg: Config,
    *,
    n_cutoffs: int | None = None,
    step_days: int | None = None,
    observed_until: DateLike | None = None,
) -> pd.DataFrame:
    """Stacked lead-conversion training set over rolling-origin cutoffs (``converted`` label)."""
    if data.leads is None:
        raise ValueError("lead training needs the leads table")
    encoded, codes = encode_ids(_lead_tables(_with_roles(data, cfg)))

    def rows_at(c: pd.Timestamp) -> tuple[pd.DataFrame, pd.Series]:
        labels = lead_labels(encoded.leads, c, cfg.leads, observed_until=observed_until)
        return _lead_feature_table(encoded, c, cfg), labels

    return _stacked(_cutoffs(last_cutoff, cfg, n_cutoffs, step_days), rows_at, codes, "leads")
