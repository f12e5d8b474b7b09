"""The report builder (crmscore.reporting.build) fits no model, and crmscore.reporting imports
no pipeline, I/O or tracking module.

The report with its quick models (crmscore.pipelines.report): integration/test_report_pipeline.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from crmscore.core.schema import CRMData
from crmscore.ingest.synth import generate
from crmscore.reporting.build import build_report
from helpers import small_report_cfg as _small_cfg

AS_OF = "2025-12-31"


@pytest.fixture(scope="module")
def small() -> CRMData:
    return CRMData(**generate(300, seed=5).tables)


def test_build_report_fits_nothing(small):
    """Without quick-model results the report says so instead of fitting models itself."""
    data = CRMData(customers=small.customers, transactions=small.transactions)
    content = build_report(data, AS_OF, _small_cfg())
    notes = [b for s in content.sections for b in s.blocks if isinstance(b, str)]
    assert "no data: no churn model check was given to this report." in notes
    assert "no data: no lifetime-value holdout check was given to this report." in notes
    assert any("predicted lifetime value not shown" in n for n in notes)
    assert any(n.startswith("no data: no scores and no churn model") for n in notes)
    assert content.numbers["kpis"]["2025-12"]["predicted_ltv"] is None


def test_reporting_imports_point_down():
    """crmscore.reporting imports no pipeline, I/O or tracking module."""
    code = (
        "import sys\n"
        "import crmscore.reporting.build, crmscore.reporting.html\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('crmscore.pipelines', 'crmscore.io', "
        "'crmscore.tracking')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
