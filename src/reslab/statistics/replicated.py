"""Two models trained R times each (replicates) and tested on one shared test set of N images.

Inputs are per-replicate boolean correctness matrices ``correct_a``, ``correct_b`` of shape (R, N): row k of
both matrices comes from replicate k (same seed and split for both models), and column j is the same test image
for every replicate. Per-replicate scalar scores (accuracy, macro-F1, ...) are 1-D arrays of length R.

A single training run says little when training itself varies with the seed; Bouthillier et al., "Accounting for
Variance in Machine Learning Benchmarks" (MLSys 2021), and Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice" (NeurIPS 2021), recommend reporting the spread over replicates, intervals that
cover it, and the probability of improvement, which this module provides.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._inputs import check_confidence, check_correctness_matrices, check_n_resamples, check_scores
from .bootstrap import _CHUNK_ELEMENTS, BOOTSTRAP_LEVELS, hierarchical_bootstrap_diff
from .paired import mcnemar_exact
from .verdict import comparison_verdict

__all__ = [
    "BOOTSTRAP_LEVELS",
    "replicate_summary",
    "hierarchical_bootstrap_diff",
    "probability_of_improvement",
    "sign_count",
    "replicate_mcnemar",
    "replicated_diff_ci",
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


def _improvement_probability(x_b: np.ndarray, x_a: np.ndarray) -> np.ndarray:
    """Mean over all (i, j) of S(x_b[..., i], x_a[..., j]), S = 1 if >, 1/2 if ==, 0 if <; batched over axis 0."""
    gt = x_b[..., :, None] > x_a[..., None, :]
    eq = x_b[..., :, None] == x_a[..., None, :]
    return (gt + 0.5 * eq).mean(axis=(-2, -1))


def probability_of_improvement(
    scores_a,
    scores_b,
    *,
    higher_is_better: bool = True,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Probability of improvement P(B > A) with a percentile-bootstrap CI over replicates.

    P(B > A) = 1/(n m) sum_i sum_j S(b_i, a_j), S = 1 if b_i is better, 1/2 on a tie, 0 otherwise (Agarwal et
    al., NeurIPS 2021, as in rliable); it equals the Mann-Whitney U statistic of B over A divided by n m. The CI
    resamples replicate indices with replacement, jointly for both models because replicate k of each shares
    seed and split (rliable resamples the two models' runs independently).

    Args:
        scores_a: 1-D array of model A's per-replicate scores.
        scores_b: 1-D array of model B's per-replicate scores, same length and replicate order.
        higher_is_better: False for scores such as loss, where B improves on A by being lower.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: two-sided coverage of the percentile interval, in (0, 1).
        seed: seed for numpy's default_rng; results are deterministic given it.

    Returns:
        {"probability": float, "ci_low": float, "ci_high": float, "n_resamples": int, "confidence": float}
    """
    a = check_scores("scores_a", scores_a)
    b = check_scores("scores_b", scores_b)
    if a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must have the same length, got {a.size} and {b.size}")
    n_resamples = check_n_resamples(n_resamples)
    check_confidence(confidence)
    if not higher_is_better:
        a, b = -a, -b
    n = a.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (n * n))
    boot = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n) replicate draws shared by both models
        boot[start:start + m] = _improvement_probability(b[idx], a[idx])
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"probability": float(_improvement_probability(b, a)), "ci_low": float(low), "ci_high": float(high),
            "n_resamples": n_resamples, "confidence": float(confidence)}


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
        correct_a: (R, N) bool (or 0/1) matrix, model A correct per replicate and test image.
        correct_b: same for model B, rows paired with correct_a's.

    Returns:
        One {"replicate": k, "n_a_only", "n_b_only", "p_value"} dict per row k, in row order.
    """
    a, b = check_correctness_matrices(correct_a, correct_b)
    return [{"replicate": k, **mcnemar_exact(a[k], b[k])} for k in range(a.shape[0])]


def replicated_diff_ci(differences, se_test: float, confidence: float = 0.95) -> dict:
    """CI of the mean paired difference over replicates that covers training variance and test-set sampling, and
    stays honest with few replicates (the headline interval of the verdict).

    mean +/- t_{(1+confidence)/2, R-1} * sqrt(sd^2 / R + se_test^2): sd (ddof=1) is the spread of the per-replicate
    differences (training variance, plus each replicate's own test noise), se_test the standard error of the mean
    difference under resampling of the shared test images (a component that every replicate shares, so the spread
    cannot show it). Student's t with R-1 degrees of freedom keeps the coverage with 3 or 5 replicates, where a
    bootstrap over replicates is far too narrow (it behaves like z with a biased sd). With R == 1 the interval falls
    back to test-set sampling alone (+/- z * se_test) and says so in "covers".

    Args:
        differences: 1-D per-replicate differences B - A.
        se_test: standard error of the mean difference from test-image resampling (e.g. the "se" of
            `hierarchical_bootstrap_diff(..., levels="images")`), >= 0.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        {"diff", "ci_low", "ci_high", "se", "df" (R-1; None with one replicate), "confidence", "covers"}.
    """
    d = check_scores("differences", differences)
    check_confidence(confidence)
    if not se_test >= 0:
        raise ValueError(f"se_test must be >= 0, got {se_test}")
    n, mean = d.size, float(d.mean())
    if n == 1:
        se, q, df, covers = float(se_test), float(stats.norm.ppf((1 + confidence) / 2)), None, "test-set sampling"
    else:
        se = float(np.sqrt(d.var(ddof=1) / n + se_test ** 2))
        q, df, covers = float(stats.t.ppf((1 + confidence) / 2, n - 1)), n - 1, "training variance and test-set sampling"
    return {"diff": mean, "ci_low": mean - q * se, "ci_high": mean + q * se, "se": se, "df": df,
            "confidence": confidence, "covers": covers}


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
) -> dict:
    """Every statistic of the replicated comparison of B against A on test accuracy, in one dict.

    Args:
        correct_a: (R, N) bool (or 0/1) matrix, model A correct per replicate and test image.
        correct_b: same for model B; row k is the replicate that shares row k's seed and split.
        name_a: name of model A in the verdict label and sentence (e.g. "CNN").
        name_b: name of model B in the verdict label and sentence (e.g. "ResNet").
        n_resamples: resamples of each bootstrap.
        confidence: two-sided coverage of every interval, in (0, 1).
        power: power at which the verdict's minimum detectable effect is stated.
        seed: seed of every bootstrap; results are deterministic given it.

    Returns:
        {"n_replicates", "n_test": int,
         "accuracy_a", "accuracy_b", "differences": per-replicate lists (differences = accuracy_b - accuracy_a),
         "summary_a", "summary_b", "summary_difference": `replicate_summary` dicts,
         "interval": `replicated_diff_ci`, the headline CI the verdict reads,
         "bootstrap": `hierarchical_bootstrap_diff` over both levels (narrow with few replicates: shown, not used),
         "bootstrap_test_only": the same over test images only, for contrast,
         "probability_of_improvement": `probability_of_improvement` of accuracy,
         "sign_count": `sign_count` of accuracy, "mcnemar": `replicate_mcnemar`,
         "verdict": `comparison_verdict` on the headline CI}
    """
    a, b = check_correctness_matrices(correct_a, correct_b)
    acc_a, acc_b = a.mean(axis=1), b.mean(axis=1)
    diffs = acc_b - acc_a
    boot_kw = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    boot = hierarchical_bootstrap_diff(a, b, **boot_kw)
    test_only = hierarchical_bootstrap_diff(a, b, levels="images", **boot_kw)
    headline = replicated_diff_ci(diffs, test_only["se"], confidence)
    return {
        "n_replicates": int(a.shape[0]),
        "n_test": int(a.shape[1]),
        "accuracy_a": acc_a.tolist(),
        "accuracy_b": acc_b.tolist(),
        "differences": diffs.tolist(),
        "summary_a": replicate_summary(acc_a, confidence),
        "summary_b": replicate_summary(acc_b, confidence),
        "summary_difference": replicate_summary(diffs, confidence),
        "bootstrap": boot,
        "bootstrap_test_only": test_only,
        "interval": headline,
        "probability_of_improvement": probability_of_improvement(acc_a, acc_b, **boot_kw),
        "sign_count": sign_count(acc_a, acc_b),
        "mcnemar": replicate_mcnemar(a, b),
        "verdict": comparison_verdict(headline["ci_low"], headline["ci_high"], diffs, name_a=name_a, name_b=name_b,
                                      confidence=confidence, power=power),
    }
