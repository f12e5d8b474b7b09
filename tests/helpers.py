"""Helpers shared by several test files (imported as ``helpers``: ``tests/`` is on ``sys.path``
because ``tests/conftest.py`` is not in a package)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig, Config, ReportConfig, ScoringConfig, config_from_mapping
from crmscore.scoring.rows import assemble_customer_scores

#: the repository (params.yaml, notebooks/)
REPO_ROOT = Path(__file__).resolve().parents[1]


def ts(*values: str | None) -> pd.Series:
    """UTC timestamps from ISO 8601 strings (None for missing)."""
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def run_cli_captured(args: list[str], monkeypatch) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, captured console output).

    Captures the CLI's own rich consoles, so it also works where ``capsys`` is not available
    (session fixtures, with a ``pytest.MonkeyPatch.context()``).
    """
    from crmscore import cli

    monkeypatch.setattr(sys, "argv", ["crmscore", *args])
    with cli.out.capture() as cap_out, cli.err.capture() as cap_err, pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, cap_out.get() + cap_err.get()


# ------------------------------------------------------------------------------- churn model

#: a churn model fast enough for 6,000 customers (unit/estimators, unit/features/test_snapshot.py)
CHURN_FAST = {"n_estimators": 100, "num_leaves": 15, "min_child_samples": 50, "n_jobs": 1}


def churn_cfg(**kw) -> ChurnConfig:
    base = {"min_rows": 200, "min_positives": 50, **CHURN_FAST}
    base.update(kw)
    return ChurnConfig(**base)


# --------------------------------------------------- score rows (unit/scoring, unit/core)

SCORING_CFG = ScoringConfig()
SCORED_AT = datetime(2026, 2, 1, 6, 30, tzinfo=UTC)
VERSIONS = {"churn": ("crmscore-churn", "3"), "clv": {"name": "crmscore-clv", "version": "2"}}


def small_inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = pd.Index(["C3", "C1", "C2"], name="customer_id")  # unsorted on purpose
    features = pd.DataFrame(
        {
            "recency_days": [60.0, 0.0, np.nan],
            "n_purchases": [1.0, 5.0, 0.0],
            "tenure_days": [30.0, 400.0, 200.0],
            "purchase_trend": [-1.0, 1.0, np.nan],
            "tickets_open": [1.0, 0.0, np.nan],
            "csat_mean": [np.nan, 5.0, np.nan],
            "rfm_segment": pd.Categorical(["New", "Champions", "No purchases"]),
        },
        index=ids,
    )
    reasons = json.dumps([{"feature": "recency_days", "label": "Days since last purchase", "value": 60,
                           "direction": "increases", "contribution": 0.8}])  # fmt: skip
    churn = pd.DataFrame(
        {
            "churn_probability": [0.6, 0.1, 0.3],
            "churn_risk": ["high", "low", "medium"],
            "top_reasons": [reasons, None, "[]"],
        },
        index=ids,
    )
    buyers = ["C1", "C3"]
    clv = pd.DataFrame(
        {"p_alive": [0.9, 0.5], "expected_purchases": [4.0, 0.5], "predicted_clv": [500.0, 40.0]},
        index=buyers,
    )
    interval = pd.DataFrame(
        {
            "expected_purchases_lower": [3.0, 0.2],
            "expected_purchases_upper": [5.0, 0.9],
            "predicted_clv_lower": [400.0, 20.0],
            "predicted_clv_upper": [650.0, 70.0],
        },
        index=buyers,
    )
    return features, churn, clv, interval


def assemble(previous: pd.DataFrame | None = None, cfg: ScoringConfig = SCORING_CFG) -> pd.DataFrame:
    f, c, v, i = small_inputs()
    return assemble_customer_scores(
        f, c, v, i, as_of="2026-01-31", run_id="run-1", model_versions=VERSIONS,
        scored_at=SCORED_AT, previous=previous, cfg=cfg,
    )  # fmt: skip


# ------------------------------------- score write-back (unit/io/test_scores.py, reliability)

