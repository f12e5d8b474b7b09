"""``max_train_rows``: LightGBM fitted on a seeded, label-stratified sample of the training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ChurnConfig
from crmscore.estimators.churn import CalibratedChurnModel
from crmscore.estimators.gates import check_no_overlap

FAST = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 20, "n_jobs": 1}


def _frame(n_per_cutoff: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two cutoffs a year apart (training, then calibration) with a learnable label."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for cutoff in ("2024-01-01", "2025-01-01"):
        x = rng.normal(size=(n_per_cutoff, 3))
        p = 1.0 / (1.0 + np.exp(-(1.5 * x[:, 0] - x[:, 1] - 1.0)))
        labels.append(rng.random(n_per_cutoff) < p)
        parts.append(
            pd.DataFrame(
                {"cutoff": pd.Timestamp(cutoff, tz="UTC"), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]},
                index=pd.Index([f"C{i:05d}" for i in range(n_per_cutoff)], name="customer_id"),
            )
        )
    return pd.concat(parts), np.concatenate(labels)


def _model(**kw) -> CalibratedChurnModel:
    return CalibratedChurnModel(min_rows=100, min_positives=20, label_horizon_days=90, **FAST, **kw)


def test_cap_fits_on_a_stratified_sample() -> None:
    X, y = _frame()
    model = _model(max_train_rows=1200).fit(X, y)
    y_train = y[:3000]
    assert model.n_train_available_ == 3000
    assert model.n_train_ == 1200
    assert model.n_calibration_ == 3000  # calibration keeps every row
    # the sample keeps the class balance of the training rows
    booster = model.pipeline_.named_steps["model"].booster_
    assert booster.num_trees() == 30
    share = y_train.mean()
    sample = model._training_sample(y_train)
    assert sample is not None and len(sample) == 1200
    assert abs(y_train[sample].mean() - share) < 1.5 / 1200
    # seeded: the same fit twice gives the same probabilities
    again = _model(max_train_rows=1200).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))
    # a different seed draws another sample
    other = _model(max_train_rows=1200, random_state=1)._training_sample(y_train)
    assert not np.array_equal(sample, other)


def test_no_cap_or_small_data_uses_every_row() -> None:
    X, y = _frame(n_per_cutoff=1000)
    for cap in (None, 1000, 5000):
        model = _model(max_train_rows=cap).fit(X, y)
        assert model.n_train_ == model.n_train_available_ == 1000


def test_cap_is_a_config_key() -> None:
    assert ChurnConfig().max_train_rows == 300_000
    model = CalibratedChurnModel.from_config(ChurnConfig(max_train_rows=5000))
    assert model.max_train_rows == 5000
    with pytest.raises(ValueError, match="max_train_rows"):
        ChurnConfig(max_train_rows=10)


def test_overlap_check_on_coded_ids_names_the_record() -> None:
    cut_a = [pd.Timestamp("2025-01-01", tz="UTC")] * 2
    cut_b = [pd.Timestamp("2025-02-01", tz="UTC")] * 2
    with pytest.raises(ValueError, match="'C2'"):
        check_no_overlap(["C1", "C2"], ["C2", "C3"], train_cutoffs=cut_a, eval_cutoffs=cut_b, horizon_days=90)
    check_no_overlap(["C1", "C2"], ["C3"], train_cutoffs=cut_a, eval_cutoffs=cut_b[:1], horizon_days=90)
    far = [pd.Timestamp("2025-06-01", tz="UTC")] * 2
    check_no_overlap(["C1", "C2"], ["C2", "C3"], train_cutoffs=cut_a, eval_cutoffs=far, horizon_days=90)


def _digest(**tables: pd.DataFrame) -> str:
    from crmscore.core.digest import data_digest
    from crmscore.core.schema import CRMData

    return data_digest(CRMData(**tables))["all"]


def test_data_digest_is_value_exact_and_order_sensitive() -> None:
    tx = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b", None, "ü"], dtype=object),
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", None], utc=True),
            "amount": [1.0, 2.5, np.nan, -3.0],
            "product": pd.array(["x", None, "y", "z"], dtype="str"),
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "mixed": pd.Series([1, "1", None, 2.0], dtype=object),
        }
    )
    base = _digest(transactions=tx)
    assert _digest(transactions=tx.copy()) == base
    assert _digest(transactions=tx.iloc[::-1].reset_index(drop=True)) != base  # row order
    changed = tx.copy()
    changed.loc[1, "amount"] = 2.5000000001
    assert _digest(transactions=changed) != base  # any value
    moved = tx.copy()
    moved["customer_id"] = pd.Series(["ab", "", None, "ü"], dtype=object)  # same bytes, other split
    assert _digest(transactions=moved) != base
    empty_vs_null = tx.copy()
    empty_vs_null["customer_id"] = pd.Series(["a", "b", "", "ü"], dtype=object)
    assert _digest(transactions=empty_vs_null) != base  # "" is not NULL
    as_str = tx.copy()
    as_str["customer_id"] = tx["customer_id"].astype("str")
    assert _digest(transactions=as_str) == base  # text is text, as objects or Arrow strings
    as_float = tx.copy()
    as_float["amount"] = tx["amount"].astype("float32")
    assert _digest(transactions=as_float) != base  # other dtypes are part of the digest
    sliced = pd.concat([tx, tx]).iloc[4:].reset_index(drop=True)
    assert _digest(transactions=sliced) == base  # views of a larger frame hash like copies
    assert _digest(customers=tx) != base  # the table name too


def test_rank_auc_equals_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from crmscore.evaluation.binary import _auc_abs

    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.2
    for v in (rng.normal(size=5000), rng.integers(0, 4, 5000).astype(float), y + rng.normal(0, 2, 5000)):
        auc = roc_auc_score(y, v)
        assert _auc_abs(y.astype(np.int64), v) == pytest.approx(max(auc, 1 - auc), abs=1e-12)


def test_digest_does_not_depend_on_arrow_chunking() -> None:
    import pyarrow as pa

    from crmscore.core.digest import frame_digest

    values = ["a", None, "ccc", "", "dé", None, "x" * 40]
    one = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, pa.large_string())])))
    split = pa.chunked_array([pa.array(values[:2], pa.string()), pa.array(values[2:], pa.string())])
    many = pd.Series(pd.arrays.ArrowStringArray(split.cast(pa.large_string())))
    sliced = pd.Series(
        pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(["zz", *values], pa.large_string()).slice(1)]))
    )
    digests = {frame_digest(pd.DataFrame({"c": s})) for s in (one, many, sliced)}
    assert len(digests) == 1
    changed = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array([*values[:-1], "y" * 40])])))
    assert frame_digest(pd.DataFrame({"c": changed})) not in digests


def test_validation_report_digests_the_inputs_and_settings() -> None:
    from crmscore.config import Config
    from crmscore.ingest.synth import generate
    from crmscore.ingest.validation import validate_tables

    raw = generate(300, seed=1).tables
    _, a = validate_tables(
        {k: v.copy() for k, v in raw.items()}, Config(), as_of="2025-12-31", now="2026-01-01"
    )
    _, b = validate_tables(
        {k: v.copy() for k, v in raw.items()}, Config(), as_of="2025-12-31", now="2026-01-01"
    )
    assert a.input_digest == b.input_digest and len(a.input_digest["all"]) == 64
    assert a.to_dict()["input_digest_sha256"] == a.input_digest["all"]
    _, later = validate_tables(dict(raw), Config(), as_of="2025-12-30", now="2026-01-01")
    assert later.input_digest["all"] != a.input_digest["all"]  # the cutoff is part of it
    assert later.input_digest["transactions"] == a.input_digest["transactions"]
    zoned = Config(data={"source_timezone": "Europe/Berlin"})
    _, c = validate_tables(dict(raw), zoned, as_of="2025-12-31", now="2026-01-01")
    assert c.input_digest["all"] != a.input_digest["all"]  # so are the data settings
    tx = raw["transactions"].copy()
    tx.loc[0, "amount"] = tx.loc[0, "amount"] + 0.01
    _, d = validate_tables({**raw, "transactions": tx}, Config(), as_of="2025-12-31", now="2026-01-01")
    assert d.input_digest["transactions"] != a.input_digest["transactions"]
    assert d.input_digest["customers"] == a.input_digest["customers"]
