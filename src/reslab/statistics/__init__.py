"""Evaluation statistics: one classifier, two classifiers on one test split, and replicated comparisons.

All functions are pure: numpy arrays in, plain Python / numpy values out.

Modules:
    classification: confusion matrix and per-class precision / recall / F1.
    paired: two models on one test split (paired bootstrap, exact McNemar, Wilson interval).
    design: the interval of the mean paired difference from the variance model of the study design (holdout:
        seeds x images crossed; kfold: replicates are folds), its minimum detectable difference and floor.
    improvement: the probability of improvement over replicates, Newcombe's interval, the Mann-Whitney p.
    bootstrap: the two-level (replicates x images) percentile bootstrap, shown for contrast.
    replicated: two models trained R times and tested on one shared test set, every statistic in one dict
        (`compare_replicates`; Bouthillier et al., MLSys 2021; Agarwal et al., NeurIPS 2021).
    verdict: the rule that turns an interval into a verdict (`interval_side`), for the comparison and for
        intervals over seeds alone (the depth study).
"""

from .bootstrap import BOOTSTRAP_LEVELS, hierarchical_bootstrap_diff
from .classification import classification_report, confusion_matrix
from .design import (DESIGNS, KFOLD_METHODS, DesignInterval, design_interval, mde_floor, mde_options,
                     minimum_detectable_difference)
from .improvement import improvement_probability, newcombe_interval
from .paired import accuracy_ci, mcnemar_exact, paired_bootstrap_diff
from .replicated import compare_replicates, replicate_mcnemar, replicate_summary, sign_count
from .verdict import VERDICT_RULE, comparison_verdict, interval_side, seed_verdict, seed_verdict_rule, verdict_rule

from . import bootstrap, classification, design, improvement, paired, replicated, verdict  # noqa: E402

__all__ = [*bootstrap.__all__, *classification.__all__, *design.__all__, *improvement.__all__, *paired.__all__,
           *replicated.__all__, *verdict.__all__]
