"""RFM scores and segments (crmscore.features.rfm)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.features.rfm import RFM_SEGMENTS, rfm_scores


def test_rfm_scores_and_segments():
    idx = pd.Index([*list("abcdefghij"), "z"], name="customer_id")
    rec = pd.Series([1, 2, 3, 4, 5, 100, 200, 300, 400, 500, np.nan], index=idx, dtype=float)
    freq = pd.Series([20, 15, 1, 1, 1, 1, 10, 12, 1, 1, 0], index=idx, dtype=float)
    mon = pd.Series([900, 800, 10, 20, 30, 5, 700, 600, 1, 2, 0], index=idx, dtype=float)
    r = rfm_scores(rec, freq, mon)
    assert r.loc["a", "rfm_segment"] == "Champions" and r.loc["a", "rfm_score"] == "555"
    assert r.loc["j", "rfm_segment"] == "Lost"
    assert r.loc["h", "rfm_segment"] in ("At risk", "Can't lose them")
    assert r.loc["z", "rfm_segment"] == "No purchases" and np.isnan(r.loc["z", "r_score"])
    assert r.loc["c", "f_score"] == 1  # ties share the lowest score
    assert list(r["rfm_segment"].cat.categories) == list(RFM_SEGMENTS)
    assert set(r["r_score"].dropna()) <= {1, 2, 3, 4, 5}
    pd.testing.assert_frame_equal(
        r.iloc[::-1].sort_index(), rfm_scores(rec[::-1], freq[::-1], mon[::-1]).sort_index()
    )
