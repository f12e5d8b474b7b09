"""Holdout evaluation of the BG/NBD purchase forecasts against naive baselines (pure functions).

Input is a calibration/holdout frame as produced by
:func:`crmscore.features.btyd.calibration_and_holdout` (or lifetimes'
``calibration_and_holdout_data``): ``frequency_cal``, ``recency_cal``, ``T_cal``,
``frequency_holdout`` and ``duration_holdout``, all times in the model's ``time_unit``.

Two baselines sit beside the model, as in Fader, Hardie & Lee (2005a, §5):

* ``zero``: nobody buys again (the error is the total holdout volume);
* ``historical_rate``: the customer's calibration rate ``frequency / T`` times the holdout
  duration (0 when ``T == 0``), the "past repeats itself" rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["holdout_metrics", "holdout_predictions", "point_metrics"]

_CAL = ("frequency_cal", "recency_cal", "T_cal", "frequency_holdout", "duration_holdout")


def point_metrics(actual: Any, predicted: Any) -> dict[str, float]:
    """MAE, RMSE and aggregate error (%) of per-customer purchase counts.

    Parameters
    ----------
    actual, predicted : array_like
        Holdout purchases per customer.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``aggregate_error_pct`` = 100 (sum predicted - sum actual) / sum actual
        (NaN when there is no holdout purchase), ``total_actual``, ``total_predicted``.
    """
    y = np.asarray(actual, dtype=float)
    yhat = np.asarray(predicted, dtype=float)
    err = yhat - y
    total = float(y.sum())
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "aggregate_error_pct": 100.0 * (float(yhat.sum()) - total) / total if total > 0 else float("nan"),
        "total_actual": total,
        "total_predicted": float(yhat.sum()),
    }


def holdout_predictions(model: Any, cal_holdout: pd.DataFrame) -> pd.DataFrame:
    """Per-customer holdout purchases: actual, model and the two baselines.

    Parameters
    ----------
    model : crmscore.estimators.clv.model.ClvModel
        Fitted on the calibration columns (same ``time_unit``).
    cal_holdout : pandas.DataFrame
        Calibration/holdout frame (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Same index; ``actual``, ``model``, ``zero``, ``historical_rate``.
    """
    missing = [c for c in _CAL if c not in cal_holdout.columns]
    if missing:
        raise ValueError(f"calibration/holdout frame lacks {missing}")
    x = cal_holdout["frequency_cal"].to_numpy(dtype=float)
    T = cal_holdout["T_cal"].to_numpy(dtype=float)
    dur = cal_holdout["duration_holdout"].to_numpy(dtype=float)
    pred = model.conditional_expected_number_of_purchases_up_to_time(
        dur, x, cal_holdout["recency_cal"].to_numpy(dtype=float), T
    )
    rate = np.divide(x, T, out=np.zeros_like(x), where=T > 0)
    return pd.DataFrame(
        {
            "actual": cal_holdout["frequency_holdout"].to_numpy(dtype=float),
            "model": pred,
            "zero": np.zeros_like(x),
            "historical_rate": rate * dur,
        },
        index=cal_holdout.index,
    )


def holdout_metrics(model: Any, cal_holdout: pd.DataFrame) -> pd.DataFrame:
    """MAE, RMSE and aggregate error of the model beside the naive baselines.

    Returns
    -------
    pandas.DataFrame
        One row per predictor (``model``, ``zero``, ``historical_rate``), columns of
        :func:`point_metrics`.
    """
    preds = holdout_predictions(model, cal_holdout)
    rows = {
        name: point_metrics(preds["actual"], preds[name]) for name in ("model", "zero", "historical_rate")
    }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "predictor"
    return out
