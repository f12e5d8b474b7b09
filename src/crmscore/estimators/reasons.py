"""Reasons per record: exact LightGBM feature contributions, top positive and negative.

LightGBM computes exact per-row additive contributions (TreeSHAP, Lundberg et al. 2020) with
``predict(X, pred_contrib=True)``: one column per feature plus the expected value, summing to
the model's *raw* score (log-odds) of the row. The calibrated probability is a monotone map of
that raw score (``crmscore.estimators.churn.CalibratedModel``), so the contributions rank the
reasons of the calibrated score too, but they are in log-odds, not in probability points.

Cost
----
Contributions cost about 1 ms per row at 200 trees x 31 leaves (about 20 minutes for 1M
rows), against about 8 microseconds per row for the prediction itself. So they are computed
only for the rows someone will act on: the churn risk bands in ``churn.explain_bands``
(high/medium by default), the lead grades in ``leads.explain_grades``, and/or the top
``explain_top_n`` rows by score (:func:`rows_to_explain`). Other rows get no reasons.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

__all__ = [
    "EXPECTED_VALUE",
    "FEATURE_LABELS",
    "feature_contributions",
    "feature_label",
    "rank_contributions",
    "reasons_json",
    "rows_to_explain",
    "top_reasons",
]

logger = logging.getLogger(__name__)

#: Name of the bias column of :func:`feature_contributions` (the model's mean raw score).
EXPECTED_VALUE = "expected_value"

#: Readable labels of the features built by ``crmscore.features``.
FEATURE_LABELS: dict[str, str] = {
    "frequency": "Repeat purchase periods (BTYD frequency)",
    "recency": "Time from first to last purchase (BTYD recency)",
    "T": "Time since first purchase (BTYD T)",
    "monetary_value": "Average repeat purchase value",
    "n_purchases": "Purchases",
    "spend_total": "Total spend",
    "avg_order_value": "Average order value",
    "purchase_trend": "Purchase trend (recent vs prior period)",
    "spend_change": "Spend change (recent minus prior period)",
    "spend_trend": "Spend trend (recent vs prior period)",
    "recency_days": "Days since last purchase",
    "days_since_first_purchase": "Days since first purchase",
    "gap_mean_days": "Average days between purchases",
    "gap_std_days": "Variability of days between purchases",
    "gap_max_days": "Longest gap between purchases (days)",
    "overdue_ratio": "Days since last purchase relative to the usual gap",
    "n_refunds": "Refunds",
    "refund_amount": "Refunded amount",
    "n_products": "Distinct products bought",
    "tenure_days": "Days as a customer",
    "r_score": "RFM recency score",
    "f_score": "RFM frequency score",
    "m_score": "RFM monetary score",
    "rfm_segment": "RFM segment",
    "tickets_total": "Support tickets",
    "tickets_open": "Open support tickets",
    "days_since_last_ticket": "Days since last support ticket",
    "resolution_days_mean": "Average ticket resolution time (days)",
    "csat_mean": "Average CSAT",
    "acquisition_cost": "Acquisition cost",
    "acquisition_channel": "Acquisition channel",
    "onboarding_score": "Onboarding score",
    "company_size": "Company size",
    "lead_age_days": "Lead age (days)",
    "n_activities": "Activities",
    "days_since_last_activity": "Days since last activity",
}

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^n_purchases_(\d+)d$"), "Purchases in the last {0} days"),
    (re.compile(r"^spend_(\d+)d$"), "Spend in the last {0} days"),
    (re.compile(r"^tickets_(\d+)d$"), "Support tickets in the last {0} days"),
    (re.compile(r"^activities_(\d+)d$"), "Activities in the last {0} days"),
    (re.compile(r"^activity_(.+)$"), "Activities of type '{0}'"),
)


def feature_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """Readable label of feature ``name``.

    Looks up ``labels`` (caller's overrides), then :data:`FEATURE_LABELS`, then the windowed
    patterns (``n_purchases_90d`` → "Purchases in the last 90 days"), and falls back to the
    name with underscores as spaces, capitalised.
    """
    if labels and name in labels:
        return labels[name]
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    for pattern, template in _PATTERNS:
        m = pattern.match(name)
        if m:
            return template.format(*(g.replace("_", " ") for g in m.groups()))
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else name


def feature_contributions(pipeline: Pipeline, X: pd.DataFrame) -> pd.DataFrame:
    """Exact per-row contributions of a fitted ``prepare -> LightGBM`` pipeline.

    Costs about 1 ms per row at 200 trees x 31 leaves: call it only for the rows that will
    be acted on (see the module docstring and :func:`rows_to_explain`).

    Parameters
    ----------
    pipeline : Pipeline
        Fitted pipeline whose last step is a ``lightgbm.LGBMClassifier`` (binary).
    X : DataFrame
        Rows to explain, with the training feature columns (not modified).

    Returns
    -------
    DataFrame
        Index ``X.index``; one column per model feature plus :data:`EXPECTED_VALUE`. Each row
        sums to the model's raw score (log-odds) of that row.
    """
    Xt = pipeline[:-1].transform(X)
    contrib = np.asarray(pipeline[-1].predict(Xt, pred_contrib=True), dtype=np.float64)
    columns = [*list(Xt.columns), EXPECTED_VALUE]
    if contrib.shape[1] != len(columns):
        raise RuntimeError(
            f"LightGBM returned {contrib.shape[1]} contribution columns for {len(columns)} expected "
            "(multiclass models are not supported)"
        )
    return pd.DataFrame(contrib, index=X.index, columns=columns)


def rows_to_explain(
    scores: Any,
    *,
    groups: Any = None,
    explain_groups: Iterable[str] = (),
    top_n: int | None = None,
) -> np.ndarray:
    """Mask of the rows whose reasons are worth computing.

    A row is selected when its group (churn risk band, lead grade) is in ``explain_groups``
    or when it is among the ``top_n`` highest ``scores`` (ties: input order).

    Parameters
    ----------
    scores : array-like
        Scores (probabilities) of all rows.
    groups : array-like, optional
        Band or grade of each row.
    explain_groups : iterable of str
        Groups to explain.
    top_n : int, optional
        Also explain the ``top_n`` highest scores.

    Returns
    -------
    numpy.ndarray
        Boolean mask, one entry per row.
    """
    s = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(len(s), dtype=bool)
    wanted = set(explain_groups)
    if groups is not None and wanted:
        g = np.asarray(groups, dtype=object)
        if len(g) != len(s):
            raise ValueError("groups and scores have different lengths")
        mask |= np.isin(g, list(wanted))
    if top_n is not None and top_n > 0:
        mask[np.argsort(-s, kind="stable")[:top_n]] = True
    return mask


def _py(value: Any) -> Any:
    """JSON-friendly scalar (None for missing)."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value if isinstance(value, int | float | bool | str) else str(value)


def top_reasons(
    pipeline: Pipeline,
    X: pd.DataFrame,
    *,
    n: int = 5,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Top ``n`` positive and top ``n`` negative contributions of each row of ``X``.

    Pass only the rows to act on (:func:`rows_to_explain`): the contributions cost about
    1 ms per row (see the module docstring).

    Parameters
    ----------
    pipeline : Pipeline
        Fitted ``prepare -> LightGBM`` pipeline.
    X : DataFrame
        Rows to explain (original, untransformed values; not modified).
    n : int
        Reasons per direction.
    labels : mapping, optional
        Readable label overrides per feature.

    Returns
    -------
    DataFrame
        Long format, one row per reason: ``row`` (position in ``X``), ``id`` (``X``'s index
        value), ``direction`` (``"increases"`` or ``"decreases"`` the score), ``rank`` (1 =
        strongest in its direction), ``feature``, ``label``, ``value`` (the row's value as
        given in ``X``; None when missing) and ``contribution`` (log-odds). Zero
        contributions are never reasons.
    """
    return rank_contributions(feature_contributions(pipeline, X), X, n=n, labels=labels)


def rank_contributions(
    contributions: pd.DataFrame,
    X: pd.DataFrame,
    *,
    n: int = 5,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Top ``n`` positive and negative reasons from per-row contributions (see :func:`top_reasons`).

    ``contributions`` has one column per feature plus ``expected_value`` (as from
    :func:`feature_contributions` or a loaded model bundle), rows aligned with ``X``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    contrib = contributions.drop(columns=EXPECTED_VALUE)
    features = np.asarray(contrib.columns)
    C = contrib.to_numpy()
    k = min(n, C.shape[1])
    records: list[dict[str, Any]] = []
    order_pos = np.argsort(-C, axis=1, kind="stable")[:, :k]
    order_neg = np.argsort(C, axis=1, kind="stable")[:, :k]
    index = X.index
    for direction, order, sign in (("increases", order_pos, 1.0), ("decreases", order_neg, -1.0)):
        for i in range(C.shape[0]):
            strong = [j for j in order[i] if sign * C[i, j] > 0]
            for rank, j in enumerate(strong, start=1):
                f = str(features[j])
                records.append(
                    {
                        "row": i,
                        "id": index[i],
                        "direction": direction,
                        "rank": rank,
                        "feature": f,
                        "label": feature_label(f, labels),
                        "value": _py(X[f].iloc[i]) if f in X.columns else None,
                        "contribution": float(C[i, j]),
                    }
                )
    out = pd.DataFrame.from_records(
        records, columns=["row", "id", "direction", "rank", "feature", "label", "value", "contribution"]
    )
    return out.sort_values(
        ["row", "direction", "rank"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)


def reasons_json(reasons: pd.DataFrame, n_rows: int) -> list[str | None]:
    """Per-row JSON of :func:`top_reasons` (the ``top_reasons`` column of the score tables).

    Parameters
    ----------
    reasons : DataFrame
        Output of :func:`top_reasons`.
    n_rows : int
        Number of rows explained (rows without any reason get ``"[]"``).

    Returns
    -------
    list of str
        One JSON array per row: objects with ``feature``, ``label``, ``value``,
        ``direction`` and ``contribution`` (rounded to 6 decimals), strongest first,
        increasing reasons before decreasing ones.
    """
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_rows)]
    for rec in reasons.itertuples(index=False):
        out[int(rec.row)].append(
            {
                "feature": rec.feature,
                "label": rec.label,
                "value": rec.value,
                "direction": rec.direction,
                "contribution": round(float(rec.contribution), 6),
            }
        )
    return [json.dumps(r, ensure_ascii=False) for r in out]
