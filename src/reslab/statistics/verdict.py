"""The verdict of a replicated comparison: a fixed rule, its label and sentence, and what n could have detected.

One decision (`interval_side`): a side is called higher only when the interval of the mean paired difference
excludes 0. Two intervals feed it: the replicated comparison's (`comparison_verdict`, the design's interval:
training variance and test-set sampling) and the t-interval over seeds alone (`seed_verdict`, e.g. the depth study's training error,
where no test set enters).

The rule follows Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks" (MLSys 2021): a
model is called better only when an interval that covers training variance as well as test-set sampling excludes
0 (statistics.design: the variance model of the design, calibrated in benchmarks/calibration.py), and a null
result says which way the estimate leans and the smallest difference the design could detect.
"""

from __future__ import annotations

import math

from ._inputs import check_confidence
from .design import DesignInterval, mde_options, minimum_detectable_difference

__all__ = ["VERDICT_RULE", "comparison_verdict", "interval_side", "seed_verdict", "seed_verdict_rule",
           "verdict_rule"]

_RULE_TEMPLATE = (
    "B is called better than A only when the {pct} % confidence interval of the mean paired difference B - A lies "
    "entirely above 0; A is called better only when it lies entirely below 0; an interval that contains or touches "
    "0 leaves the difference \"not established at {pct} %\", and the sentence says which way the estimate leans. "
    "The interval comes from a variance model of the design (statistics/design.py): {design_words} The smallest "
    "detectable difference is the one the interval's own two-sided test (alpha {alpha:g}) detects with {power_pct} % "
    "power, from the noncentral t at the interval's standard error and degrees of freedom; the floor is what the "
    "test images alone allow, however many seeds are added. With one replicate training variance is not "
    "estimated: the interval covers test-set sampling only and the verdict can flip with the seed."
)
_DESIGN_WORDS = {
    "holdout": ("every replicate is tested on the same held-out images, so seeds and images are crossed; the "
                "variance of the mean is (MS_seed + MS_image - MS_residual) / (n N) from the two-way mean squares "
                "(Satterthwaite degrees of freedom), which counts training variance, the model x image effect of "
                "the test images and the per-image noise once each. The split is fixed, so its own effect is a "
                "bias no interval over seeds and images covers (k-fold replicates would turn it into variance)."),
    "kfold": ("each replicate is a fold of a repeated k-fold with its own seed and split, so every image is tested "
              "once per repeat; the variance of the mean comes from the within-fold, between-fold and image mean "
              "squares (Satterthwaite degrees of freedom), which covers training variance, the split and the "
              "images."),
}


_SEED_RULE_TEMPLATE = (
    "{pairing} the verdict reads the {pct} % t-interval of the mean paired difference {difference}: mean +/- "
    "t_{{{q}, n-1}} * sd / sqrt(n) over the n seeds, sd the standard deviation of the per-seed differences. "
    "\"{above}\" only when the interval lies entirely above 0; \"{below}\" only when it lies entirely below 0; "
    "otherwise (it contains or touches 0) \"no detectable difference with n seeds\". With one seed there is no "
    "interval, and no verdict. The interval covers the variation between training seeds{note}."
)


def interval_side(ci_low: float, ci_high: float) -> int:
    """The one decision of every verdict here: which side of 0 an interval of a mean difference lies on.

    Args:
        ci_low: the interval's lower bound (NaN: no interval, e.g. one replicate).
        ci_high: its upper bound.

    Returns:
        1 when the interval lies entirely above 0, -1 entirely below, 0 when it contains or touches 0 or is NaN.
    """
    if ci_low > 0:
        return 1
    if ci_high < 0:
        return -1
    return 0


def seed_verdict_rule(confidence: float, *, pairing: str, difference: str, above: str, below: str,
                      note: str = "") -> str:
    """The rule of `seed_verdict` in words, for a report to print beside its verdicts.

    Args:
        confidence: the t-interval's two-sided coverage.
        pairing: what pairs up, ending with where the verdict is read (e.g. "... pair up. At each depth").
        difference: the difference and its measure (e.g. "plain - residual in final training error").
        above: the verdict's words when the interval lies above 0.
        below: its words when the interval lies below 0.
        note: appended to the last sentence, which says what the interval covers (e.g. "; test errors ...").
    """
    check_confidence(confidence)
    return _SEED_RULE_TEMPLATE.format(pairing=pairing, pct=f"{100 * confidence:g}", q=f"{(1 + confidence) / 2:g}",
                                      difference=difference, above=above, below=below, note=note)


def seed_verdict(summary: dict, *, prefix: str, what: str, above: str, below: str) -> str:
    """`seed_verdict_rule` applied to the t-interval over seeds of a mean paired difference.

    Args:
        summary: `replicate_summary` of the per-seed differences: {"n", "mean", "ci_low", "ci_high", ...}.
        prefix: the sentence's start, e.g. "depth 20: ".
        what: the difference's name beside its value, e.g. "plain - residual training error".
        above: the words when the interval lies above 0 (`interval_side` 1).
        below: the words when it lies below 0 (-1).

    Returns:
        "<prefix><above | below | no detectable difference with n seeds> (<what> +m, CI [+l, +h], n seeds)", or,
        with one seed, "<prefix>one seed, so no interval and no verdict (<what> +m)".
    """
    n, mean, low, high = summary["n"], summary["mean"], summary["ci_low"], summary["ci_high"]
    if n < 2 or math.isnan(low):
        return f"{prefix}one seed, so no interval and no verdict ({what} {mean:+.3f})"
    detail = f"{what} {mean:+.3f}, CI [{low:+.3f}, {high:+.3f}], {n} seeds"
    label = {1: above, -1: below, 0: f"no detectable difference with {n} seeds"}[interval_side(low, high)]
    return f"{prefix}{label} ({detail})"


