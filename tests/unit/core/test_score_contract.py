"""The output checks of score rows (crmscore.core.score_contract): each problem is named."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmscore.core.score_contract import ScoreValidationError, check_customer_scores, check_lead_scores
from helpers import SCORED_AT, assemble


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.assign(churn_probability=[0.1, np.nan, 0.6]), r"churn_probability: 1 NaN"),
        (
            lambda d: d.assign(churn_probability=[0.1, 1.2, 0.6]),
            r"churn_probability: 1 values outside \[0.0, 1.0\]",
        ),
        (lambda d: d.assign(predicted_clv=[-1.0, np.nan, 40.0]), r"predicted_clv: 1 values outside >= 0"),
        (
            lambda d: d.assign(predicted_clv_lower=[600.0, np.nan, 20.0]),
            r"predicted_clv: 1 rows where not lower",
        ),
        (lambda d: d.assign(p_alive=[np.nan, np.nan, 0.5]), r"p_alive: 1 NaN for customers with purchases"),
        (lambda d: d.head(0), r"empty"),
        (lambda d: d.head(2), r"2 rows for 3 expected ids \(1 missing"),
        (lambda d: pd.concat([d, d.tail(1)]), r"1 duplicate customer_id"),
        (
            lambda d: d.assign(churn_risk=["low", "medium", "severe"]),
            r"churn_risk: unknown values \['severe'\]",
        ),
        (lambda d: d.drop(columns="health_score"), r"missing columns \['health_score'\]"),
    ],
)
def test_check_customer_scores_names_the_problem(mutate, message):
    good = assemble()
    with pytest.raises(ScoreValidationError, match=message):
        check_customer_scores(mutate(good), expected_ids=["C1", "C2", "C3"])


def test_check_lead_scores_refuses_bad_grades_and_probabilities():
    out = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "as_of": [date(2026, 1, 31)] * 2,
            "conversion_probability": [1.5, 0.2],
            "lead_score": [150, 20],
            "lead_grade": ["A", "E"],
            "top_reasons": [None, None],
            "model": "m",
            "model_version": "1",
            "run_id": "r",
            "scored_at": pd.Timestamp(SCORED_AT),
        }
    )
    with pytest.raises(ScoreValidationError) as exc:
        check_lead_scores(out)
    msg = str(exc.value)
    assert "conversion_probability" in msg and "lead_score" in msg and "lead_grade" in msg
