"""Evaluation statistics: one classifier, two classifiers on one test split, and replicated comparisons.

All functions are pure: numpy arrays in, plain Python / numpy values out.

Modules:
    classification: confusion matrix and per-class precision / recall / F1.
    paired: two models on one test split (paired bootstrap, exact McNemar, Wilson interval).
    replicated: two models trained R times and tested on one shared test set (two-level bootstrap,
        probability of improvement, sign count; Bouthillier et al., MLSys 2021; Agarwal et al., NeurIPS 2021).
    verdict: the rule that turns the replicated comparison into a verdict, and the minimum detectable effect.
"""

from .classification import classification_report, confusion_matrix
from .paired import accuracy_ci, mcnemar_exact, paired_bootstrap_diff
from .replicated import (BOOTSTRAP_LEVELS, compare_replicates, hierarchical_bootstrap_diff,
                         probability_of_improvement, replicate_mcnemar, replicate_summary, replicated_diff_ci,
                         sign_count)
from .verdict import VERDICT_RULE, comparison_verdict, minimum_detectable_effect, verdict_rule

from . import classification, paired, replicated, verdict  # noqa: E402

__all__ = [*classification.__all__, *paired.__all__, *replicated.__all__, *verdict.__all__]
