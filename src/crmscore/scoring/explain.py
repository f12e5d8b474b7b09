"""Which customers get churn reasons: the rows someone acts on, chosen by value at risk.

Reasons (exact LightGBM contributions) cost about 1 ms per row, so a scoring run computes them
only where they are read: the top ``scoring.explain_top_n`` customers by value at risk (ranked
exactly as the worklist ranks them), every worklist account, and the optional
``churn.explain_bands`` / ``churn.explain_top_n``. Pure: model outputs in, a mask out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.config import Config
from crmscore.estimators.reasons import rows_to_explain
from crmscore.scoring.rows import value_at_risk
from crmscore.scoring.worklist import top_by_value_at_risk

__all__ = ["churn_rows_to_explain"]


def churn_rows_to_explain(
    churn_out: pd.DataFrame,
    clv_out: pd.DataFrame | None,
    cfg: Config,
    features: pd.DataFrame | None = None,
) -> tuple[np.ndarray, str]:
    """Which customers get churn reasons, and why (for the log).

    Reasons cost about 1 ms per row, so they are computed for the rows someone acts on: the
    top ``scoring.explain_top_n`` customers by value at risk (churn probability x CLV, ranked
    as the worklist ranks them), every account of the worklist (``scoring.worklist_bands``,
    ``scoring.worklist_top_n``: already among those unless low-band customers hold much of
    the value at risk), plus the optional ``churn.explain_bands`` and ``churn.explain_top_n``
    (top by probability).

    Parameters
    ----------
    churn_out : DataFrame
        ``churn_probability`` and ``churn_risk`` of every customer (index: customer id).
    clv_out : DataFrame or None
        ``predicted_clv`` of the customers with a purchase (others have no CLV: value at risk
        0); None without a CLV model (value at risk from ``features``' ``spend_365d``).
    cfg : Config
        ``scoring`` and ``churn`` blocks.
    features : DataFrame, optional
        The feature table (for the value at risk without a CLV model).

    Returns
    -------
    (numpy.ndarray, str)
        Boolean mask aligned with ``churn_out`` and a description of the rule applied.
    """

    p = churn_out["churn_probability"].astype(np.float64)
    clv = (
        clv_out["predicted_clv"].astype(np.float64).reindex(churn_out.index)
        if clv_out is not None and "predicted_clv" in clv_out.columns
        else None
    )
    ranked = pd.DataFrame(
        {
            "customer_id": churn_out.index.astype(str).to_numpy(dtype=object),
            "value_at_risk": value_at_risk(p, clv, features).to_numpy(),
            "churn_probability": p.to_numpy(),
            "churn_risk": churn_out["churn_risk"].to_numpy(dtype=object),
        }
    )
    sc = cfg.scoring
    mask = np.zeros(len(ranked), dtype=bool)
    mask[top_by_value_at_risk(ranked, sc.explain_top_n).index.to_numpy()] = True
    why = [f"top {sc.explain_top_n:,} by value at risk"]
    worklist = top_by_value_at_risk(ranked, sc.worklist_top_n, bands=sc.worklist_bands).index.to_numpy()
    extra = int((~mask[worklist]).sum())
    if extra:
        mask[worklist] = True
        why.append(f"{extra:,} more worklist accounts")
    chosen = rows_to_explain(
        p.to_numpy(),
        groups=ranked["churn_risk"].to_numpy(),
        explain_groups=cfg.churn.explain_bands,
        top_n=cfg.churn.explain_top_n,
    )
    if cfg.churn.explain_bands:
        why.append(f"risk bands {', '.join(cfg.churn.explain_bands)}")
    if cfg.churn.explain_top_n:
        why.append(f"top {cfg.churn.explain_top_n:,} by churn probability")
    return mask | chosen, "; ".join(why)
