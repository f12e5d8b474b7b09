"""The exported models (``crmscore export``) score the file of ``crmscore features`` as it is.

End to end through the CLI on the shared trained project: ``crmscore features`` writes the
feature table as Parquet (categories kept as pandas ``category``, ``customer_id`` as index) and
as CSV (categories as text, ``customer_id`` as a column), ``crmscore export`` writes the
champions as MLflow pyfunc folders, and ``mlflow.pyfunc.load_model(folder).predict(frame)``
must accept both frames with MLflow's schema enforcement on, give the same scores for both
files, keep the rows' index, and equal the scores of the kind's own prediction (the path
``crmscore score`` uses) on the in-memory feature table. The lead model takes lead features,
which ``crmscore features`` does not write: it is not part of this check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli_captured
from projects import AS_OF

#: the exported kinds that take the customer feature table of ``crmscore features``
CUSTOMER_KINDS = ("churn", "clv")


@pytest.fixture(scope="module")
def exported(trained_project, tmp_path_factory):
    """``(features.parquet, features.csv, models folder)`` written by the CLI."""
    root = tmp_path_factory.mktemp("export_features")
    params = str(trained_project.root / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained_project.root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        for name in ("features.parquet", "features.csv"):
            args = [
                "-q",
                "--params",
                params,
                "features",
                "--as-of",
                AS_OF.isoformat(),
                "-o",
                str(root / name),
            ]
            code, text = run_cli_captured(args, mp)
            assert code == 0, text
        code, text = run_cli_captured(
            ["-q", "--params", params, "export", "--folder", str(root / "models")], mp
        )
        assert code == 0, text
    return root / "features.parquet", root / "features.csv", root / "models"


@pytest.mark.parametrize("kind", CUSTOMER_KINDS)
def test_exported_model_scores_the_features_files_directly(kind, exported, monkeypatch):
    import mlflow

    from crmscore.estimators.specs import load_model

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    parquet, csv, models = exported
    from_parquet = pd.read_parquet(parquet)
    from_csv = pd.read_csv(csv)
    assert (from_parquet.dtypes == "category").any(), "the Parquet file no longer holds categories"

    loaded = mlflow.pyfunc.load_model(str(models / kind))
    by_parquet = loaded.predict(from_parquet)
    by_csv = loaded.predict(from_csv)

    assert len(by_parquet) == len(from_parquet) > 0
    assert by_parquet.index.equals(from_parquet.index)  # customer ids kept
    by_csv.index = pd.Index(from_csv["customer_id"], name=from_parquet.index.name)
    pd.testing.assert_frame_equal(by_csv, by_parquet, check_dtype=False, atol=1e-9)

    # the same numbers as the kind's own prediction (what crmscore score uses)
    spec, model = load_model(models / kind / "artifacts" / kind)
    direct = spec.predict(model, from_parquet)
    numeric = [c for c in direct.columns if pd.api.types.is_float_dtype(direct[c])]
    assert numeric
    np.testing.assert_allclose(by_parquet[numeric].to_numpy(float), direct[numeric].to_numpy(float))
