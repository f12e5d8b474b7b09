"""Frame preparation (crmscore.estimators.preparer): categories learned at fit, unseen values missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.estimators.preparer import FramePreparer


def test_frame_preparer_categories_learned_at_fit_unseen_missing():
    train = pd.DataFrame(
        {"plan": ["a", "b", None, "a"], "x": [1, 2, 3, 4], "flag": [True, False, True, True]}
    )
    prep = FramePreparer().fit(train)
    assert prep.categories_ == {"plan": ["a", "b"]}
    assert prep.numeric_ == ["x", "flag"]
    out = prep.transform(pd.DataFrame({"plan": ["b", "zzz"], "x": [1.5, None], "flag": [False, True]}))
    assert isinstance(out["plan"].dtype, pd.CategoricalDtype)
    assert list(out["plan"].cat.categories) == ["a", "b"]
    assert out["plan"].iloc[0] == "b" and pd.isna(out["plan"].iloc[1])
    assert out["x"].dtype == np.float64 and out["flag"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="missing"):
        prep.transform(pd.DataFrame({"plan": ["a"]}))
