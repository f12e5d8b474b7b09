"""Assembly and checks of the score rows written back to the CRM (shared/design.md §3).

Pure functions: model outputs in, score frames out; nothing is read or written here
(``crmscore.io.scores`` writes, ``crmscore.scoring.worklist`` renders). Input frames are never modified.

Customer rows (:data:`CUSTOMER_SCORE_COLUMNS`) combine the churn model
(``churn_probability``, ``churn_risk``, ``top_reasons``), the CLV model (``p_alive``,
``expected_purchases``, ``predicted_clv`` with intervals) and the feature table (RFM segment,
engagement and support measures) into ``value_at_risk``, a 0–100 ``health_score``, a ``trend``
against the previous run and a ``cold_start`` flag. Lead rows (:data:`LEAD_SCORE_COLUMNS`)
carry the lead model's outputs. Every row names its model versions, ``run_id`` and
``scored_at``. Formulas: docs/scoring.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import ScoringConfig
from crmscore.core.score_contract import (
    CLV_COLUMNS,
    CUSTOMER_SCORE_COLUMNS,
    LEAD_SCORE_COLUMNS,
    NO_PURCHASES,
    ScoreValidationError,
)

__all__ = [
    "assemble_customer_scores",
    "assemble_lead_scores",
    "cold_start_flags",
    "health_score",
    "trend_labels",
    "value_at_risk",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# components


def _col(frame: pd.DataFrame, name: str, index: pd.Index) -> pd.Series:
    """``frame[name]`` as float64 aligned on ``index`` (all NaN when the column is absent)."""
    if name in frame.columns:
        return pd.to_numeric(frame[name], errors="coerce").astype(np.float64).reindex(index)
    return pd.Series(np.nan, index=index, dtype=np.float64)


def _nanmean(*parts: pd.Series) -> pd.Series:
    stacked = pd.concat(parts, axis=1)
    return stacked.mean(axis=1, skipna=True)


def health_score(
    churn_probability: pd.Series,
    p_alive: pd.Series,
    features: pd.DataFrame,
    cfg: ScoringConfig,
) -> pd.Series:
    """Customer health 0–100 (Gainsight-style weighted blend of measures, each in [0, 1]).

    Components (each 0 = bad, 1 = good):

    * ``retention`` = 1 − churn probability;
    * ``alive`` = P(alive) of the BG/NBD model;
    * ``engagement`` = mean of the available of ``0.5 ** (recency_days / half_life)``
      (``scoring.engagement_half_life_days``) and ``(1 + purchase_trend) / 2``;
    * ``support`` = mean of the available of ``1 / (1 + tickets_open)`` and the CSAT mean
      rescaled from ``scoring.csat_scale`` to [0, 1].

    ``health = 100 * sum(w_k * c_k) / sum(w_k)`` over the components available for the row
    (weights ``scoring.health_weights``), so a missing measure (no support table, no purchase)
    neither rewards nor penalises. Rounded to one decimal. Retention is always available.

    Parameters
    ----------
    churn_probability, p_alive : Series
        Indexed like ``features``.
    features : DataFrame
        Feature table (``recency_days``, ``purchase_trend``, ``tickets_open``, ``csat_mean``
        used when present).
    cfg : ScoringConfig
        Weights, half-life and CSAT scale.

    Returns
    -------
    Series
        float64 in [0, 100], indexed like ``features``.
    """
    idx = features.index
    recency = _col(features, "recency_days", idx)
    trend = _col(features, "purchase_trend", idx).clip(-1, 1)
    open_t = _col(features, "tickets_open", idx).clip(lower=0)
    lo, hi = cfg.csat_scale
    csat = ((_col(features, "csat_mean", idx) - lo) / (hi - lo)).clip(0, 1)
    comps = {
        "retention": 1.0 - churn_probability.reindex(idx).astype(np.float64),
        "alive": p_alive.reindex(idx).astype(np.float64).clip(0, 1),
        "engagement": _nanmean(
            0.5 ** (recency.clip(lower=0) / cfg.engagement_half_life_days), (1 + trend) / 2
        ),
        "support": _nanmean(1.0 / (1.0 + open_t), csat),
    }
    num = pd.Series(0.0, index=idx)
    den = pd.Series(0.0, index=idx)
    for name, c in comps.items():
        w = float(cfg.health_weights.get(name, 0.0))  # type: ignore[call-overload]
        if w == 0:
            continue
        ok = c.notna()
        num = num + w * c.fillna(0.0)
        den = den + w * ok.astype(np.float64)
    out = (100.0 * num / den.where(den > 0)).clip(0, 100).round(1)
    return out.astype(np.float64)


def trend_labels(churn_probability: pd.Series, previous: pd.Series | None, threshold: float) -> pd.Series:
    """``improving`` / ``steady`` / ``declining`` from the change of churn probability; ``new``.

    ``delta = p_now − p_previous``: ``delta <= −threshold`` is improving (less likely to
    churn), ``delta >= threshold`` declining, otherwise steady; customers without a previous
    score are ``new``.
    """
    idx = churn_probability.index
    if previous is None:
        return pd.Series("new", index=idx, dtype=object)
    prev = previous.reindex(idx).astype(np.float64)
    delta = churn_probability.astype(np.float64) - prev
    tol = 1e-9  # a change of exactly the threshold counts despite float rounding (0.50 - 0.45)
    out = np.select(
        [prev.isna(), delta <= -threshold + tol, delta >= threshold - tol],
        ["new", "improving", "declining"],
        default="steady",
    )
    return pd.Series(out.astype(object), index=idx)


def value_at_risk(
    churn_probability: pd.Series, predicted_clv: pd.Series | None, features: pd.DataFrame | None = None
) -> pd.Series:
    """What a customer's churn would cost: ``churn_probability`` × the customer's value.

    * With a CLV model (``predicted_clv`` given): ``churn_probability * predicted_clv``, 0 where
      there is no CLV estimate (no purchase).
    * Without one (``predicted_clv`` None, e.g. a CRM whose CLV model is not trained):
      ``churn_probability * spend_365d`` — the revenue of the last 365 days at risk — when the
      feature table has it (transactions present; 0 without a purchase that year); else NaN
      (nothing to value: the worklist then ranks by churn probability).

    The one definition used for the score rows and for choosing the customers whose churn
    reasons are computed (``crmscore.pipelines.score``), so both rank the same numbers.
    """
    if predicted_clv is not None:
        return churn_probability * predicted_clv.fillna(0.0)
    if features is not None and "spend_365d" in features.columns:
        spend = pd.to_numeric(features["spend_365d"], errors="coerce").astype(np.float64)
        return churn_probability * spend.reindex(churn_probability.index).fillna(0.0).clip(lower=0.0)
    return pd.Series(np.nan, index=churn_probability.index, dtype=np.float64)


def cold_start_flags(features: pd.DataFrame, cfg: ScoringConfig) -> pd.Series:
    """True where the history is too short to trust the scores.

    Cold start: tenure (``tenure_days``, else ``days_since_first_purchase``) below
    ``scoring.cold_start_min_tenure_days`` or unknown, or fewer than
    ``scoring.cold_start_min_purchases`` purchases (``n_purchases``; no purchase counts as 0).
    """
    idx = features.index
    tenure = _col(features, "tenure_days", idx).fillna(_col(features, "days_since_first_purchase", idx))
    n = _col(features, "n_purchases", idx).fillna(0.0)
    short = ~(tenure >= cfg.cold_start_min_tenure_days)
    few = n < cfg.cold_start_min_purchases
    return (short | few).astype(bool)


def _day(as_of: date | datetime | str | pd.Timestamp) -> date:
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC")
    if ts != ts.normalize():
        raise ValueError(f"as_of must be a day, got {as_of!r}")
    return ts.date()


def _utc(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise ValueError("scored_at must be timezone-aware (UTC)")
    return t.tz_convert("UTC").as_unit("us")


def _version(model_versions: Mapping[str, Any], key: str) -> tuple[str, str]:
    """``(name, version)`` of ``model_versions[key]``: a ``(name, version)`` pair or a mapping."""
    try:
        v = model_versions[key]
    except KeyError:
        raise ValueError(f"model_versions needs {key!r}: (registered name, version)") from None
    name, ver = (v["name"], v["version"]) if isinstance(v, Mapping) else v
    return str(name), str(ver)


# --------------------------------------------------------------------------------------------
# assembly


def _contain_point(out: pd.DataFrame) -> None:
    """Widen bootstrap intervals that miss their point estimate (in place); refuse lower > upper.

    The parametric-bootstrap quantiles (``ClvModel.predict_interval``) need not contain the
    plug-in point estimate for every customer; the reported interval is widened to contain it
    (count logged). Bounds in the wrong order mean swapped columns: an error.
    """
    for base in ("expected_purchases", "predicted_clv"):
        lo_c, hi_c = f"{base}_lower", f"{base}_upper"
        lo, pt, hi = (out[c].to_numpy(dtype=np.float64) for c in (lo_c, base, hi_c))
        with np.errstate(invalid="ignore"):
            swapped = lo > hi
            outside = (pt < lo) | (pt > hi)
        if swapped.any():
            raise ScoreValidationError(
                f"customer_scores.{base}: {int(swapped.sum())} rows with lower > upper (columns swapped?)"
            )
        if outside.any():
            logger.warning(
                "%s: %d intervals did not contain the point estimate; widened to contain it",
                base,
                int(outside.sum()),
            )
            out[lo_c] = np.fmin(lo, pt)
            out[hi_c] = np.fmax(hi, pt)


def assemble_customer_scores(
    features: pd.DataFrame,
    *outputs: pd.DataFrame | None,
    as_of: date | datetime | str | pd.Timestamp,
    run_id: str,
    model_versions: Mapping[str, Any],
    scored_at: datetime | pd.Timestamp,
    previous: pd.DataFrame | None,
    cfg: ScoringConfig,
) -> pd.DataFrame:
    """Rows of ``customer_scores`` for the customers of ``features``.

    Parameters
    ----------
    features : DataFrame
        Feature table at ``as_of`` (index ``customer_id``): the customers to score.
    *outputs : DataFrame or None
        The model outputs, indexed by ``customer_id``, each for any subset of the customers:
        the churn model's ``predict_frame`` (``churn_probability``, ``churn_risk``,
        optionally ``top_reasons``), the CLV model's ``predict`` (``p_alive``,
        ``expected_purchases``, ``predicted_clv``) and ``predict_interval`` (``*_lower`` /
        ``*_upper``) for the customers with a purchase. Columns are taken by name; a model
        kind absent from the run (None, or not passed) leaves its columns NULL.
    as_of : date-like
        Scoring cutoff day.
    run_id : str
        Scoring run id; with ``as_of`` the history key.
    model_versions : mapping
        Kind → ``(name, version)`` pair or mapping with ``name`` / ``version`` of each model
        used; fills ``<kind>_model`` / ``<kind>_model_version`` (NULL for absent kinds).
    scored_at : datetime
        Timezone-aware time of the run (not "now": the caller passes it once).
    previous : DataFrame or None
        Previous run's scores (``customer_id`` column or index, ``churn_probability``) for the
        trend; None: every row is ``new``.
    cfg : ScoringConfig
        Trend threshold, cold-start rule and health-score weights.

    Returns
    -------
    DataFrame
        Columns :data:`CUSTOMER_SCORE_COLUMNS` in order, one row per customer, sorted by id,
        default index. ``value_at_risk`` is :func:`value_at_risk` (see there for the rule
        without a CLV or a churn model); ``top_reasons`` JSON text (None where not
        explained). Intervals that miss their point estimate are widened to contain it
        (logged); lower > upper is refused.
    """
    idx = pd.Index(features.index.astype(str), name="customer_id")
    feats = features.set_axis(idx, axis=0)
    model = _combined_outputs(outputs, idx)

    def col(name: str, dtype: Any = np.float64) -> pd.Series:
        if name not in model.columns:
            return pd.Series(np.nan if dtype is np.float64 else None, index=idx, dtype=dtype)
        return model[name].astype(dtype)

    has_churn = "churn_probability" in model.columns
    p = col("churn_probability")
    clv = col("predicted_clv") if "predicted_clv" in model.columns else None
    alive = col("p_alive")
    prev_p = None
    if previous is not None:
        prev = previous.set_index("customer_id") if "customer_id" in previous.columns else previous
        prev_p = prev["churn_probability"].set_axis(prev.index.astype(str))
        prev_p = prev_p[~prev_p.index.duplicated(keep="last")]
    if "rfm_segment" in feats.columns:
        seg = feats["rfm_segment"].astype(object).where(feats["rfm_segment"].notna(), NO_PURCHASES)
    else:
        seg = pd.Series(NO_PURCHASES, index=idx, dtype=object)
    data: dict[str, Any] = {
        "customer_id": pd.array(idx, dtype=object),
        "as_of": _day(as_of),
        **{c: col(c).to_numpy() for c in ("churn_probability", *CLV_COLUMNS)},
        "churn_risk": col("churn_risk", object).to_numpy(),
        "value_at_risk": (value_at_risk(p, clv, feats) if has_churn else col("value_at_risk")).to_numpy(),
        "health_score": health_score(p, alive, feats, cfg).to_numpy(),
        "rfm_segment": seg.to_numpy(dtype=object),
        "top_reasons": col("top_reasons", object).to_numpy(),
        "trend": (
            trend_labels(p, prev_p, cfg.trend_threshold) if has_churn else col("trend", object)
        ).to_numpy(),
        "cold_start": cold_start_flags(feats, cfg).to_numpy(dtype=bool),
        "run_id": str(run_id),
        "scored_at": _utc(scored_at),
    }
    if "clv" not in model_versions and "clv_contractual" in model_versions:
        # the contractual CLV model (sBG) fills the same CLV columns (one of them scores a CRM)
        model_versions = {**model_versions, "clv": model_versions["clv_contractual"]}
    for c in CUSTOMER_SCORE_COLUMNS:
        if c.endswith("_model"):
            kind = c.removesuffix("_model")
            name, ver = _version(model_versions, kind) if kind in model_versions else (None, None)
            data[c], data[f"{c}_version"] = name, ver
    out = pd.DataFrame(data, columns=list(CUSTOMER_SCORE_COLUMNS))
    out["as_of"] = out["as_of"].astype(object)
    _contain_point(out)
    out = out.sort_values("customer_id", kind="stable").reset_index(drop=True)
    logger.info("assembled %d customer scores (run %s, as of %s)", len(out), run_id, _day(as_of))
    return out


def _combined_outputs(outputs: Iterable[pd.DataFrame | None], idx: pd.Index) -> pd.DataFrame:
    """Every model output frame aligned on the customers ``idx`` (one index lookup per frame)."""
    parts: list[pd.DataFrame] = []
    for frame in outputs:
        if frame is None:
            continue
        keyed = frame.set_axis(pd.Index(frame.index.astype(str)), axis=0)
        if keyed.index.has_duplicates:
            raise ScoreValidationError(
                f"customer_scores: duplicate customer ids in the model output {list(frame.columns)[:3]}"
            )
        parts.append(keyed if keyed.index.equals(idx) else keyed.reindex(idx))
    if not parts:
        return pd.DataFrame(index=idx)
    combined = pd.concat(parts, axis=1)
    dup = combined.columns[combined.columns.duplicated()]
    if len(dup):
        raise ScoreValidationError(f"customer_scores: model outputs repeat the column(s) {list(dup)}")
    return combined


def assemble_lead_scores(
    lead_out: pd.DataFrame,
    *,
    as_of: date | datetime | str | pd.Timestamp,
    run_id: str,
    model_version: tuple[str, str] | Mapping[str, Any],
    scored_at: datetime | pd.Timestamp,
) -> pd.DataFrame:
    """Rows of ``lead_scores`` from ``LeadScoringModel.predict_frame`` output.

    Parameters
    ----------
    lead_out : DataFrame
        Index ``lead_id``; ``conversion_probability``, ``lead_score``, ``lead_grade``,
        ``top_reasons``.
    as_of, run_id, scored_at
        As for :func:`assemble_customer_scores`.
    model_version : (name, version) or mapping
        Registered model name and version of the lead model.

    Returns
    -------
    DataFrame
        Columns :data:`LEAD_SCORE_COLUMNS`, sorted by ``lead_id``, default index.
    """
    name, ver = _version({"leads": model_version}, "leads")
    ids = pd.Index(lead_out.index.astype(str))
    out = pd.DataFrame(
        {
            "lead_id": ids.to_numpy(dtype=object),
            "as_of": _day(as_of),
            "conversion_probability": lead_out["conversion_probability"].to_numpy(dtype=np.float64),
            "lead_score": pd.to_numeric(lead_out["lead_score"]).to_numpy(),
            "lead_grade": lead_out["lead_grade"].to_numpy(dtype=object),
            "top_reasons": (
                lead_out["top_reasons"].to_numpy(dtype=object)
                if "top_reasons" in lead_out
                else np.full(len(ids), None, dtype=object)
            ),
            "model": name,
            "model_version": ver,
            "run_id": str(run_id),
            "scored_at": _utc(scored_at),
        },
        columns=list(LEAD_SCORE_COLUMNS),
    )
    out["as_of"] = out["as_of"].astype(object)
    return out.sort_values("lead_id", kind="stable").reset_index(drop=True)
