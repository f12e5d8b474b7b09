"""JSON-ready values and the versions of the packages a run used (one definition each)."""

from __future__ import annotations

import contextlib
import math
import platform
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["jsonable", "package_versions", "slug"]

#: Packages whose versions a model artefact records.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "crmscore",
    "lightgbm",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "mlflow",
    "lifetimes",
)


def jsonable(obj: Any) -> Any:
    """Convert numpy/pandas scalars, frames and timestamps to JSON types (NaN and inf → None).

    Mappings keep their order (keys become text), frames become ``{index: {column: value}}``,
    series ``{index: value}``, sequences lists; timestamps and dates become ISO 8601 text.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return {str(i): jsonable(r) for i, r in zip(obj.index, obj.to_dict(orient="records"), strict=True)}
    if isinstance(obj, pd.Series):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pd.Timestamp | datetime | date):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NaT or obj is pd.NA:
        return None
    return obj


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """``{"python": ..., package: version}`` for the installed ``packages`` (absent ones left out)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def slug(name: object, empty: str = "") -> str:
    """``name`` as a key-safe word: lower case, every run of other characters one ``_``.

    Used for MLflow metric/param keys and for feature names built from data values (activity
    types); ``empty`` is returned when nothing is left (e.g. ``"!!"``).
    """
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or empty
