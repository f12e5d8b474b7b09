"""Customer-success worklist (ranking, owners, readable reasons, escaped HTML) and score files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ScoringConfig
from crmscore.scoring.worklist import (
    WORKLIST_COLUMNS,
    build_worklist,
    render_reasons,
    worklist_html,
    write_scores_file,
    write_worklist,
)

CFG = ScoringConfig()
EVIL = '<script>alert("x")</script>'


def scores() -> pd.DataFrame:
    reasons = json.dumps(
        [
            {
                "feature": "gap",
                "label": "Overdue ratio",
                "value": 2.5,
                "direction": "increases",
                "contribution": 0.4,
            },
            {"feature": "x", "label": EVIL, "value": "<b>", "direction": "increases", "contribution": 0.2},
            {
                "feature": "csat",
                "label": "CSAT",
                "value": 4.5,
                "direction": "decreases",
                "contribution": -0.3,
            },
        ]
    )
    return pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "as_of": [date(2026, 1, 31)] * 5,
            "churn_probability": [0.9, 0.3, 0.6, 0.1, 0.6],
            "churn_risk": ["high", "medium", "high", "low", "high"],
            "predicted_clv": [10.0, 1000.0, 100.0, 5000.0, 100.0],
            "value_at_risk": [9.0, 300.0, 60.0, 500.0, 60.0],
            "health_score": [20.0, 60.0, 40.0, 90.0, 41.0],
            "trend": ["declining", "new", "steady", "improving", "steady"],
            "rfm_segment": ["At risk", "Loyal", "Need attention", "Champions", "Lost"],
            "cold_start": [False, True, False, False, False],
            "top_reasons": [reasons, None, "[]", None, "not json"],
        }
    )


def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "B", "C", "Z"], "owner": ["ann", EVIL, None, "zed"]})


def test_ranked_by_value_at_risk_within_bands():
    wl = build_worklist(scores(), customers(), CFG)
    assert list(wl.columns) == list(WORKLIST_COLUMNS)
    # D is low risk (excluded); C and E tie on value at risk and probability -> id order
    assert wl["customer_id"].tolist() == ["B", "C", "E", "A"]
    assert wl["rank"].tolist() == [1, 2, 3, 4]
    assert wl.set_index("customer_id")["owner"].to_dict() == {"B": EVIL, "C": None, "E": None, "A": "ann"}
    assert build_worklist(scores(), None, CFG, top_n=2)["customer_id"].tolist() == ["B", "C"]
    everyone = CFG.model_copy(update={"worklist_bands": ("high", "medium", "low")})
    assert build_worklist(scores(), customers(), everyone)["customer_id"].iloc[0] == "D"


def test_order_does_not_depend_on_input_order():
    s = scores()
    a = build_worklist(s, customers(), CFG)
    b = build_worklist(s.iloc[::-1], customers(), CFG)
    pd.testing.assert_frame_equal(a, b)


def test_render_reasons():
    text = render_reasons(scores()["top_reasons"].iloc[0])
    assert text == f"Overdue ratio = 2.5 ↑; {EVIL} = <b> ↑; CSAT = 4.5 ↓"
    assert render_reasons(scores()["top_reasons"].iloc[0], n=1) == "Overdue ratio = 2.5 ↑"
    assert (
        render_reasons(None)
        == render_reasons("[]")
        == render_reasons("not json")
        == render_reasons(np.nan)
        == ""
    )


def test_html_is_escaped_and_self_contained(tmp_path):
    wl = build_worklist(scores(), customers(), CFG)
    page = worklist_html(wl, title="Worklist <1>")
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "Worklist &lt;1&gt;" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page and "<link" not in page
    assert page.count("<tr") == len(wl) + 1
    written = write_worklist(wl, tmp_path / "wl.csv", tmp_path / "wl.html", as_of="2026-01-31", run_id="r1")
    assert [p.name for p in written] == ["wl.csv", "wl.html"]
    back = pd.read_csv(tmp_path / "wl.csv", keep_default_na=False)
    assert back["customer_id"].tolist() == ["B", "C", "E", "A"]
    assert "as of 2026-01-31, run r1" in (tmp_path / "wl.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_scores_file(tmp_path, suffix):
    df = scores().assign(scored_at=pd.Timestamp(datetime(2026, 2, 1, tzinfo=UTC)))
    p = write_scores_file(df, tmp_path / "out" / f"scores{suffix}")
    back = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    assert back["customer_id"].tolist() == df["customer_id"].tolist()
    assert back["value_at_risk"].tolist() == df["value_at_risk"].tolist()
    with pytest.raises(ValueError, match="unsupported output extension"):
        write_scores_file(df, tmp_path / "scores.xlsx")


def test_top_by_value_at_risk_equals_a_full_sort():
    from crmscore.scoring.worklist import top_by_value_at_risk

    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {
            "customer_id": rng.permutation([f"C{i:05d}" for i in range(n)]),
            "value_at_risk": np.round(rng.exponential(10, n), 0),  # many ties
            "churn_probability": np.round(rng.uniform(0, 1, n), 1),  # ties broken by id
            "churn_risk": rng.choice(["high", "medium", "low"], n),
        }
    )
    frame.loc[frame.index[:50], "value_at_risk"] = 0.0
    for top_n, bands in ((1, None), (37, None), (500, ("high", "medium")), (5000, ("low",))):
        rows = frame if bands is None else frame[frame["churn_risk"].isin(bands)]
        want = rows.sort_values(
            ["value_at_risk", "churn_probability", "customer_id"], ascending=[False, False, True]
        ).head(top_n)
        pd.testing.assert_frame_equal(top_by_value_at_risk(frame, top_n, bands=bands), want)
