"""Probabilistic customer lifetime value: BG/NBD purchases × Gamma-Gamma spend.

Modules, each importing only those above it:

* :mod:`.bgnbd`: BG/NBD closed forms (Fader, Hardie & Lee 2005a);
* :mod:`.gamma_gamma`: Gamma-Gamma closed forms (Fader & Hardie 2013, note 025);
* :mod:`.optimize`: the maximum-likelihood fits, their objectives and covariances;
* :mod:`.intervals`: the parametric bootstrap of the prediction intervals;
* :mod:`.model`: the :class:`ClvModel` estimator (units, month conventions, persistence);
* :mod:`.lifetimes_ref`: ``lifetimes`` as the reference implementation (the only module that
  imports it, lazily);
* :mod:`.plots`: diagnostic figures (not imported here: it needs matplotlib).

Importing the package has no side effects and does not import ``lifetimes``.
"""

from crmscore.estimators.clv.bgnbd import (
    BGNBD_PARAMS,
    bgnbd_conditional_expected_purchases,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_probability_alive,
)
from crmscore.estimators.clv.gamma_gamma import (
    GG_PARAMS,
    gg_conditional_expected_average_profit,
    gg_log_likelihood,
)
from crmscore.estimators.clv.lifetimes_ref import (
    lifetimes_freq,
    load_cdnow_sample,
    to_lifetimes,
)
from crmscore.estimators.clv.model import (
    DAYS_PER_MONTH,
    LIFETIMES_MONTH_FACTOR,
    ClvModel,
    monthly_discount_rate,
)
from crmscore.estimators.clv.optimize import ClvFitError, fit_bgnbd, fit_gamma_gamma

__all__ = [
    "BGNBD_PARAMS",
    "DAYS_PER_MONTH",
    "GG_PARAMS",
    "LIFETIMES_MONTH_FACTOR",
    "ClvFitError",
    "ClvModel",
    "bgnbd_conditional_expected_purchases",
    "bgnbd_expected_purchases",
    "bgnbd_log_likelihood",
    "bgnbd_probability_alive",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gg_conditional_expected_average_profit",
    "gg_log_likelihood",
    "lifetimes_freq",
    "load_cdnow_sample",
    "monthly_discount_rate",
    "to_lifetimes",
]
