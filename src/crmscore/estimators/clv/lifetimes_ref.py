"""``lifetimes`` as the reference implementation: fitters with our parameters, its CDNOW sample.

This is the only module of crmscore that touches ``lifetimes`` (pinned ``==0.11.3``, archived
since 2020). The likelihoods, predictions and intervals are implemented in vectorised
numpy/scipy in :mod:`.bgnbd`, :mod:`.gamma_gamma`, :mod:`.optimize` and :mod:`.model`;
``lifetimes`` is kept as the *reference implementation* (:func:`to_lifetimes` builds its fitters
with our parameters) and the oracle tests check both against the published numbers.
``lifetimes`` is imported lazily, inside the functions, so importing this module (or the
package) does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from crmscore.estimators.clv.bgnbd import BGNBD_PARAMS
from crmscore.estimators.clv.gamma_gamma import GG_PARAMS

if TYPE_CHECKING:
    from crmscore.estimators.clv.model import ClvModel

__all__ = ["lifetimes_freq", "load_cdnow_sample", "to_lifetimes"]

_LIFETIMES_FREQ: dict[str, str] = {"day": "D", "week": "W"}


def to_lifetimes(model: ClvModel) -> tuple[Any, Any]:
    """lifetimes' ``BetaGeoFitter`` and ``GammaGammaFitter`` carrying ``model``'s parameters.

    For cross-checks (tests, benchmarks, notebooks): the fitters predict with lifetimes' own
    code. CLV equivalence: ``gg.customer_lifetime_value(bgf, ..., time=H,
    discount_rate=monthly_discount_rate(d), freq={"day": "D", "week": "W"}[time_unit])`` equals
    ``model.customer_lifetime_value`` when ``model.month_convention == "lifetimes"``.
    """
    model._check_fitted()
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bgf = BetaGeoFitter(penalizer_coef=model.penalizer)
    bgf.params_ = pd.Series(model.bgnbd_params_, dtype=float)[list(BGNBD_PARAMS)]
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    ggf = GammaGammaFitter(penalizer_coef=model.penalizer)
    ggf.params_ = pd.Series(model.gg_params_, dtype=float)[list(GG_PARAMS)]
    return bgf, ggf


def lifetimes_freq(time_unit: str) -> str:
    """lifetimes' ``freq`` code for a time unit (``"day"`` → ``"D"``, ``"week"`` → ``"W"``)."""
    return _LIFETIMES_FREQ[time_unit]


def load_cdnow_sample() -> pd.DataFrame:
    """lifetimes' bundled CDNOW sample transactions (2,357 customers, 1997-01 to 1998-06).

    Read through ``importlib.resources`` (``lifetimes.datasets`` needs ``pkg_resources``).

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (str), ``date`` (naive datetime64), ``n_items``, ``amount``.
    """
    from importlib.resources import files

    path = files("lifetimes") / "datasets" / "CDNOW_sample.txt"
    with path.open("r") as fh:
        df = pd.read_csv(
            fh,
            sep=r"\s+",
            header=None,
            names=["customer_index", "customer_id", "date", "n_items", "amount"],
            dtype={"customer_index": str, "customer_id": str, "date": str},
        )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df.drop(columns="customer_index")
