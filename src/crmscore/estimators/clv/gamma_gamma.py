"""Gamma-Gamma closed forms: likelihood and expected spend per transaction (pure numpy/scipy).

Gamma-Gamma (Fader, Hardie & Lee 2005b, "RFM and CLV: Using Iso-Value Curves", *JMR* 42;
Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value", note 025): the average
spend per repeat transaction ``monetary_value`` (m) of a customer with x repeat purchases is
Gamma(p x, nu x) with ``nu ~ Gamma(q, v)``. It is fitted on repeat buyers with positive
spend only (the fit is in :mod:`.optimize`); customers with ``frequency > 0`` but
``monetary_value <= 0`` are set aside by :class:`~crmscore.estimators.clv.model.ClvModel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import gammaln

from crmscore.estimators.clv.bgnbd import _as_float

__all__ = ["GG_PARAMS", "gg_conditional_expected_average_profit", "gg_log_likelihood"]

#: Parameter names, in the literature's order.
GG_PARAMS: tuple[str, ...] = ("p", "q", "v")


def gg_log_likelihood(params: Mapping[str, float], frequency: Any, monetary_value: Any) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend, note 025 eq. (1a).

    Only meaningful for ``frequency > 0`` and ``monetary_value > 0``.

    Parameters
    ----------
    params : mapping
        ``p``, ``q``, ``v`` (``v`` in currency units).
    frequency, monetary_value : array_like
        x (repeat purchases) and m (mean spend per repeat purchase).

    Returns
    -------
    numpy.ndarray
        ``log L(p, q, v | x, m)`` per customer.
    """
    p, q, v = (float(params[k]) for k in GG_PARAMS)
    x, m = _as_float(frequency), _as_float(monetary_value)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def gg_conditional_expected_average_profit(
    params: Mapping[str, float], frequency: Any, monetary_value: Any
) -> np.ndarray:
    """E[spend per transaction | x, m], note 025 eq. (5).

    ``(q - 1) / (p x + q - 1) * v p / (q - 1) + p x / (p x + q - 1) * m``: a weighted average of
    the population mean ``v p / (q - 1)`` (finite only when q > 1) and the customer's mean.
    Matches lifetimes' ``conditional_expected_average_profit``.

    Parameters
    ----------
    params : mapping
        ``p``, ``q``, ``v``.
    frequency, monetary_value : array_like
        x and m (x = 0 gives the population mean).

    Returns
    -------
    numpy.ndarray
        Expected spend per transaction per customer.
    """
    p, q, v = (float(params[k]) for k in GG_PARAMS)
    x, m = _as_float(frequency), _as_float(monetary_value)
    w = p * x / (p * x + q - 1)
    return (1 - w) * (v * p / (q - 1)) + w * m
