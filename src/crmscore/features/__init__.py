"""Point-in-time features and labels: pure functions of (tables, as_of, config).

See docs/features.md for every feature, the cutoff convention and the label rules.
"""

from crmscore.features.behaviour import behaviour_features, known_customer_ids
from crmscore.features.btyd import btyd_summary, calibration_and_holdout, purchase_mask
from crmscore.features.labels import churn_labels, lead_labels
from crmscore.features.leads import lead_features
from crmscore.features.rfm import rfm_scores

__all__ = [
    "behaviour_features",
    "btyd_summary",
    "calibration_and_holdout",
    "churn_labels",
    "known_customer_ids",
    "lead_features",
    "lead_labels",
    "purchase_mask",
    "rfm_scores",
]
