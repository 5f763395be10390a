"""Two models trained R times each (replicates) and tested on one shared test set of N images.

Inputs are per-replicate boolean correctness matrices ``correct_a``, ``correct_b`` of shape (R, N): row k of
both matrices comes from replicate k (same seed and split for both models), and column j is the same test image
for every replicate. Per-replicate scalar scores (accuracy, macro-F1, ...) are 1-D arrays of length R.

A single training run says little when training itself varies with the seed; Bouthillier et al., "Accounting for
Variance in Machine Learning Benchmarks" (MLSys 2021), and Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice" (NeurIPS 2021), recommend reporting the spread over replicates, intervals that
cover it, and the probability of improvement; `compare_replicates` gathers them, its interval from the design's
variance model (statistics.design) and its probability of improvement with Newcombe's interval
(statistics.improvement).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._inputs import check_confidence, check_correctness_matrices, check_scores
from .bootstrap import BOOTSTRAP_LEVELS, hierarchical_bootstrap_diff
from .design import design_interval
from .improvement import improvement_probability
from .paired import mcnemar_exact
from .verdict import comparison_verdict

__all__ = [
    "replicate_summary",
    "sign_count",
    "replicate_mcnemar",
    "compare_replicates",
]


def replicate_summary(values, confidence: float = 0.95) -> dict:
    """Mean, spread and t-interval of the mean of one score over replicates.

    The interval is mean +/- t_{(1+confidence)/2, n-1} * sd / sqrt(n) (Student's t, scipy.stats.t): it covers
    training variance only, as each value is one replicate's score on the fixed test set.

    Args:
        values: 1-D array of finite per-replicate scores (length n >= 1).
        confidence: two-sided coverage of the interval, in (0, 1).

    Returns:
        {"n": int, "mean", "sd" (ddof=1), "ci_low", "ci_high", "min", "max": float}. With n == 1 the sd and the
        interval are NaN (one replicate cannot estimate training variance); with sd == 0 the interval is the mean.
    """
    x = check_scores("values", values)
    check_confidence(confidence)
    n = x.size
    mean = float(x.mean())
    if n == 1:
        sd = low = high = float("nan")
    else:
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
        low, high = mean - half, mean + half
    return {"n": int(n), "mean": mean, "sd": sd, "ci_low": float(low), "ci_high": float(high),
            "min": float(x.min()), "max": float(x.max())}


def sign_count(scores_a, scores_b, *, higher_is_better: bool = True) -> dict:
    """In how many replicates B beats A, A beats B, or they tie exactly.

    Args:
        scores_a: 1-D array of model A's per-replicate scores.
        scores_b: 1-D array of model B's per-replicate scores, same length and replicate order.
        higher_is_better: False for scores such as loss.

    Returns:
        {"n": int, "n_b_better": int, "n_a_better": int, "n_ties": int}
    """
    a = check_scores("scores_a", scores_a)
    b = check_scores("scores_b", scores_b)
    if a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must have the same length, got {a.size} and {b.size}")
    d = b - a if higher_is_better else a - b
    return {"n": int(d.size), "n_b_better": int((d > 0).sum()), "n_a_better": int((d < 0).sum()),
            "n_ties": int((d == 0).sum())}


def replicate_mcnemar(correct_a, correct_b) -> list[dict]:
    """The exact McNemar test (`mcnemar_exact`) of each replicate on its own: test-set sampling only.

    Args:
        correct_a: (R, N) bool (or 0/1) matrix, model A correct per replicate and test image, or one 1-D array per
            replicate (k-fold: each replicate's fold, of its own size).
        correct_b: same for model B, replicates paired with correct_a's.

    Returns:
        One {"replicate": k, "n_a_only", "n_b_only", "p_value"} dict per replicate k, in order.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"correct_a and correct_b must hold the same replicates, got {len(correct_a)} and "
                         f"{len(correct_b)}")
    return [{"replicate": k, **mcnemar_exact(a, b)} for k, (a, b) in enumerate(zip(correct_a, correct_b))]


def compare_replicates(
    correct_a,
    correct_b,
    *,
    name_a: str = "A",
    name_b: str = "B",
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    power: float = 0.8,
    seed: int = 0,
    design: str = "holdout",
    folds=None,
) -> dict:
    """Every statistic of the replicated comparison of B against A on test accuracy, in one dict.

    Args:
        correct_a: (R, N) bool (or 0/1) matrix, model A correct per replicate and test image.
        correct_b: same for model B; row k is the replicate that shares row k's seed and split.
        name_a: name of model A in the verdict label and sentence (e.g. "CNN").
        name_b: name of model B in the verdict label and sentence (e.g. "ResNet").
        n_resamples: resamples of each bootstrap (shown for contrast; the verdict reads no bootstrap).
        confidence: two-sided coverage of every interval, in (0, 1).
        power: power at which the verdict's minimum detectable difference is stated.
        seed: seed of every bootstrap; results are deterministic given it.
        design: "holdout" (rows are replicates on one shared test set) or "kfold" (rows are repeats of a k-fold
            over all N images; each (repeat, fold) is a replicate, its accuracy the one on its fold).
        folds: kfold only: (repeats, N) fold (0..k-1) that tested each image in each repeat.

    Returns:
        {"n_replicates", "n_test": int,
         "accuracy_a", "accuracy_b", "differences": per-replicate lists (differences = accuracy_b - accuracy_a;
             kfold: on the replicate's fold),
         "summary_a", "summary_b", "summary_difference": `replicate_summary` dicts,
         "interval": the design's interval (`design_interval`, holdout: seeds x test images crossed) as a dict
             {"diff", "ci_low", "ci_high", "se", "df", "confidence", "covers", "design", "components"}, the one
             the verdict reads,
         "bootstrap": `hierarchical_bootstrap_diff` over both levels, "bootstrap_test_only": over the images only
             (both for contrast),
         "probability_of_improvement": `improvement_probability` of accuracy (Newcombe's interval, Mann-Whitney p),
         "sign_count": `sign_count` of accuracy, "mcnemar": `replicate_mcnemar`,
         "verdict": `comparison_verdict` of the interval}
    """
    a, b = check_correctness_matrices(correct_a, correct_b)
    if design == "kfold":  # one replicate per (repeat, fold), in that order: its cells are its fold's images
        f = np.asarray(folds)
        masks = [(r, f[r] == k) for r in range(a.shape[0]) for k in range(int(f.max()) + 1)]
        cells_a, cells_b = [a[r][m] for r, m in masks], [b[r][m] for r, m in masks]
    else:
        cells_a, cells_b = list(a), list(b)
    acc_a = np.array([c.mean() for c in cells_a])
    acc_b = np.array([c.mean() for c in cells_b])
    diffs = acc_b - acc_a
    boot_kw = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    fitted = design_interval(b.astype(np.int8) - a.astype(np.int8), design, confidence=confidence,
                             **({"folds": folds} if design == "kfold" else {}))
    interval = {"diff": fitted.estimate, "ci_low": fitted.lo, "ci_high": fitted.hi, "se": fitted.se,
                "df": fitted.df, "confidence": fitted.confidence, "covers": fitted.covers, "design": fitted.design,
                "components": dict(fitted.components)}
    return {
        "n_replicates": int(acc_a.size),
        "n_test": int(a.shape[1]),
        "accuracy_a": acc_a.tolist(),
        "accuracy_b": acc_b.tolist(),
        "differences": diffs.tolist(),
        "summary_a": replicate_summary(acc_a, confidence),
        "summary_b": replicate_summary(acc_b, confidence),
        "summary_difference": replicate_summary(diffs, confidence),
        "bootstrap": hierarchical_bootstrap_diff(a, b, **boot_kw),
        "bootstrap_test_only": hierarchical_bootstrap_diff(a, b, levels="images", **boot_kw),
        "interval": interval,
        "probability_of_improvement": improvement_probability(acc_a, acc_b, confidence=confidence),
        "sign_count": sign_count(acc_a, acc_b),
        "mcnemar": replicate_mcnemar(cells_a, cells_b),
        "verdict": comparison_verdict(fitted, name_a=name_a, name_b=name_b, power=power),
    }
