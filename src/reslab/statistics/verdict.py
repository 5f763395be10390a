"""The verdict of a replicated comparison: a fixed rule, its label and sentence, and what n could have detected.

The rule follows Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks" (MLSys 2021): a
model is called better only when an interval that covers training variance as well as test-set sampling excludes
0, and a null result is reported together with the smallest difference the number of replicates could detect.
"""

from __future__ import annotations

import math

from scipy import stats

from ._inputs import check_confidence, check_scores

__all__ = ["VERDICT_RULE", "verdict_rule", "minimum_detectable_effect", "comparison_verdict"]

_RULE_TEMPLATE = (
    "B is called better than A only when the {pct} % confidence interval of the mean paired difference B - A "
    "over replicates (mean +/- t_{{{q_alpha}, n-1}} * sqrt(sd^2/n + se_test^2), so it covers training variance and "
    "the sampling of the shared test images) lies entirely above 0; A is called better only when it lies "
    "entirely below 0. An interval that contains or touches 0 gives \"no detectable difference with n "
    "replicates\". The smallest difference n replicates could detect is "
    "(t_{{{q_alpha}, n-1}} + t_{{{q_power}, n-1}}) * sd / sqrt(n), with sd the standard deviation of the "
    "per-replicate differences ({power_pct} % power, two-sided alpha {alpha:g}). With one replicate training "
    "variance is not estimated: the interval (+/- z * se_test) covers test-set sampling only and the verdict can "
    "flip with the seed."
)


def verdict_rule(confidence: float = 0.95, power: float = 0.8) -> str:
    """The verdict rule in words, for a report to print beside the verdict.

    Args:
        confidence: two-sided coverage of the interval the rule reads; alpha = 1 - confidence.
        power: power at which the minimum detectable effect is stated.

    Returns:
        The rule as one paragraph; `VERDICT_RULE` is it for the defaults.
    """
    check_confidence(confidence)
    alpha = 1.0 - confidence
    return _RULE_TEMPLATE.format(pct=f"{100 * confidence:g}", q_alpha=f"{1 - alpha / 2:g}", q_power=f"{power:g}",
                                 power_pct=f"{100 * power:g}", alpha=round(alpha, 10))


VERDICT_RULE = verdict_rule()


def minimum_detectable_effect(differences, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided paired t-test over these replicates detects with `power`.

    (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), the usual t-based approximation of the paired test's
    power, with sd the standard deviation (ddof=1) of the per-replicate differences.

    Args:
        differences: 1-D array of per-replicate paired differences B - A (finite).
        alpha: two-sided significance level, in (0, 1).
        power: wanted power, in (0, 1).

    Returns:
        The effect size in the differences' units; NaN when n == 1 (no estimate of training variance) and 0.0
        when the differences do not vary.
    """
    d = check_scores("differences", differences)
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    n = d.size
    if n < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    t_sum = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(t_sum * sd / math.sqrt(n))


def _replicates(n: int) -> str:
    return f"{n} replicate" + ("" if n == 1 else "s")


def comparison_verdict(
    ci_low: float,
    ci_high: float,
    differences,
    *,
    name_a: str = "A",
    name_b: str = "B",
    confidence: float = 0.95,
    power: float = 0.8,
) -> dict:
    """Apply `VERDICT_RULE` to a CI of the mean paired difference B - A.

    Args:
        ci_low: lower bound of the CI of the mean difference B - A (from `replicated_diff_ci`).
        ci_high: upper bound of that CI.
        differences: 1-D array of per-replicate differences B - A; gives n, the mean and the sd.
        name_a: model A's name, used in the label and the sentence.
        name_b: model B's name.
        confidence: the CI's coverage; the minimum detectable effect uses alpha = 1 - confidence.
        power: power at which the minimum detectable effect is stated.

    Returns:
        {"label": "<name_b> better" | "<name_a> better" | "no detectable difference with n replicates",
         "winner": name_b | name_a | None, "sentence": str, "n_replicates": int,
         "mean_difference": float, "minimum_detectable_effect": float (NaN when n == 1), "rule": str}
    """
    d = check_scores("differences", differences)
    check_confidence(confidence)
    if not ci_low <= ci_high:
        raise ValueError(f"ci_low must not exceed ci_high, got {ci_low} > {ci_high}")
    n, mean = int(d.size), float(d.mean())
    mde = minimum_detectable_effect(d, alpha=1.0 - confidence, power=power)
    pct = f"{100 * confidence:g}"
    estimate = (f"the mean difference {name_b} - {name_a} is {mean:+.3f} "
                f"({pct} % CI {ci_low:+.3f} to {ci_high:+.3f})")
    if ci_low > 0:
        winner, label = name_b, f"{name_b} better"
        sentence = f"{label}: {estimate}, which excludes 0, over {_replicates(n)}."
    elif ci_high < 0:
        winner, label = name_a, f"{name_a} better"
        sentence = f"{label}: {estimate}, which excludes 0, over {_replicates(n)}."
    else:
        winner, label = None, f"no detectable difference with {_replicates(n)}"
        sentence = f"{label[0].upper()}{label[1:]}: {estimate}, which includes 0."
    if n == 1:
        sentence += (" One replicate gives no estimate of training variance: the interval covers test-set "
                     "sampling only, the verdict can flip with the seed, and the smallest detectable difference "
                     "is unknown.")
    elif mde == 0.0:
        sentence += (" The per-replicate differences do not vary (sd 0), so training variance sets no floor on "
                     "the detectable difference; test-set sampling alone sets the interval's width.")
    else:
        sentence += (f" With {_replicates(n)} the smallest difference detectable at {100 * power:g} % power "
                     f"is {mde:.3f}.")
    return {"label": label, "winner": winner, "sentence": sentence, "n_replicates": n, "mean_difference": mean,
            "minimum_detectable_effect": mde, "rule": verdict_rule(confidence, power)}

