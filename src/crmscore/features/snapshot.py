"""Snapshot training rows: customer attributes and a label column, no dates (``churn.definition: label``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from crmscore.features.behaviour import attribute_features
from crmscore.ingest.roles import decide_roles

if TYPE_CHECKING:
    from crmscore.config import ChurnConfig

__all__ = ["snapshot_churn_set"]


def snapshot_churn_set(
    customers: pd.DataFrame, cfg: ChurnConfig, *, roles: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Feature rows and labels from a snapshot export (customer attributes + a label column).

    There are no dates: every customer with a non-missing ``cfg.label_column`` is a row; the
    features are the attribute columns whose role is ``feature``
    (``crmscore.features.behaviour.attribute_features`` without ``tenure_days``: ``created_at``
    is ignored, as there is no cutoff to measure it against). Evaluation of such data is a
    stratified holdout, not out of time.

    ``roles`` are the feature roles of the customers' columns (``CRMData.roles["customers"]``,
    :mod:`crmscore.ingest.roles`); ``None`` decides them here on the whole ``customers`` table
    with the default rules.

    Returns
    -------
    DataFrame
        Index ``customer_id``; attribute features and the boolean ``churn`` label.
    """
    col = cfg.label_column
    if col not in customers:
        raise ValueError(f"churn.label_column {col!r} is not a column of customers")
    if roles is None:
        roles = decide_roles("customers", customers).roles
    rows = customers[customers[col].notna()].drop_duplicates("customer_id", keep="first")
    ids = pd.Index(rows["customer_id"].astype("str").to_numpy(), name="customer_id")
    attrs = rows.drop(columns=[c for c in ("created_at",) if c in rows])
    feats = attribute_features(attrs, ids, "1970-01-01", exclude=(col,), roles=roles)
    label = pd.Series(rows[col].astype(bool).to_numpy(), index=ids, name="churn")
    return feats.join(label)
