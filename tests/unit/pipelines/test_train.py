"""The promotion rule of ``crmscore train`` (crmscore.pipelines.train.promotion_decision), pure.

Training end to end: integration/test_train_pipeline.py.
"""

from __future__ import annotations

from crmscore.config import PromotionConfig
from crmscore.pipelines.train import promotion_decision


def test_promotion_rule_higher_is_better_for_auc():
    rule = PromotionConfig()
    ok, why = promotion_decision("churn", {"roc_auc": 0.80, "ece": 0.02}, 0.84, rule, 3)
    assert ok and "0.95 x champion v3's 0.8400" in why  # 0.80 >= 0.798
    ok, why = promotion_decision("churn", {"roc_auc": 0.79, "ece": 0.02}, 0.84, rule, 3)
    assert not ok and why.startswith("not good enough")
    ok, why = promotion_decision("leads", {"roc_auc": 0.55, "ece": 0.02}, None, rule)
    assert not ok and "min_roc_auc" in why
    ok, why = promotion_decision("leads", {"roc_auc": 0.9, "ece": 0.3}, None, rule)
    assert not ok and "max_ece" in why


def test_promotion_rule_lower_is_better_for_clv_mae():
    rule = PromotionConfig()
    ok, _ = promotion_decision("clv", {"mae": 1.05, "aggregate_error_pct": 3.0}, 1.0, rule)
    assert ok  # 1.05 <= 1.0 / 0.95
    ok, why = promotion_decision("clv", {"mae": 1.06, "aggregate_error_pct": 3.0}, 1.0, rule)
    assert not ok and "holdout MAE 1.0600 >" in why
    ok, why = promotion_decision("clv", {"mae": 0.5, "aggregate_error_pct": -40.0}, 1.0, rule)
    assert not ok and "aggregate" in why
    ok, why = promotion_decision("clv", {"mae": 0.5, "aggregate_error_pct": float("nan")}, None, rule)
    assert not ok  # an unmeasurable floor is not met
