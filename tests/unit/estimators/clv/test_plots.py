"""Plots of the CLV model (crmscore.estimators.clv.plots) fitted on lifetimes' CDNOW sample."""

from __future__ import annotations

import pandas as pd

from crmscore.estimators.clv import ClvModel


def test_plots_return_figures(model: ClvModel, cal_holdout: pd.DataFrame, cdnow_tx: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    from crmscore.estimators.clv import plots as plots_clv

    figs = [
        plots_clv.plot_frequency_recency_matrix(model, T=39.0),
        plots_clv.plot_probability_alive_matrix(model, T=39.0),
        plots_clv.plot_calibration_vs_holdout_purchases(model, cal_holdout),
    ]
    days = (cdnow_tx["date"] - pd.Timestamp("1997-01-01")).dt.days.to_numpy() / 7.0
    d = cdnow_tx.assign(t=days).drop_duplicates(["customer_id", "t"]).sort_values(["customer_id", "t"])
    first = d.groupby("customer_id")["t"].transform("min")
    figs.append(
        plots_clv.plot_cumulative_transactions(
            model,
            d.groupby("customer_id")["t"].min(),
            d.loc[d["t"] > first, "t"],
            t_end=78.0,
            t_calibration=39.0,
        )
    )
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
    ax = figs[3].axes[0]
    actual, expected = (line.get_ydata() for line in ax.lines[:2])
    # FHL 2005a fig. 2: the model tracks cumulative repeat transactions closely
    assert abs(expected[-1] - actual[-1]) / actual[-1] < 0.05
