"""The frame preparer of the classifiers: which columns are features, of which kind, with which categories.

:class:`FramePreparer` learns at fit which columns are numeric and which are categorical
(pandas ``category``, text or object columns) and the categories of each; at transform
categorical columns become ``category`` dtype with exactly those categories, so LightGBM uses
them natively and a category never seen in training becomes missing. Timestamps and timedeltas
are never features (their time of knowledge is unknown).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from crmscore.core.ids import categorical_from_text, text_codes

__all__ = ["FramePreparer", "is_categorical"]

logger = logging.getLogger(__name__)


def is_categorical(s: pd.Series) -> bool:
    """Whether ``s`` is a categorical feature (neither boolean, numeric, timestamp nor timedelta)."""
    return not (
        pd.api.types.is_bool_dtype(s)
        or pd.api.types.is_numeric_dtype(s)
        or pd.api.types.is_datetime64_any_dtype(s)
        or pd.api.types.is_timedelta64_dtype(s)
    )


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

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The model input columns."""
        return np.asarray(self.features_, dtype=object)
