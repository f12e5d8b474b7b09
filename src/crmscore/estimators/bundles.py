"""Pickle-free model bundles: a fitted estimator as plain files, loaded back into the same class.

A bundle is a folder. Nothing in it is executable or unpickled on load:

* classifiers (:class:`~crmscore.estimators.classifier.CalibratedModel` heads): ``booster.txt``
  (LightGBM's own text format) and ``model.json`` (format ``crmscore.classifier/3``: the kind,
  the estimator's parameters, the preparer's feature list, kinds and categories, the
  ``training_inputs`` record (each feature's share of missing values on the training rows,
  what scoring compares its inputs with: :mod:`crmscore.scoring.input_checks`), the
  calibrator's numbers and the package versions);
* CLV (:class:`~crmscore.estimators.clv.ClvModel`): ``clv.json`` (its fitted parameters,
  covariances and diagnostics) and a ``model.json`` naming the kind;
* contractual CLV (:class:`~crmscore.estimators.contractual.ContractualClvModel`): ``sbg.json``
  (format ``crmscore.sbg/1``: the fitted sBG of :mod:`crmscore.estimators.sbg`), ``model.json``
  and ``contractual.json`` (its columns and settings).

Loading rebuilds the fitted estimator itself (nothing is refitted), so a loaded model predicts
through the very method that training evaluated (``predict_frame``). Bundles of the earlier
formats still load: ``crmscore.classifier/2`` (no ``training_inputs``: scoring checks their
inputs' types and category levels, not the rise of missing values) and
``crmscore.classifier/1`` (no parameters stored either).

Which class a kind loads into is the kind's spec (:mod:`crmscore.estimators.specs`): this module
knows no kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crmscore.core.serial import package_versions
from crmscore.estimators.classifier import CalibratedModel, Calibrator
from crmscore.estimators.preparer import FramePreparer

__all__ = [
    "CLASSIFIER_FORMAT",
    "CLV_FORMAT",
    "bundle_kind",
    "load_classifier",
    "load_clv",
    "load_contractual",
    "load_sbg",
    "save_classifier",
    "save_clv",
    "save_contractual",
    "save_sbg",
]

CLASSIFIER_FORMAT = "crmscore.classifier/3"
_CLASSIFIER_FORMATS = ("crmscore.classifier/1", "crmscore.classifier/2", CLASSIFIER_FORMAT)
CLV_FORMAT = "crmscore.clv/1"
_MODEL_JSON = "model.json"
_SBG_JSON = "sbg.json"
_CONTRACTUAL_JSON = "contractual.json"
_BOOSTER = "booster.txt"
_CLV_JSON = "clv.json"


def _json_param(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_param(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_param(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def bundle_kind(path: str | Path) -> str:
    """The model kind recorded in the bundle folder ``path`` (its ``model.json``)."""
    spec = json.loads((Path(path) / _MODEL_JSON).read_text(encoding="utf-8"))
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"{path}: model.json names no model kind")
    return kind


def save_classifier(model: CalibratedModel, kind: str, path: str | Path) -> Path:
    """Write a fitted classifier as ``booster.txt`` + ``model.json`` (no pickle).

    Parameters
    ----------
    model : CalibratedModel
        Fitted classifier (any head).
    kind : str
        The model kind (``load_classifier`` of that kind's spec reads it back).
    path : str or Path
        Folder to create (or reuse).

    Returns
    -------
    Path
        The folder.
    """
    model._check_fitted()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(out / _BOOSTER))
    prep = model.preparer_
    params = {k: _json_param(v) for k, v in model.get_params(deep=False).items()}
    spec = {
        "format": CLASSIFIER_FORMAT,
        "kind": kind,
        "params": params,
        "features": list(prep.features_),
        "numeric": list(prep.numeric_),
        "categories": {k: list(v) for k, v in prep.categories_.items()},
        "exclude": list(prep.exclude),
        "feature_names_in": [str(c) for c in prep.feature_names_in_],
        "training_inputs": {"missing_share": {k: float(v) for k, v in prep.missing_share_.items()}},
        "calibrator": model.calibrator_.to_dict(),
        "thresholds": dict(model._thresholds()),
        "versions": package_versions(),
    }
    (out / _MODEL_JSON).write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return out


def load_classifier(path: str | Path, cls: type[CalibratedModel]) -> CalibratedModel:
    """Load a classifier bundle into a fitted ``cls`` (the kind's estimator class).

    The preparer, the booster and the calibrator are restored exactly; nothing is refitted.

    Raises
    ------
    ValueError
        Not a crmscore classifier bundle.
    """
    import lightgbm as lgb

    root = Path(path)
    spec: dict[str, Any] = json.loads((root / _MODEL_JSON).read_text(encoding="utf-8"))
    if spec.get("format") not in _CLASSIFIER_FORMATS:
        raise ValueError(f"{root}: not a crmscore classifier bundle (format {spec.get('format')!r})")
    known = set(cls._get_param_names())
    params = {k: v for k, v in spec.get("params", {}).items() if k in known}
    if "exclude_features" in params:
        params["exclude_features"] = tuple(params["exclude_features"])
    params["thresholds"] = {k: float(v) for k, v in spec["thresholds"].items()}
    model = cls(**params)
    prep = FramePreparer(exclude=tuple(spec["exclude"]))
    prep.feature_names_in_ = np.asarray(spec["feature_names_in"], dtype=object)
    prep.features_ = list(spec["features"])
    prep.numeric_ = list(spec["numeric"])
    prep.categories_ = {k: list(v) for k, v in spec["categories"].items()}
    recorded = spec.get("training_inputs", {}).get("missing_share")
    if recorded is not None:  # format 3 on; older bundles have no record (checked without it)
        prep.missing_share_ = {k: float(v) for k, v in recorded.items()}
    prep.n_features_in_ = len(prep.feature_names_in_)
    model.preparer_ = prep
    model.booster_ = lgb.Booster(model_file=str(root / _BOOSTER))
    model.calibrator_ = Calibrator.from_dict(spec["calibrator"])
    model.classes_ = np.array([False, True])
    model.feature_names_in_ = prep.feature_names_in_
    model.n_features_in_ = prep.n_features_in_
    return model


def _write_meta(out: Path, fmt: str, kind: str) -> None:
    """``model.json`` of a JSON bundle: its format and model kind (:func:`bundle_kind`)."""
    meta = {"format": fmt, "kind": kind, "versions": package_versions()}
    (out / _MODEL_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def save_clv(model: Any, kind: str, path: str | Path) -> Path:
    """Write a fitted :class:`~crmscore.estimators.clv.ClvModel` as ``clv.json`` (no pickle)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.to_json(out / _CLV_JSON)
    _write_meta(out, CLV_FORMAT, kind)
    return out


def load_clv(path: str | Path) -> Any:
    """Load a CLV bundle: the fitted :class:`~crmscore.estimators.clv.ClvModel`."""
    from crmscore.estimators.clv import ClvModel

    return ClvModel.from_json(Path(path) / _CLV_JSON)


def save_sbg(model: Any, kind: str, path: str | Path) -> Path:
    """Write a fitted :class:`~crmscore.estimators.sbg.SbgModel`: ``sbg.json`` + ``model.json``."""
    from crmscore.estimators.sbg import SBG_FORMAT

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.to_json(out / _SBG_JSON)
    _write_meta(out, SBG_FORMAT, kind)
    return out


def load_sbg(path: str | Path) -> Any:
    """Load an sBG bundle written by :func:`save_sbg`: the fitted ``SbgModel`` (no refit)."""
    from crmscore.estimators.sbg import SbgModel

    return SbgModel.from_json(Path(path) / _SBG_JSON)


def save_contractual(model: Any, kind: str, path: str | Path) -> Path:
    """Write a contractual CLV model (:mod:`crmscore.estimators.contractual`): the sBG bundle
    (:func:`save_sbg`) plus ``contractual.json`` (its columns and settings; no pickle)."""
    if model.sbg is None:
        raise RuntimeError("ContractualClvModel is not fitted")
    out = save_sbg(model.sbg, kind, path)
    (out / _CONTRACTUAL_JSON).write_text(json.dumps(model.config(), indent=2), encoding="utf-8")
    return out


def load_contractual(path: str | Path) -> Any:
    """Load a bundle written by :func:`save_contractual`."""
    from crmscore.estimators.contractual import ContractualClvModel

    conf = json.loads((Path(path) / _CONTRACTUAL_JSON).read_text(encoding="utf-8"))
    return ContractualClvModel(**conf, sbg=load_sbg(path))
