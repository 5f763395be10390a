"""Two classifiers on one test split: paired bootstrap, exact McNemar, Wilson interval.

Methods:
    * Paired percentile bootstrap for the accuracy difference
      (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13);
      tests check it against ``scipy.stats.bootstrap(paired=True)``.
    * McNemar's test on the discordant pairs (McNemar, 1947), in its exact
      conditional binomial form, which Fagerland, Lydersen & Laake (2013,
      BMC Med Res Methodol 13:91) recommend over the chi-squared approximation
      when discordant counts are small.
    * Wilson score interval for a single proportion (Wilson, 1927; recommended
      by Brown, Cai & DasGupta, 2001, over the Wald interval), from
      ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._inputs import as_1d, as_bool, check_confidence, check_pair
from .bootstrap import hierarchical_bootstrap_diff

__all__ = ["paired_bootstrap_diff", "mcnemar_exact", "accuracy_ci"]


def paired_bootstrap_diff(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Paired percentile-bootstrap CI for accuracy(b) - accuracy(a).

    Test examples are resampled with replacement and the same indices are used
    for both models, so the interval reflects the correlation between their
    errors (Efron & Tibshirani 1993, paired/two-sample bootstrap; percentile
    interval, ch. 13). It is the interval of
    ``scipy.stats.bootstrap((b, a), mean-difference, paired=True,
    method="percentile")``, drawn with numpy's generator in one vectorised
    pass so that it stays fast and its results do not depend on scipy's
    resampling order.

    Args:
        correct_a: 1-D bool (or 0/1) array, model A correct per test example.
        correct_b: same for model B, over the SAME examples in the same order.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: two-sided coverage of the interval, in (0, 1).
        seed: seed for numpy's default_rng; results are deterministic given it.

    Returns:
        {"diff": observed mean(b) - mean(a), "ci_low": float, "ci_high": float,
         "n_resamples": int, "confidence": float}
    """
    a, b = check_pair("correct_a", correct_a, "correct_b", correct_b)
    a = as_bool("correct_a", a)
    b = as_bool("correct_b", b)
    # one bootstrap engine: a single split is one replicate with its images resampled
    r = hierarchical_bootstrap_diff(a[None, :], b[None, :], n_resamples=n_resamples, confidence=confidence,
                                    seed=seed, levels="images")
    return {key: r[key] for key in ("diff", "ci_low", "ci_high", "n_resamples", "confidence")}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact (binomial) McNemar test of equal accuracy on paired predictions.

    Only discordant examples carry information (McNemar 1947). Under H0 each
    discordant example is equally likely to favour either model, so
    c ~ Binomial(b + c, 0.5); the two-sided exact p-value follows
    Fagerland et al. (2013).

    Args:
        correct_a: 1-D bool (or 0/1) array, model A correct per test example.
        correct_b: same for model B, over the SAME examples in the same order.

    Returns:
        {"n_a_only": b (A right, B wrong), "n_b_only": c (A wrong, B right),
         "p_value": float}; p_value is 1.0 when b + c == 0.
    """
    a, b_ = check_pair("correct_a", correct_a, "correct_b", correct_b)
    a = as_bool("correct_a", a)
    b_ = as_bool("correct_b", b_)
    n_a_only = int(np.count_nonzero(a & ~b_))
    n_b_only = int(np.count_nonzero(~a & b_))
    n_disc = n_a_only + n_b_only
    if n_disc == 0:
        p = 1.0
    else:
        p = float(stats.binomtest(n_b_only, n_disc, 0.5, alternative="two-sided").pvalue)
    return {"n_a_only": n_a_only, "n_b_only": n_b_only, "p_value": min(p, 1.0)}


def accuracy_ci(correct: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for one model's accuracy.

    Preferred over the normal (Wald) interval because it stays inside [0, 1]
    and keeps near-nominal coverage for accuracies close to 0 or 1
    (Wilson 1927; Brown, Cai & DasGupta 2001). Computed by scipy's
    ``binomtest(k, n).proportion_ci(method="wilson")``.

    Args:
        correct: 1-D bool (or 0/1) array, model correct per test example.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (low, high) bounds of the interval.
    """
    c = as_bool("correct", as_1d("correct", correct))
    check_confidence(confidence)
    ci = stats.binomtest(int(np.count_nonzero(c)), int(c.shape[0])).proportion_ci(
        confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))
