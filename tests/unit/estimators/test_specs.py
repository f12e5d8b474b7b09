"""The model-kind specs: declared once, consistent with the config, lazy to import."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from crmscore.config import Config, ModelKind, PromotionConfig, RegisteredNames
from crmscore.core.schema import CRMData
from crmscore.estimators.specs import KINDS, SPECS, get_spec


def test_every_kind_has_one_spec_and_its_config_block():
    assert tuple(SPECS) == KINDS == typing.get_args(ModelKind)
    cfg = Config()
    for kind, spec in SPECS.items():
        assert spec.kind == kind
        assert hasattr(cfg, kind), f"no config block {kind!r}"
        assert kind in RegisteredNames.model_fields and kind in PromotionConfig.model_fields
        assert spec.registered_name(cfg) == getattr(cfg.tracking.registered_names, kind)
        assert spec.target in ("customer", "lead")
        assert spec.output_columns and len(set(spec.output_columns)) == len(spec.output_columns)
        assert hasattr(spec.estimator, "fit") and hasattr(spec.estimator, "get_params")


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="choose from churn, leads, clv"):
        get_spec("opportunities")
    assert "opportunities" not in SPECS


def test_missing_data_says_which_table_or_column():
    cfg = Config()
    empty = CRMData()
    for kind, spec in SPECS.items():
        reason = spec.missing_data(empty, cfg)
        assert reason and any(w in reason for w in ("table", "customers", "column")), (kind, reason)
    contractual = cfg.model_copy(update={"churn": cfg.churn.model_copy(update={"definition": "contractual"})})
    assert "churned_at" in SPECS["churn"].missing_data(empty, contractual)


def test_importing_the_specs_imports_no_estimator():
    code = (
        "import sys\n"
        "import crmscore.cli\n"
        "from crmscore.estimators.specs import SPECS\n"
        "assert list(SPECS) == ['churn', 'leads', 'clv', 'clv_contractual']\n"
        "bad = [m for m in ('sklearn', 'lightgbm', 'scipy.optimize') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "SPECS['churn']\n"
        "assert 'sklearn' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
