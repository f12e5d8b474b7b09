"""The HTML + JSON report: every section filled, self-contained, escaped, numbers equal to the KPIs.

The report fits no model (``crmscore.reporting``); the quick models come from the pipeline
(``crmscore.pipelines.report.report_content``). Absent tables give "no data" notes, not empty charts.

That the report builder alone fits nothing, and the import hygiene of ``crmscore.reporting``:
unit/reporting/test_build.py.
"""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig, Config, ReportConfig
from crmscore.core.schema import CRMData
from crmscore.ingest.synth import generate
from crmscore.pipelines.report import fit_clv_at, report_content
from crmscore.reporting.content import SECTIONS, FigureBlock, TableBlock
from crmscore.reporting.html import write_report
from crmscore.reporting.kpis import compute_kpis
from helpers import small_report_cfg as _small_cfg

AS_OF = "2025-12-31"


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.imgs: list[str] = []
        self.tags: set[str] = set()
        self.links: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("src", "href"):
            if k in a and tag != "img":
                self.links.append(a[k])

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def _cfg() -> Config:
    return Config(
        report=ReportConfig(n_periods=6, quick_n_estimators=40, top_n=10),
        churn=ChurnConfig(min_rows=200, min_positives=50, num_leaves=15, min_child_samples=40, n_jobs=1),
    )


@pytest.fixture(scope="module")
def data() -> CRMData:
    return CRMData(**generate(2000, seed=11).tables)


@pytest.fixture(scope="module")
def standalone(data, tmp_path_factory):
    cfg = _cfg()
    content = report_content(data, AS_OF, cfg)
    folder = tmp_path_factory.mktemp("report")
    html_path, json_path = write_report(content, folder / "r.html", folder / "sub" / "r.json")
    return (
        cfg,
        content,
        html_path.read_text(encoding="utf-8"),
        json.loads(json_path.read_text(encoding="utf-8")),
    )


def test_every_section_present_and_filled(standalone):
    _, content, html, _ = standalone
    assert [s.key for s in content.sections] == list(SECTIONS)
    for s in content.sections:
        assert s.blocks, f"section {s.key} is empty"
        assert not any(isinstance(b, str) and "could not be computed" in b for b in s.blocks), s.blocks
    p = _Parser()
    p.feed(html)
    assert p.h2 == list(SECTIONS.values())
    quality = next(s for s in content.sections if s.key == "quality")
    titles = {b.title for b in quality.blocks if isinstance(b, FigureBlock | TableBlock)}
    assert {"Finding the churners", "Are the probabilities honest?", "Forecast against reality"} <= titles
    at_risk = next(s for s in content.sections if s.key == "at_risk").blocks[0]
    assert isinstance(at_risk, TableBlock) and len(at_risk.rows) == 10
    assert all(row[5] for row in at_risk.rows), "every listed account has reasons"


def test_html_is_self_contained(standalone):
    _, content, html, _ = standalone
    p = _Parser()
    p.feed(html)
    assert len(p.imgs) >= 15
    assert len(p.imgs) == len(content.figures())
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "script" not in p.tags and "link" not in p.tags
    assert all(link.startswith("#") for link in p.links)
    assert "http://" not in html and "https://" not in html


def test_json_numbers_match_the_kpi_functions(standalone, data):
    cfg, _, _, numbers = standalone
    clv = fit_clv_at(data, pd.Timestamp(AS_OF, tz="UTC"), cfg)
    ref = compute_kpis(data, AS_OF, cfg.report, model=clv, rfm_bins=cfg.features.rfm_bins)
    assert list(numbers["kpis"]) == list(ref.table.index)
    for period, row in ref.table.drop(columns=["period_start", "period_end"]).iterrows():
        got = numbers["kpis"][period]
        for k, v in row.items():
            if pd.isna(v):
                assert got[k] is None, (period, k)
            else:
                assert got[k] == pytest.approx(float(v), rel=1e-12), (period, k)
    assert numbers["segments"]["Champions"]["customers"] == int(ref.segments.loc["Champions", "customers"])
    assert set(numbers["cac_by_channel"]) == set(ref.cac_by_channel.index)
    assert numbers["model_quality"]["source"] == "standalone quick models"
    assert numbers["model_quality"]["churn"]["metrics"]["LightGBM (calibrated)"]["roc_auc"] > 0.6
    assert len(numbers["at_risk"]) == 10


