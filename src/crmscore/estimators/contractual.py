"""Contractual lifetime value of a subscription CRM: :class:`ContractualClvModel`.

A thin layer over :class:`crmscore.estimators.sbg.SbgModel` that knows the customers columns
(``clv.tenure_column``, ``clv.revenue_column``, ``clv.segment_column``) and the monthly
discount rate, so that it scores rows of the customer feature table directly.

Tenure convention (months, see :mod:`crmscore.estimators.sbg`): a churned customer with
``tenure`` months churned at the end of her ``tenure``-th month (``T = tenure``); an active
customer with ``tenure`` months is *in* her ``tenure``-th month, so she has survived
``tenure - 1`` renewal decisions (right-censored at ``tenure - 1``). Without a tenure column
the tenure is the whole months (30.4375 days) from ``created_at`` to ``churned_at`` (churned)
or to ``as_of`` (active), plus one (the month in progress counts, as in a billing export).

``predicted_clv`` is the *lifetime* value of the future renewals: ``DERL(d, tenure - 1) x
recurring revenue`` (Fader & Hardie 2010), ``d = (1 + clv.discount_rate_annual) ** (1/12) - 1``
per month (a small positive rate when the annual rate is 0: DERL needs ``d > 0``). The month
in progress (already billed) is not counted. ``p_alive`` does not apply (NULL);
``expected_purchases`` is the undiscounted expected number of further renewals within
``clv.horizon_months`` (``sum_{k=1..H} S(t + k) / S(t)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crmscore.estimators.sbg import SbgModel

__all__ = ["DAYS_PER_MONTH", "ContractualClvModel"]

logger = logging.getLogger(__name__)

#: Days of a month when the tenure is counted from dates.
DAYS_PER_MONTH = 30.4375
#: Discount rate per month used when ``discount_rate_annual`` is 0 (DERL needs ``d > 0``).
_MIN_MONTHLY_RATE = 1e-6


def monthly_rate(annual: float) -> float:
    """The per-month discount rate of an annual rate (``> 0``)."""
    return max(float((1.0 + annual) ** (1.0 / 12.0) - 1.0), _MIN_MONTHLY_RATE)


class ContractualClvModel(BaseEstimator):
    """sBG retention x recurring revenue, scoring customer feature rows.

    Parameters
    ----------
    tenure_column : str
        Feature column of the tenure in months (the customers column, or ``tenure_days``
        derived from ``created_at``: converted to months).
    revenue_column : str
        Feature column of the recurring revenue per month.
    segment_column : str or None
        Feature column of the segment (None: one pooled fit).
    discount_rate_annual : float
    horizon_months : int
    sbg : SbgModel, optional
        The fitted sBG (set by :meth:`fit`).
    missing_shares : mapping, optional
        Input column → share of the training customers where it was missing.
    """

    OUTPUTS: tuple[tuple[str, str], ...] = (
        ("p_alive", "double"),
        ("expected_purchases", "double"),
        ("predicted_clv", "double"),
        ("expected_residual_lifetime", "double"),
    )

    def __init__(
        self,
        tenure_column: str,
        revenue_column: str,
        segment_column: str | None = None,
        discount_rate_annual: float = 0.10,
        horizon_months: int = 12,
        sbg: SbgModel | None = None,
        missing_shares: Mapping[str, float] | None = None,
    ) -> None:
        self.tenure_column = tenure_column
        self.revenue_column = revenue_column
        self.segment_column = segment_column
        self.discount_rate_annual = float(discount_rate_annual)
        self.horizon_months = int(horizon_months)
        self.sbg = sbg
        #: share of the training customers missing each input (the scoring input checks)
        self.missing_shares = dict(missing_shares or {})

    @property
    def input_columns(self) -> list[str]:
        """The feature columns the model reads."""
        cols = [self.tenure_column, self.revenue_column]
        return cols + ([self.segment_column] if self.segment_column else [])

    def months(self, X: pd.DataFrame) -> np.ndarray:
        """Tenure in whole months of the rows of ``X`` (float, NaN where unknown)."""
        t = pd.to_numeric(X[self.tenure_column], errors="coerce").to_numpy(dtype=float)
        if self.tenure_column == "tenure_days":
            t = np.floor(t / DAYS_PER_MONTH) + 1.0
        return np.floor(t)

    def _segment(self, X: pd.DataFrame) -> np.ndarray | None:
        if not self.segment_column:
            return None
        seg = X[self.segment_column].astype(object)
        return seg.where(seg.notna(), "missing").astype(str).to_numpy()

    def fit(self, tenure: np.ndarray, churned: np.ndarray, segment: Any = None) -> ContractualClvModel:
        """Fit the sBG on tenures in months (``churned``: observed churn at the end of ``tenure``).

        Active customers are censored at ``tenure - 1`` (module docstring); rows whose
        censored tenure is 0 carry no information and are left out.
        """
        t = np.asarray(tenure, dtype=float)
        c = np.asarray(churned, dtype=bool)
        obs = np.where(c, t, t - 1.0)
        keep = np.isfinite(obs) & (obs >= 1)
        seg = None if segment is None else np.asarray(segment, dtype=object)[keep]
        self.sbg = SbgModel().fit(obs[keep], c[keep], segment=seg)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """:attr:`OUTPUTS` for the rows of ``X`` (NaN where tenure or revenue is missing)."""
        if self.sbg is None:
            raise RuntimeError("ContractualClvModel is not fitted")
        missing = [c for c in self.input_columns if c not in X.columns]
        if missing:
            raise ValueError(f"contractual CLV model: column(s) missing: {missing}")
        renewals = np.clip(self.months(X) - 1.0, 0, None)
        rev = pd.to_numeric(X[self.revenue_column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(renewals) & np.isfinite(rev) & (rev >= 0)
        seg = self._segment(X)
        derl = np.full(len(X), np.nan)
        expected = np.full(len(X), np.nan)
        if ok.any():
            s = None if seg is None else seg[ok]
            t = renewals[ok]
            derl[ok] = self.sbg.derl(t, monthly_rate(self.discount_rate_annual), segment=s)
            base = self.sbg.survival(t, segment=s)
            expected[ok] = sum(
                self.sbg.survival(t + k, segment=s) / base for k in range(1, self.horizon_months + 1)
            )
        return pd.DataFrame(
            {
                "p_alive": np.full(len(X), np.nan),
                "expected_purchases": expected,
                "predicted_clv": derl * np.where(ok, rev, np.nan),
                "expected_residual_lifetime": derl,
            },
            index=X.index,
        )

    def config(self) -> dict[str, Any]:
        """The column and valuation settings (JSON-ready)."""
        return {
            "tenure_column": self.tenure_column,
            "revenue_column": self.revenue_column,
            "segment_column": self.segment_column,
            "discount_rate_annual": self.discount_rate_annual,
            "horizon_months": self.horizon_months,
            "missing_shares": self.missing_shares,
        }
