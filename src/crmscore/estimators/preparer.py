"""The frame preparer of the classifiers: which columns are features, of which kind, with which categories.

:class:`FramePreparer` learns at fit which columns are numeric and which are categorical
(pandas ``category``, text or object columns) and the categories of each; at transform
categorical columns become ``category`` dtype with exactly those categories, so LightGBM uses
them natively and a category never seen in training becomes missing. Timestamps and timedeltas
are never features (their time of knowledge is unknown).

The fit also records each feature's share of missing values on the training rows
(``missing_share_``); :meth:`FramePreparer.profile` gives the per-feature record (kind, levels,
missing share) that scoring compares its inputs with (:mod:`crmscore.scoring.input_checks`).
No raw value is kept beyond the categories the model needs anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from crmscore.core.ids import categorical_from_text, text_codes

__all__ = ["FeatureProfile", "FramePreparer", "is_categorical"]

logger = logging.getLogger(__name__)


def is_categorical(s: pd.Series) -> bool:
    """Whether ``s`` is a categorical feature (neither boolean, numeric, timestamp nor timedelta)."""
    return not (
        pd.api.types.is_bool_dtype(s)
        or pd.api.types.is_numeric_dtype(s)
        or pd.api.types.is_datetime64_any_dtype(s)
        or pd.api.types.is_timedelta64_dtype(s)
    )


@dataclass(frozen=True)
class FeatureProfile:
    """What a model learned about one input column at training (compared at scoring).

    Attributes
    ----------
    name : str
        The column.
    kind : {"numeric", "categorical"}
        Numeric (and boolean) features are float64 to the model; categorical ones are text
        levels.
    missing_share : float or None
        Share of the training rows where the value was missing (None: not recorded, a bundle
        older than the record).
    levels : tuple of str or None
        The categorical levels seen at training (None for a numeric feature).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    missing_share: float | None = None
    levels: tuple[str, ...] | None = None


def _as_text(s: pd.Series) -> pd.Series:
    vals = s.astype(object)
    return vals.where(vals.isna(), vals.astype(str))


class FramePreparer(TransformerMixin, BaseEstimator):
    """Select and type the feature columns; categories learned at fit, unseen → missing.

    Parameters
    ----------
    exclude : tuple of str
        Columns that are never features (ids, cutoff, labels, redundant features). Timestamp
        and timedelta columns are dropped too (their time of knowledge is unknown).

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        Columns seen at fit.
    features_ : list of str
        Model input columns, in order.
    numeric_ : list of str
        Numeric and boolean features (as float64).
    categories_ : dict of str to list of str
        Categorical features and their categories (sorted text of the values seen at fit).
    missing_share_ : dict of str to float
        Share of the fit rows where each feature is missing (absent on a model loaded from a
        bundle older than ``crmscore.classifier/3``).
    """

    def __init__(self, exclude: tuple[str, ...] = ()) -> None:
        self.exclude = exclude

    def fit(self, X: pd.DataFrame, y: Any = None) -> FramePreparer:
        """Learn the feature columns, their kinds and the categories (``y`` is ignored)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FramePreparer needs a pandas DataFrame (column names carry meaning)")
        drop = set(self.exclude)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.features_: list[str] = []
        self.numeric_: list[str] = []
        self.categories_: dict[str, list[str]] = {}
        self.missing_share_: dict[str, float] = {}
        n = len(X)
        for col in X.columns:
            s = X[col]
            if col in drop:
                continue
            if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                logger.info("column %r is a timestamp: not a feature", col)
                continue
            self.features_.append(str(col))
            if is_categorical(s):
                self.categories_[str(col)] = sorted(_as_text(s).dropna().unique().tolist())
            else:
                self.numeric_.append(str(col))
            self.missing_share_[str(col)] = float(s.isna().sum() / n) if n else 0.0
        if not self.features_:
            raise ValueError("no feature columns left after exclusions")
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return the typed feature frame (same index; input not modified).

        Raises
        ------
        ValueError
            A feature column of the fit is missing.
        """
        missing = [c for c in self.features_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature column(s) missing at transform: {missing}")
        out: dict[str, Any] = {}
        for col in self.features_:
            s = X[col]
            if col in self.categories_:
                codes, texts = text_codes(s)
                cat = categorical_from_text(codes, texts, self.categories_[col])
                unseen = int(((codes >= 0) & (cat.codes < 0)).sum())
                if unseen:
                    logger.debug("%r: %d value(s) of categories unseen at fit set to missing", col, unseen)
                out[col] = cat
            else:
                if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                    v = s.astype(np.float64)
                else:
                    v = pd.to_numeric(s, errors="coerce").astype(np.float64)
                    bad = int((s.notna() & v.isna()).sum())
                    if bad:
                        logger.warning("%r: %d non-numeric value(s) set to missing", col, bad)
                out[col] = v.to_numpy()
        return pd.DataFrame(out, index=X.index)

    def profile(self) -> list[FeatureProfile]:
        """Each model input's training record, in feature order (see :class:`FeatureProfile`)."""
        shares = getattr(self, "missing_share_", None)
        out = []
        for col in self.features_:
            share = None if shares is None or col not in shares else float(shares[col])
            if col in self.categories_:
                out.append(FeatureProfile(col, "categorical", share, tuple(self.categories_[col])))
            else:
                out.append(FeatureProfile(col, "numeric", share))
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The model input columns."""
        return np.asarray(self.features_, dtype=object)
