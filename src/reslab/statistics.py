"""Evaluation statistics for comparing two classifiers on the same test split.

All functions are pure: numpy arrays in, plain Python / numpy values out.

Methods:
    * Paired percentile bootstrap for the accuracy difference
      (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13).
    * McNemar's test on the discordant pairs (McNemar, 1947), in its exact
      conditional binomial form, which Fagerland, Lydersen & Laake (2013,
      BMC Med Res Methodol 13:91) recommend over the chi-squared approximation
      when discordant counts are small.
    * Wilson score interval for a single proportion (Wilson, 1927; recommended
      by Brown, Cai & DasGupta, 2001, over the Wald interval).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = [
    "confusion_matrix",
    "classification_report",
    "paired_bootstrap_diff",
    "mcnemar_exact",
    "accuracy_ci",
]

# Caps the (chunk, n_examples) index matrix at ~8M int64 entries (~64 MB), so
# memory stays bounded whatever n_resamples is, while numpy still does the work.
_BOOTSTRAP_CHUNK_ELEMENTS = 8_000_000


def _as_1d(name: str, x: np.ndarray) -> np.ndarray:
    """Return `x` as a non-empty 1-D array or raise ValueError naming it."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty")
    return arr


def _check_pair(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two 1-D non-empty arrays of equal length."""
    a = _as_1d(name_a, a)
    b = _as_1d(name_b, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    return a, b


def _as_bool(name: str, x: np.ndarray) -> np.ndarray:
    """Convert a 0/1 or bool array to bool, rejecting any other values."""
    if x.dtype == bool:
        return x
    if not np.isin(x, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
    return x.astype(bool)


def _check_labels(name: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Ensure labels are integers in [0, n_classes)."""
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must contain integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"{name} must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]"
        )
    return y.astype(np.int64, copy=False)


def _check_confidence(confidence: float) -> None:
    """Reject confidence levels outside the open interval (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Count (true, predicted) label pairs.

    Args:
        y_true: 1-D integer array of true class indices in [0, n_classes).
        y_pred: 1-D integer array of predicted class indices, same length.
        n_classes: number of classes; fixes the matrix size even when some
            classes never occur.

    Returns:
        (n_classes, n_classes) int64 array; entry [i, j] is the number of
        examples of true class i predicted as class j (rows = true).
    """
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
    n_classes = int(n_classes)
    y_true, y_pred = _check_pair("y_true", y_true, "y_pred", y_pred)
    y_true = _check_labels("y_true", y_true, n_classes)
    y_pred = _check_labels("y_pred", y_pred, n_classes)
    # Flattened bincount is a single O(n) pass, faster than np.add.at.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy plus per-class and macro-averaged precision, recall and F1.

    Classes that are never predicted get precision 0, and classes with no
    true examples get recall 0 (scikit-learn's ``zero_division=0``
    convention); F1 is 0 whenever precision + recall is 0. Macro averages are
    unweighted means over all ``class_names``, including such classes.

    Args:
        y_true: 1-D integer array of true class indices.
        y_pred: 1-D integer array of predicted class indices, same length.
        class_names: names indexed by class id; its length sets n_classes.

    Returns:
        {"accuracy", "macro_f1", "macro_precision", "macro_recall": float,
         "per_class": {name: {"precision", "recall", "f1": float, "support": int}}}
    """
    names = list(class_names)
    if not names:
        raise ValueError("class_names must be non-empty")
    if len(set(names)) != len(names):
        raise ValueError("class_names must be unique (they key per_class)")
    cm = confusion_matrix(y_true, y_pred, len(names))
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(tp.sum() / cm.sum()),
        "macro_f1": float(f1.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "per_class": per_class,
    }


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
    interval, ch. 13).

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
    a, b = _check_pair("correct_a", correct_a, "correct_b", correct_b)
    a = _as_bool("correct_a", a)
    b = _as_bool("correct_b", b)
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    n_resamples = int(n_resamples)
    _check_confidence(confidence)

    n = a.shape[0]
    # The statistic is linear in per-example differences, so resampling the
    # difference vector is equivalent to resampling both arrays jointly.
    d = b.astype(np.int8) - a.astype(np.int8)
    diff = float(d.mean())

    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    boot = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        # Sum of int8 -1/0/1 values; int64 accumulator avoids overflow.
        boot[start:stop] = d[idx].sum(axis=1, dtype=np.int64) / n

    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {
        "diff": diff,
        "ci_low": float(low),
        "ci_high": float(high),
        "n_resamples": n_resamples,
        "confidence": float(confidence),
    }


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
    a, b_ = _check_pair("correct_a", correct_a, "correct_b", correct_b)
    a = _as_bool("correct_a", a)
    b_ = _as_bool("correct_b", b_)
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
    (Wilson 1927; Brown, Cai & DasGupta 2001).

    Args:
        correct: 1-D bool (or 0/1) array, model correct per test example.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (low, high) bounds of the interval.
    """
    c = _as_bool("correct", _as_1d("correct", correct))
    _check_confidence(confidence)
    n = c.shape[0]
    p = np.count_nonzero(c) / n
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