def _scores(data: CRMData) -> pd.DataFrame:
    ids = data.customers["customer_id"].iloc[:30].to_numpy()
    rng = np.random.default_rng(0)
    p = rng.random(30)
    clv = rng.random(30) * 1000
    reason = json.dumps(
        [
            {
                "feature": "recency_days",
                "label": "Days since last purchase",
                "value": 120.0,
                "direction": "increases",
                "contribution": 0.8,
            }
        ]
    )
    return pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": p,
            "predicted_clv": clv,
            "value_at_risk": p * clv,
            "owner": ["<script>alert('x')</script>"] * 30,
            "top_reasons": [reason] * 30,
        }
    )


#: The shape of ``crmscore train --report-json`` (``TrainResult.to_dict()``).
SUMMARY = {
    "as_of": AS_OF,
    "tracking_uri": "file:./mlruns",
    "experiment_id": "1",
    "parent_run_id": "abc123",
    "git_commit": None,
    "data": {},
    "models": {
        "churn": {
            "kind": "churn",
            "status": "trained",
            "run_id": "r1",
            "registered_name": "crmscore-churn",
            "version": 3,
            "metrics": {"roc_auc": 0.81, "brier": 0.17, "capture_top_decile": 0.2},
            "baselines": {"logistic regression (RFM)": {"roc_auc": 0.77, "brier": 0.19}},
            "split": "out-of-time: trained on cutoffs 2025-03-31; evaluated on cutoff 2025-09-30",
            "promoted": True,
            "promotion_reason": "first model",
            "parameters": {},
        },
        "leads": {"kind": "leads", "status": "skipped", "reason": "no leads table"},
        "clv": {
            "kind": "clv",
            "status": "trained",
            "run_id": "r2",
            "registered_name": "crmscore-clv",
            "version": 1,
            "metrics": {"mae": 0.8, "rmse": 1.3, "aggregate_error_pct": 3.9},
            "baselines": {"zero": {"mae": 0.84}, "historical_rate": {"mae": 1.35}},
            "split": "calibration to 2025-06-30, holdout to 2025-12-31",
            "promoted": False,
            "parameters": {
                "bgnbd": {"r": {"estimate": 0.74, "se": 0.02}, "alpha": {"estimate": 6.9, "se": 0.3}}
            },
        },
    },
}


def test_with_model_summary_and_scores(data, tmp_path):
    cfg = _cfg()
    scores = _scores(data)
    content = report_content(data, AS_OF, cfg, model_summary=SUMMARY, scores=scores)
    h, j = write_report(content, tmp_path / "r.html", tmp_path / "r.json")
    html = h.read_text(encoding="utf-8")
    numbers = json.loads(j.read_text(encoding="utf-8"))
    assert numbers["model_quality"]["source"] == "model_summary"
    assert numbers["model_quality"]["models"]["churn"]["metrics"]["roc_auc"] == 0.81
    top = scores.sort_values("value_at_risk", ascending=False).head(10)
    assert [r["customer_id"] for r in numbers["at_risk"]] == list(top["customer_id"])
    assert "<script>" not in html and "&lt;script&gt;" in html  # text is escaped
    assert "Days since last purchase (120)" in html
    quality = next(s for s in content.sections if s.key == "quality")
    titles = [b.title for b in quality.blocks if isinstance(b, TableBlock)]
    assert titles == [
        "Churn model against simple rules",
        "Lifetime-value model against simple rules",
        "Lifetime-value model: fitted parameters",
        "Training run",
    ]
    churn_table = quality.blocks[0]
    assert [r[0] for r in churn_table.rows] == ["crmscore-churn", "logistic regression (RFM)"]
    assert "Lead scoring model: skipped. no leads table" in quality.blocks
    assert "Registered as version 3, promoted to champion (first model)" in churn_table.caption
    assert "Out-of-time: trained on cutoffs" in churn_table.caption


def test_report_ignores_rows_after_as_of(data):
    cfg = _cfg()
    scores = _scores(data)
    late_tx = pd.DataFrame(
        {
            "transaction_id": ["LATE1", "LATE2"],
            "customer_id": data.customers["customer_id"].iloc[:2].to_numpy(),
            "ts": pd.Series(
                pd.to_datetime(["2026-01-01 00:00", "2026-01-05 00:00"], utc=True),
                dtype="datetime64[us, UTC]",
            ),
            "amount": [5000.0, 7000.0],
        }
    )
    late = CRMData(
        **{**data.tables(), "transactions": pd.concat([data.transactions, late_tx], ignore_index=True)}
    )
    a = report_content(data, AS_OF, cfg, model_summary=SUMMARY, scores=scores).numbers
    b = report_content(late, AS_OF, cfg, model_summary=SUMMARY, scores=scores).numbers
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_minimal_data_still_renders(tmp_path):
    """Customers (id only) and transactions of 60 customers: models refuse, the report explains why."""
    s = generate(60, seed=2)
    data = CRMData(customers=s.tables["customers"][["customer_id"]], transactions=s.tables["transactions"])
    content = report_content(data, AS_OF, Config(report=ReportConfig(n_periods=3)))
    assert [sec.key for sec in content.sections] == list(SECTIONS)
    notes = [b for sec in content.sections for b in sec.blocks if isinstance(b, str)]
    assert any("churn model check could not be computed" in n and "min_rows" in n for n in notes)
    h, j = write_report(content, tmp_path / "r.html", tmp_path / "r.json")
    numbers = json.loads(j.read_text(encoding="utf-8"))
    assert numbers["kpis"]["2025-12"]["cac"] is None  # no marketing_spend table
    assert "How each number is defined" in h.read_text(encoding="utf-8")


