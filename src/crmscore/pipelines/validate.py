"""``crmscore validate``: read the configured source, check the data contract, write the quarantine."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from crmscore.config import Config
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData

__all__ = ["run_validate"]


def run_validate(
    cfg: Config, as_of: date | None, quarantine_dir: Path, *, for_scoring: bool = False
) -> tuple[CRMData, Any]:
    """Read and validate the configured source, write the quarantine; return (data, report).

    ``for_scoring`` reads only the leads a scoring run can use (see ``load_validated``).
    """
    from crmscore.ingest.validation import load_validated, write_quarantine

    with stage("reading and validating the CRM data"):
        data, report = load_validated(cfg, as_of=as_of, for_scoring=for_scoring)
    write_quarantine(report, quarantine_dir)
    return data, report
