"""Probability of improvement over replicates with a score interval that stays honest at complete separation.

P(B > A) is the Mann-Whitney probability over per-replicate scores: the chance that a random replicate of B
scores better than a random replicate of A, ties counting 1/2 (Agarwal et al., NeurIPS 2021, call it the
probability of improvement). It is conditional on the evaluated images: each replicate's score is its accuracy
on the test images at hand, so the probability says nothing about other images.

Newcombe (2006, "Confidence intervals for an effect size measure based on the Mann-Whitney statistic. Part 2:
Asymptotic methods and evaluation", Stat Med 25:559-573), method 5: a score interval that inverts
|theta_hat - theta| <= z sqrt(V(theta)), with Hanley & McNeil's (1982) variance in which both m - 1 and n - 1 are
replaced by N* = (m + n)/2 - 1:

    V(theta) = theta (1 - theta) / (m n) * [1 + N* (1 - theta)/(2 - theta) + N* theta/(1 + theta)].

Unlike a percentile bootstrap over replicates (which stays separated in every resample) it does not collapse to
[0, 0] or [1, 1] when every pair favours one model. Tests check it against SingleCaseES's NAP interval.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from ._inputs import check_confidence, check_scores

__all__ = ["newcombe_interval", "improvement_probability"]


def _variance(theta: float, m: int, n: int) -> float:
    n_star = (m + n) / 2 - 1
    return theta * (1 - theta) / (m * n) * (1 + n_star * (1 - theta) / (2 - theta) + n_star * theta / (1 + theta))


def newcombe_interval(theta_hat: float, m: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's (2006) method-5 score interval for a Mann-Whitney probability estimated from m x n pairs.

    Args:
        theta_hat: the estimate, in [0, 1]. m, n: the two sample sizes (>= 1). confidence: in (0, 1).

    Returns:
        (low, high), the roots of (theta - theta_hat)^2 = z^2 V(theta) either side of theta_hat (0 or 1 at the
        boundary).
    """
    check_confidence(confidence)
    if not 0.0 <= theta_hat <= 1.0 or m < 1 or n < 1:
        raise ValueError(f"theta_hat must be in [0, 1] and m, n >= 1, got {theta_hat}, {m}, {n}")
    z2 = float(stats.norm.ppf((1 + confidence) / 2)) ** 2

    def gap(t: float) -> float:
        return (t - theta_hat) ** 2 - z2 * _variance(t, m, n)

    tiny = 1e-12
    inner = min(max(theta_hat, tiny), 1 - tiny)  # V vanishes at 0 and 1: start each search just inside
    low = 0.0 if theta_hat <= tiny else float(optimize.brentq(gap, tiny, inner))
    high = 1.0 if theta_hat >= 1 - tiny else float(optimize.brentq(gap, inner, 1 - tiny))
    return low, high


def improvement_probability(scores_a, scores_b, *, higher_is_better: bool = True,
                            confidence: float = 0.95) -> dict:
    """P(B > A) over replicates, Newcombe's interval and the exact Mann-Whitney p (both conditional on the images).

    Args:
        scores_a: 1-D per-replicate scores of model A (e.g. test accuracy).
        scores_b: 1-D per-replicate scores of model B (its length may differ from A's).
        higher_is_better: False for scores such as loss.
        confidence: two-sided coverage of the interval, in (0, 1).

    Returns:
        {"probability", "ci_low", "ci_high", "p_value": two-sided Mann-Whitney p (exact without ties; scipy's
         asymptotic method with ties, where no exact null distribution exists), "p_method": "exact" or
         "asymptotic", "n_a", "n_b", "confidence", "conditional_on": "the evaluated test images"}
    """
    a = check_scores("scores_a", scores_a)
    b = check_scores("scores_b", scores_b)
    if not higher_is_better:
        a, b = -a, -b
    gt = (b[:, None] > a[None, :]).mean()
    eq = (b[:, None] == a[None, :]).mean()
    theta = float(gt + 0.5 * eq)
    low, high = newcombe_interval(theta, a.size, b.size, confidence)
    tied = np.unique(np.concatenate([a, b])).size < a.size + b.size
    method = "asymptotic" if tied else "exact"
    p = float(stats.mannwhitneyu(b, a, alternative="two-sided", method=method).pvalue)
    return {"probability": theta, "ci_low": low, "ci_high": high, "p_value": p, "p_method": method,
            "n_a": int(a.size), "n_b": int(b.size), "confidence": float(confidence),
            "conditional_on": "the evaluated test images"}
