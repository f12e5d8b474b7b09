"""RFM scores (recency, frequency, monetary quantile scores) and named segments.

Scores are quantile bins 1..``bins`` over the customers with at least one purchase at the
cutoff: ``score = 1 + floor(bins * (rank − 1) / n)`` with ``rank`` the ``min`` rank (ties share
the lowest score, so the result never depends on row order and many one-time buyers all get
``F = 1``). Recency is scored so that the most recent buyers get the highest score.

Segments are read from a 5×5 grid of the R score and the FM score
(``FM = round_half_up((F + M) / 2)``); with ``bins != 5`` scores are first rescaled to 1..5
(``ceil(score * 5 / bins)``). Customers without a purchase get NaN scores and the segment
``"No purchases"``. The grid (rows R, columns FM) is documented in docs/features.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["RFM_SEGMENTS", "SEGMENT_GRID", "quantile_score", "rfm_scores"]

#: ``SEGMENT_GRID[r - 1][fm - 1]`` is the segment of R score ``r`` and FM score ``fm`` (1..5).
SEGMENT_GRID: tuple[tuple[str, ...], ...] = (
    # FM:  1               2                 3                     4                 5
    ("Lost", "Lost", "Hibernating", "At risk", "Can't lose them"),  # R = 1
    ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),  # R = 2
    ("About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"),  # R = 3
    ("Promising", "Potential loyalist", "Loyal", "Loyal", "Champions"),  # R = 4
    ("New", "Potential loyalist", "Potential loyalist", "Champions", "Champions"),  # R = 5
)
#: All segment names (the categories of ``rfm_segment``).
RFM_SEGMENTS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
    "No purchases",
)


def quantile_score(values: pd.Series, bins: int = 5, higher_is_better: bool = True) -> pd.Series:
    """Quantile score 1..``bins`` of ``values`` (NaN stays NaN), ties sharing the lowest score.

    Parameters
    ----------
    values : Series
        Numbers to score.
    bins : int
        Number of score levels.
    higher_is_better : bool
        If False, the smallest values get the highest score (recency in days).

    Returns
    -------
    Series
        float64 scores, same index.
    """
    v = values.astype(np.float64)
    if not higher_is_better:
        v = -v
    rank = v.rank(method="min")
    n = int(v.notna().sum())
    if n == 0:
        return pd.Series(np.nan, index=values.index)
    return np.floor(bins * (rank - 1) / n) + 1


def rfm_scores(
    recency_days: pd.Series, frequency: pd.Series, monetary: pd.Series, *, bins: int = 5
) -> pd.DataFrame:
    """R, F and M scores, the ``rfm_score`` code and the ``rfm_segment`` per customer.

    Parameters
    ----------
    recency_days : Series
        Days since the last purchase (NaN: no purchase).
    frequency : Series
        Number of purchases.
    monetary : Series
        Total spend.
    bins : int
        Score levels (quintiles by default).

    Returns
    -------
    DataFrame
        Same index; ``r_score``, ``f_score``, ``m_score`` (float64, NaN without a purchase),
        ``rfm_score`` (e.g. ``"545"``) and ``rfm_segment`` (category of :data:`RFM_SEGMENTS`).
    """
    buyer = recency_days.notna()
    r = quantile_score(recency_days.where(buyer), bins, higher_is_better=False)
    f = quantile_score(frequency.where(buyer), bins)
    m = quantile_score(monetary.where(buyer), bins)
    b = buyer.to_numpy(dtype=bool)
    # segments as category codes and score codes from their few distinct (r, f, m) triples:
    # no per-row string work
    seg = np.full(len(b), RFM_SEGMENTS.index("No purchases"), dtype=np.int64)
    code = np.full(len(b), None, dtype=object)
    if b.any():
        r5 = np.ceil(r.to_numpy()[b] * 5 / bins).astype(int)
        f5 = np.ceil(f.to_numpy()[b] * 5 / bins).astype(int)
        m5 = np.ceil(m.to_numpy()[b] * 5 / bins).astype(int)
        fm = np.floor((f5 + m5) / 2 + 0.5).astype(int)
        grid = np.array([[RFM_SEGMENTS.index(name) for name in row] for row in SEGMENT_GRID])
        seg[b] = grid[r5 - 1, fm - 1]
        ri, fi, mi = (s.to_numpy()[b].astype(np.int64) for s in (r, f, m))
        width = bins + 1
        triples, inverse = np.unique((ri * width + fi) * width + mi, return_inverse=True)
        text = np.array(
            [f"{t // (width * width)}{(t // width) % width}{t % width}" for t in triples.tolist()],
            dtype=object,
        )
        code[b] = text[inverse.reshape(-1)]
    return pd.DataFrame(
        {
            "r_score": r.to_numpy(dtype=np.float64),
            "f_score": f.to_numpy(dtype=np.float64),
            "m_score": m.to_numpy(dtype=np.float64),
            "rfm_score": pd.array(code, dtype="str"),
            "rfm_segment": pd.Categorical.from_codes(seg, categories=list(RFM_SEGMENTS)),
        },
        index=recency_days.index,
    )