def verdict_rule(confidence: float = 0.95, power: float = 0.8, design: str = "holdout") -> str:
    """The verdict rule in words, for a report to print beside the verdict.

    Args:
        confidence: two-sided coverage of the interval the rule reads; alpha = 1 - confidence.
        power: power at which the minimum detectable difference is stated.
        design: holdout | kfold, the design whose variance model gives the interval.

    Returns:
        The rule as one paragraph; `VERDICT_RULE` is it for the defaults.
    """
    check_confidence(confidence)
    if design not in _DESIGN_WORDS:
        raise ValueError(f"design must be one of {tuple(_DESIGN_WORDS)}, got {design!r}")
    return _RULE_TEMPLATE.format(pct=f"{100 * confidence:g}", power_pct=f"{100 * power:g}",
                                 alpha=round(1.0 - confidence, 10), design_words=_DESIGN_WORDS[design])


VERDICT_RULE = verdict_rule()


def _replicates(n: int) -> str:
    return f"{n} replicate" + ("" if n == 1 else "s")


def _mde_sentence(interval: DesignInterval, mde: dict, power: float) -> str:
    """What the design could detect, its floor and which change would shrink it more."""
    n, big_n, now = interval.n_rows * interval.n_folds, interval.n_images, mde["now"]  # kfold: repeats x folds
    if n == 1:
        return (" One replicate gives no estimate of training variance: the interval covers test-set sampling only, "
                "the verdict can flip with the seed, and the smallest detectable difference is unknown.")
    if now == 0.0:
        return (" The paired differences do not vary, so nothing sets a floor on the detectable difference.")
    rows = "seeds" if interval.design == "holdout" else "repeats"
    text = (f" With {_replicates(n)} on {big_n} test images the smallest difference detectable at "
            f"{100 * power:g} % power is {now:.3f}")
    floor = mde.get("floor", math.nan)
    if math.isfinite(floor) and floor >= 0.0005:
        text += f"; the test images alone set a floor of {floor:.3f}, however many {rows} are added"
    elif math.isfinite(floor):
        text += "; the test images' own component is estimated at 0, so they set no measurable floor"
    more_rows, more_images = mde.get(f"more {rows}", math.nan), mde.get("more images", math.nan)
    if math.isfinite(more_rows) and math.isfinite(more_images):
        which = f"more {rows}" if more_rows < more_images else "more test images"
        text += (f". Twice the {rows} would bring it to {more_rows:.3f}, twice the test images to {more_images:.3f}: "
                 f"{which} would shrink it more")
    return text + "."


def comparison_verdict(interval: DesignInterval, *, name_a: str = "A", name_b: str = "B",
                       power: float = 0.8) -> dict:
    """Apply `VERDICT_RULE` to the design's interval of the mean paired difference B - A.

    Args:
        interval: `design_interval` of the paired differences (holdout or kfold).
        name_a: model A's name, used in the label and the sentence.
        name_b: model B's name.
        power: power at which the minimum detectable difference is stated.

    Returns:
        {"label": "<name_b> better" | "<name_a> better" | "not established at <pct> %",
         "winner": name_b | name_a | None, "leans": name_b | name_a | None (the estimate's side),
         "sentence": str, "n_replicates": int, "mean_difference": float,
         "minimum_detectable_difference": float (NaN with one replicate), "mde": `mde_options` (now, more seeds
         or repeats, more images, floor), "rule": str}
    """
    if not interval.lo <= interval.hi:
        raise ValueError(f"the interval's low bound must not exceed its high bound, got {interval.lo} > {interval.hi}")
    n, mean, pct = interval.n_rows * interval.n_folds, interval.estimate, f"{100 * interval.confidence:g}"
    mde = mde_options(interval, power=power) if interval.method == "components" else \
        {"now": minimum_detectable_difference(interval.se, interval.df, confidence=interval.confidence, power=power)}
    if n == 1:
        mde = {**mde, "now": math.nan}
    leans = name_b if mean > 0 else name_a if mean < 0 else None
    estimate = f"{name_b} - {name_a} is {mean:+.3f} ({pct} % CI {interval.lo:+.3f} to {interval.hi:+.3f})"
    side = interval_side(interval.lo, interval.hi)
    winner = {1: name_b, -1: name_a, 0: None}[side]
    if winner:
        label = f"{winner} better"
        sentence = f"{label}: {estimate}, which excludes 0, over {_replicates(n)}."
    else:
        label = f"not established at {pct} %"
        lean = f"the estimate leans towards {leans}" if leans else "the estimate is exactly 0"
        sentence = f"Not established at {pct} %: {estimate}, which includes 0; {lean}."
    sentence += _mde_sentence(interval, mde, power)
    return {"label": label, "winner": winner, "leans": leans, "sentence": sentence, "n_replicates": n,
            "mean_difference": mean, "minimum_detectable_difference": mde["now"], "mde": mde,
            "rule": verdict_rule(interval.confidence, power, interval.design)}
