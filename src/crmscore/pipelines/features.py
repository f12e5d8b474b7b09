"""``crmscore features``: validate → the point-in-time feature table at ``as_of`` → a file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from crmscore.config import Config
from crmscore.core.progress import stage
from crmscore.core.schema import CRMData
from crmscore.features.tables import build_feature_table

__all__ = ["run_features", "write_feature_table"]


def write_feature_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` (with its index) to ``path``: ``.csv`` or ``.parquet``/``.pq`` by extension.

    Returns
    -------
    Path
        The written file.
    """
    from crmscore.io.files import write_table

    return write_table(df, path, index=True)


def run_features(cfg: Config, as_of: date, output: Path, data: CRMData) -> pd.DataFrame:
    """Build the feature table of validated ``data`` as of ``as_of`` and write it to ``output``."""
    with stage(f"building features as of {as_of}"):
        table = build_feature_table(data, as_of, cfg)
    write_feature_table(table, output)
    return table
