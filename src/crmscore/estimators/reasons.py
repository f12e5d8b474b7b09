"""Reasons per record: exact LightGBM feature contributions, top positive and negative.

LightGBM computes exact per-row additive contributions (TreeSHAP, Lundberg et al. 2020) with
``predict(X, pred_contrib=True)``: one column per feature plus the expected value, summing to
the model's *raw* score (log-odds) of the row. The calibrated probability is a monotone map of
that raw score (``crmscore.estimators.classifier.CalibratedModel``), so the contributions rank the
reasons of the calibrated score too, but they are in log-odds, not in probability points.

Cost
----
Contributions cost about a hundred times the prediction itself per row (TreeSHAP walks every
tree; LightGBM spreads the rows over the model's ``num_threads``, its training ``n_jobs``;
docs/scoring.md has the measured times). So they are computed
only for the rows someone will act on: ``crmscore score`` explains the top
``scoring.explain_top_n`` customers by value at risk and every worklist account, plus the
churn risk bands in ``churn.explain_bands`` (none by default), the lead grades in
``leads.explain_grades``, and/or the top ``explain_top_n`` rows by score
(:func:`rows_to_explain`). Other rows get no reasons.

Ranking and JSON are vectorised (:func:`rank_contributions`: two ``argsort`` calls over the
whole matrix; :func:`reasons_json`: column-wise text, joined per row), a small fraction of the
cost of the contributions.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "EXPECTED_VALUE",
    "FEATURE_LABELS",
    "feature_contributions",
    "feature_label",
    "rank_contributions",
    "reasons_json",
    "rows_to_explain",
]

logger = logging.getLogger(__name__)

#: Columns of :func:`rank_contributions`, in order.
_RANKED_COLUMNS = ["row", "id", "direction", "rank", "feature", "label", "value", "contribution"]

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


def feature_contributions(preparer: Any, booster: Any, X: pd.DataFrame) -> pd.DataFrame:
    """Exact per-row contributions of a fitted preparer + LightGBM booster (TreeSHAP).

    Costs about 1 ms per row at 200 trees x 31 leaves: call it only for the rows that will
    be acted on (see the module docstring and :func:`rows_to_explain`).

    Parameters
    ----------
    preparer : FramePreparer
        Fitted preparer (``transform`` gives the booster's input frame).
    booster : lightgbm.Booster
        Binary model fitted on the preparer's output.
    X : DataFrame
        Rows to explain, with the training feature columns (not modified).

    Returns
    -------
    DataFrame
        Index ``X.index``; one column per model feature plus :data:`EXPECTED_VALUE`. Each row
        sums to the model's raw score (log-odds) of that row.
    """
    Xt = preparer.transform(X)
    contrib = np.asarray(booster.predict(Xt, pred_contrib=True), dtype=np.float64)
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


def rank_contributions(
    contributions: pd.DataFrame,
    X: pd.DataFrame,
    *,
    n: int = 5,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Top ``n`` positive and top ``n`` negative contributions of each row of ``X``.

    ``contributions`` has one column per feature plus ``expected_value`` (as from
    :func:`feature_contributions` or ``CalibratedModel.contributions``), rows aligned with
    ``X``. Pass only the rows to act on (:func:`rows_to_explain`): the contributions cost about
    1 ms per row (see the module docstring).

    Returns a long frame, one row per reason: ``row`` (position in ``X``), ``id`` (``X``'s index
    value), ``direction`` (``"increases"`` or ``"decreases"`` the score), ``rank`` (1 =
    strongest in its direction), ``feature``, ``label``, ``value`` (the row's value as given in
    ``X``; None when missing) and ``contribution`` (log-odds). Zero contributions are never
    reasons.

    Vectorised: one stable ``argsort`` per direction over the whole matrix (ties keep the
    column order), then the reasons are gathered with array indexing. Rows come out sorted
    by ``row``, then "increases" before "decreases", then ``rank``. ``value`` is always an
    object column of JSON-friendly scalars (None when missing), whatever the mix of types.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    contrib = contributions.drop(columns=EXPECTED_VALUE)
    names = [str(f) for f in contrib.columns]
    C = contrib.to_numpy()
    k = min(n, C.shape[1])
    # positive reasons are a prefix of the descending order, negative ones of the ascending
    # order (NaN sorts last in both and is never a reason): rank = position in that prefix
    order = np.hstack(
        [np.argsort(-C, axis=1, kind="stable")[:, :k], np.argsort(C, axis=1, kind="stable")[:, :k]]
    )
    picked = np.take_along_axis(C, order, axis=1)
    with np.errstate(invalid="ignore"):
        strong = np.hstack([picked[:, :k] > 0, picked[:, k:] < 0])
    rows, slot = np.nonzero(strong)  # row-major: row, then increases before decreases, then rank
    if len(rows) == 0:
        return pd.DataFrame.from_records([], columns=_RANKED_COLUMNS)
    feat = order[rows, slot]
    label_of = np.asarray([feature_label(f, labels) for f in names], dtype=object)
    return pd.DataFrame(
        {
            "row": rows.astype(np.int64),
            "id": _inferred(X.index.take(rows).to_numpy(dtype=object)),
            "direction": _inferred(np.where(slot < k, "increases", "decreases").astype(object)),
            "rank": (slot % k + 1).astype(np.int64),
            "feature": _inferred(np.asarray(names, dtype=object)[feat]),
            "label": _inferred(label_of[feat]),
            "value": pd.Series(_gather_values(X, names, rows, feat), dtype=object),
            "contribution": picked[rows, slot].astype(np.float64),
        },
        columns=_RANKED_COLUMNS,
    )


def _inferred(values: np.ndarray) -> pd.Series:
    """``values`` (object array) with the dtype pandas infers for a column of such records."""
    return pd.Series(values, dtype=object).infer_objects()


def _column_values(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """:func:`_py` of ``column.iloc[r]`` for each ``r`` in ``rows`` (object array).

    numpy float, integer and boolean columns convert in one step (``astype(object)`` gives
    the Python scalars, NaN becomes None); any other dtype goes through :func:`_py` per value.
    """
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        arr = column.to_numpy()[rows]
        out = arr.astype(object)
        if dtype.kind == "f":
            out[np.isnan(arr)] = None
        return out
    sub = column.iloc[rows]
    return np.fromiter((_py(v) for v in sub), dtype=object, count=len(sub))


def _gather_values(X: pd.DataFrame, names: list[str], rows: np.ndarray, feat: np.ndarray) -> np.ndarray:
    """The value of feature ``names[feat[i]]`` in row ``rows[i]`` of ``X`` (None when not in ``X``)."""
    values = np.full(len(rows), None, dtype=object)
    for j in np.unique(feat):
        name = names[j]
        if name not in X.columns:
            continue
        at = feat == j
        column = X[name]
        if isinstance(column, pd.DataFrame):  # duplicated column name: as the scalar lookup did
            values[at] = [_py(column.iloc[r]) for r in rows[at]]
        else:
            values[at] = _column_values(column, rows[at])
    return values


_JSON = json.JSONEncoder(ensure_ascii=False)


def _json_floats(x: np.ndarray) -> np.ndarray:
    """Floats as :func:`json.dumps` writes them (``float.__repr__``; NaN, Infinity), object array."""
    out = np.asarray(list(map(float.__repr__, x.tolist())), dtype=object)
    bad = ~np.isfinite(x)
    if bad.any():
        out[bad] = np.where(np.isnan(x[bad]), "NaN", np.where(x[bad] > 0, "Infinity", "-Infinity"))
    return out


#: fast paths of :func:`_json_values` (float, None, str); other types are code 3
_TYPE_CODES: dict[type, int] = {float: 0, type(None): 1, str: 2}


def _json_values(values: np.ndarray) -> np.ndarray:
    """Each of ``values`` (object array of scalars) as :func:`json.dumps` writes it.

    Python floats, None and strings (once per distinct string) take fast paths; anything else
    goes through the JSON encoder itself.
    """
    out = np.empty(len(values), dtype=object)
    items = values.tolist()
    kind = np.fromiter(
        map(_TYPE_CODES.get, map(type, items), itertools.repeat(3)), dtype=np.int8, count=len(items)
    )
    floats, nulls, strings, rest = (kind == code for code in range(4))
    out[floats] = _json_floats(values[floats].astype(np.float64))
    out[nulls] = "null"
    out[strings] = _factorized_text(values[strings], _JSON.encode)
    out[rest] = [_JSON.encode(v) for v in values[rest].tolist()]
    return out


def _factorized_text(values: np.ndarray, encode: Any) -> np.ndarray:
    """``encode(v)`` for each of ``values`` (object array), computed once per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return np.asarray([encode(u) for u in uniques], dtype=object)[codes]


def reasons_json(reasons: pd.DataFrame, n_rows: int) -> list[str | None]:
    """Per-row JSON of :func:`rank_contributions` (the ``top_reasons`` column of the score tables).

    Parameters
    ----------
    reasons : DataFrame
        Output of :func:`rank_contributions`.
    n_rows : int
        Number of rows explained (rows without any reason get ``"[]"``).

    Returns
    -------
    list of str
        One JSON array per row: objects with ``feature``, ``label``, ``value``,
        ``direction`` and ``contribution`` (rounded to 6 decimals), in the order of
        ``reasons`` (strongest first, increasing reasons before decreasing ones), exactly as
        ``json.dumps(..., ensure_ascii=False)`` writes them. The text is built column-wise
        (feature, label and direction are encoded once per distinct value) and joined per
        row; no JSON encoder call per row.
    """
    if len(reasons) == 0:
        return ["[]"] * n_rows
    row = reasons["row"].to_numpy(dtype=np.int64)
    if row.min() < 0 or row.max() >= n_rows:
        raise ValueError(f"reasons rows must lie in [0, {n_rows})")
    order = np.argsort(row, kind="stable")  # grouped by row, the frame's order within a row

    def column(name: str) -> np.ndarray:
        return reasons[name].to_numpy(dtype=object)[order]

    contribution = reasons["contribution"].to_numpy(dtype=np.float64)[order].tolist()
    rounded = np.asarray(list(map(round, contribution, itertools.repeat(6))), dtype=np.float64)
    text = (
        _factorized_text(column("feature"), lambda f: '{"feature": ' + _JSON.encode(f) + ', "label": ')
        + _factorized_text(column("label"), lambda s: _JSON.encode(s) + ', "value": ')
        + _json_values(column("value"))
        + _factorized_text(
            column("direction"), lambda d: ', "direction": ' + _JSON.encode(d) + ', "contribution": '
        )
        + _json_floats(rounded)
        + "}"
    ).tolist()
    ends = np.cumsum(np.bincount(row, minlength=n_rows)).tolist()
    starts = [0, *ends[:-1]]
    return ["[" + ", ".join(text[s:e]) + "]" for s, e in zip(starts, ends, strict=True)]