# --- absent tables: "no data" notes, never empty charts or NaN ----------------------------------


def _reject_nan(token: str) -> float:
    raise AssertionError(f"JSON holds {token}")


def _assert_finite(obj: object, path: str = "numbers") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _assert_finite(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _assert_finite(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        assert np.isfinite(obj), path


def _written(content, folder) -> tuple[str, dict]:
    h, j = write_report(content, folder / "r.html", folder / "r.json")
    numbers = json.loads(j.read_text(encoding="utf-8"), parse_constant=_reject_nan)
    _assert_finite(numbers)
    return h.read_text(encoding="utf-8"), numbers


def _section(content, key: str):
    return next(s for s in content.sections if s.key == key)


@pytest.fixture(scope="module")
def small() -> CRMData:
    return CRMData(**generate(300, seed=5).tables)


def test_customers_and_transactions_only(small, tmp_path):
    """No leads, marketing spend or support tickets: the lead and cost charts become notes."""
    data = CRMData(customers=small.customers, transactions=small.transactions)
    content = report_content(data, AS_OF, _small_cfg())
    html, numbers = _written(content, tmp_path)
    assert [s.key for s in content.sections] == list(SECTIONS)
    assert numbers["absent_tables"] == ["leads", "marketing_spend", "support_tickets"]
    assert "no data: leads not in this CRM" in html
    assert "no data: marketing_spend not in this CRM" in html
    acquisition = _section(content, "acquisition")
    assert not any(isinstance(b, FigureBlock | TableBlock) for b in acquisition.blocks)
    assert acquisition.blocks == [
        "no data: marketing_spend not in this CRM "
        "(not shown: Acquisition cost, Value for money, Acquisition cost by channel)",
        "no data: leads not in this CRM (not shown: Qualified leads, Lead conversion, Sales cycle)",
    ]
    summary = _section(content, "summary")
    assert "Acquisition cost (CAC)" not in {getattr(b, "label", "") for b in summary.blocks}
    # what has its data is still drawn: every revenue chart, the segments
    assert len([b for b in _section(content, "revenue").blocks if isinstance(b, FigureBlock)]) == 5
    assert any(isinstance(b, FigureBlock) for b in _section(content, "segments").blocks)
    last = numbers["kpis"]["2025-12"]
    assert last["cac"] is None and last["qualified_leads"] is None and last["revenue"] > 0


@pytest.mark.parametrize("definition", ["activity", "contractual"])
def test_customers_only_with_a_churn_label(small, tmp_path, definition):
    """Customers (attributes and a boolean churn label) without transactions: no purchase-based block."""
    customers = small.customers.assign(churn=small.customers["churned_at"].notna())
    data = CRMData(customers=customers)
    cfg = Config(
        report=ReportConfig(n_periods=4, top_n=10, customer_definition=definition),
        churn=ChurnConfig(definition="label"),
    )
    content = report_content(data, AS_OF, cfg)
    html, numbers = _written(content, tmp_path)
    assert [s.key for s in content.sections] == list(SECTIONS)
    assert "no data: transactions not in this CRM" in html
    assert "could not be computed" not in html
    for key in ("revenue", "quality", "at_risk", "segments"):
        blocks = _section(content, key).blocks
        assert blocks and all(isinstance(b, str) and b.startswith("no data") for b in blocks), key
    customers_section = _section(content, "customers").blocks
    if definition == "activity":  # active means "bought recently": unknown without transactions
        assert customers_section == [
            "no data: transactions not in this CRM (not shown: Customer base, Customers won and lost, "
            "Retention and churn, Customer growth)"
        ]
        assert numbers["kpis"]["2025-12"]["customers_end"] is None
    else:  # contractual: created_at and churned_at are enough
        assert all(isinstance(b, FigureBlock) for b in customers_section)
        assert numbers["kpis"]["2025-12"]["customers_end"] > 0
    assert numbers["kpis"]["2025-12"]["revenue"] is None
    assert numbers["segments"] == {} and "at_risk" not in numbers
    assert numbers["model_quality"] == {"source": "standalone quick models"}