#: the four score tables, as :func:`crmscore.io.scores.read_scores` names them
SCORE_TABLES = ("customer_scores", "customer_history", "lead_scores", "lead_history")


def make_customer_scores(
    n: int,
    *,
    run_id: str = "run-1",
    as_of: str = "2026-01-31",
    seed: int = 0,
    scored_at: datetime | None = None,
    previous: pd.DataFrame | None = None,
    cfg: ScoringConfig = SCORING_CFG,
) -> pd.DataFrame:
    """Assembled customer scores for ``n`` synthetic customers (10 % without a purchase)."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"C{i:07d}" for i in range(n)], name="customer_id")
    buyer = np.arange(n) % 10 != 0
    features = pd.DataFrame(
        {
            "recency_days": np.where(buyer, rng.integers(0, 400, n), np.nan),
            "n_purchases": np.where(buyer, rng.integers(1, 20, n), 0),
            "tenure_days": rng.integers(0, 1500, n).astype(float),
            "purchase_trend": rng.uniform(-1, 1, n),
            "tickets_open": rng.integers(0, 3, n).astype(float),
            "csat_mean": rng.uniform(1, 5, n),
            "rfm_segment": np.where(buyer, "Loyal", "No purchases"),
        },
        index=ids,
    )
    p = rng.uniform(0, 1, n)
    band = np.where(p >= 0.5, "high", np.where(p >= 0.25, "medium", "low"))
    reason = '[{"feature": "recency_days", "label": "Days since last purchase", "value": 120, '
    reason += '"direction": "increases", "contribution": 0.5}, {"feature": "note", "label": "Note \\"q\\"", '
    reason += '"value": "a,b\\nc", "direction": "decreases", "contribution": -0.25}]'
    churn = pd.DataFrame(
        {"churn_probability": p, "churn_risk": band, "top_reasons": np.where(band == "low", None, reason)},
        index=ids,
    )
    b = ids[buyer]
    clv_point = rng.gamma(2.0, 100.0, len(b))
    ep = rng.uniform(0, 5, len(b))
    clv = pd.DataFrame(
        {"p_alive": rng.uniform(0, 1, len(b)), "expected_purchases": ep, "predicted_clv": clv_point}, index=b
    )
    interval = pd.DataFrame(
        {
            "expected_purchases_lower": ep * 0.8,
            "expected_purchases_upper": ep * 1.3,
            "predicted_clv_lower": clv_point * 0.7,
            "predicted_clv_upper": clv_point * 1.5,
        },
        index=b,
    )
    return assemble_customer_scores(
        features, churn, clv, interval, as_of=as_of, run_id=run_id,
        model_versions={"churn": ("crmscore-churn", "1"), "clv": ("crmscore-clv", "1")},
        scored_at=scored_at or datetime(2026, 2, 1, 6, 0, 0, 123456, tzinfo=UTC), previous=previous, cfg=cfg,
    )  # fmt: skip


def make_lead_scores(
    n: int, *, run_id: str = "run-1", as_of: str = "2026-01-31", seed: int = 1
) -> pd.DataFrame:
    """Assembled lead scores for ``n`` synthetic open leads (no reasons)."""
    from crmscore.scoring.rows import assemble_lead_scores

    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    score = np.floor(100 * p + 0.5).astype(np.int64)
    grade = np.select([score >= 75, score >= 50, score >= 25], ["A", "B", "C"], "D")
    out = pd.DataFrame(
        {"conversion_probability": p, "lead_score": score, "lead_grade": grade, "top_reasons": None},
        index=pd.Index([f"L{i:06d}" for i in range(n)], name="lead_id"),
    )
    return assemble_lead_scores(
        out, as_of=as_of, run_id=run_id, model_version=("crmscore-leads", "4"),
        scored_at=datetime(2026, 2, 1, 6, 0, tzinfo=UTC),
    )  # fmt: skip


def score_snapshot(engine, schema: str | None, cfg: ScoringConfig = SCORING_CFG) -> dict[str, pd.DataFrame]:
    """The four score tables as :func:`crmscore.io.scores.read_scores` reads them."""
    from crmscore.io.scores import read_scores

    return {w: read_scores(engine, cfg, w, schema=schema) for w in SCORE_TABLES}  # type: ignore[arg-type]


def assert_same_scores(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    """Two :func:`score_snapshot` results are equal, table by table."""
    for k in SCORE_TABLES:
        pd.testing.assert_frame_equal(a[k], b[k], obj=k)


def as_read(df: pd.DataFrame, *, latest: bool = False) -> pd.DataFrame:
    """An assembled frame typed as :func:`crmscore.io.scores.read_scores` gives it back.

    ``latest``: as a latest table gives it back, with ``absent_since`` NULL (every row scored).
    """
    import crmscore.io.scores as scores_io

    kinds = scores_io.CUSTOMER_SCORE_COLUMNS if "customer_id" in df else scores_io.LEAD_SCORE_COLUMNS
    key = "customer_id" if "customer_id" in df else "lead_id"
    out = scores_io._normalise(df, kinds).sort_values(key).reset_index(drop=True)
    if latest:
        out["absent_since"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    return out


# --------------------------------------------------------------- readers (unit/io)

TABLE_NAMES = {t: t for t in ("customers", "transactions", "support_tickets")}


def canonical_tables() -> dict[str, pd.DataFrame]:
    ts = pd.to_datetime(
        ["2024-01-05 10:00:00.123456", "2024-02-01 23:59:59", "2024-03-10 00:00:00", "2024-03-11 08:30:00"],
        utc=True,
        format="ISO8601",
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "created_at": pd.to_datetime(
                ["2023-12-01", "2024-01-01 12:00", "2024-02-15"], utc=True, format="ISO8601"
            ),
            "churned_at": pd.to_datetime([None, "2024-06-01", None], utc=True),
            "plan": ["basic", "pro", None],
            "seats": [1.0, 12.0, 3.0],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2", "C3"],
            "ts": ts,
            "amount": [10.5, -2.25, 100.0, 0.0],
            "transaction_id": ["T1", "T2", "T3", "T4"],
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["K1", "K2"],
            "customer_id": ["C1", "C2"],
            "opened_at": pd.to_datetime(["2024-02-01 09:00", "2024-03-01 10:00"], utc=True),
            "closed_at": pd.to_datetime(["2024-02-02 09:00", None], utc=True),
            "priority": ["high", "low"],
            "csat": [4.0, None],
        }
    )
    return {"customers": customers, "transactions": transactions, "support_tickets": tickets}


def assert_same_tables(data, expected: dict[str, pd.DataFrame]) -> None:
    for name, exp in expected.items():
        got = data.get(name)
        assert got is not None, name
        got = got[exp.columns]
        for col in exp.columns:
            if isinstance(exp[col].dtype, pd.DatetimeTZDtype):
                assert isinstance(got[col].dtype, pd.DatetimeTZDtype)
                assert str(got[col].dt.tz) == "UTC"
                pd.testing.assert_series_equal(
                    got[col].astype("datetime64[us, UTC]"),
                    exp[col].astype("datetime64[us, UTC]"),
                    check_names=False,
                )
            elif pd.api.types.is_float_dtype(exp[col].dtype):
                pd.testing.assert_series_equal(got[col].astype(float), exp[col], check_names=False)
            else:
                assert got[col].tolist() == [None if pd.isna(v) else v for v in exp[col]], (name, col)


def validate_raw(raw, cfg=None):
    """Validate raw tables at 2025-01-01; asserts nothing was set aside."""
    from crmscore.ingest.validation import validate_tables

    cfg = cfg or config_from_mapping({})
    data, report = validate_tables(raw, cfg, as_of="2025-01-01", now="2025-01-02")
    assert report.usable, report.problems
    assert report.rows_set_aside == 0, report.to_dict()
    return data


# -------------------------------------------------- report (unit/reporting, integration)


def small_report_cfg(**report) -> Config:
    return Config(report=ReportConfig(n_periods=4, top_n=10, **report))
