"""The bootstrap engine shared by `paired` (one replicate) and `replicated` (R replicates): images and replicates
resampled with replacement, one vectorised pass per chunk of resamples.

Inputs are (R replicates, N test images) boolean correctness matrices as in `replicated`; a single test split is
the case R == 1.
"""

from __future__ import annotations

import numpy as np

from ._inputs import check_confidence, check_correctness_matrices, check_n_resamples

__all__ = ["BOOTSTRAP_LEVELS", "hierarchical_bootstrap_diff"]

# What a resample of hierarchical_bootstrap_diff redraws: both levels, or one of them for comparison.
BOOTSTRAP_LEVELS = ("both", "replicates", "images")

# Bounds each chunk's (resamples x N) count matrices (~16 MB of float64), whatever n_resamples is.
_CHUNK_ELEMENTS = 2_000_000


def _resample_counts(rng: np.random.Generator, n_rows: int, size: int) -> np.ndarray:
    """(n_rows, size) float counts of how often each index is drawn in `size` draws with replacement per row."""
    idx = rng.integers(0, size, size=(n_rows, size))
    flat = idx + (np.arange(n_rows) * size)[:, None]  # offset each row so one bincount counts them all
    return np.bincount(flat.ravel(), minlength=n_rows * size).reshape(n_rows, size).astype(np.float64)


def hierarchical_bootstrap_diff(
    correct_a,
    correct_b,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    levels: str = "both",
) -> dict:
    """Two-level percentile-bootstrap CI of the mean paired accuracy difference (B - A) over replicates.

    Each resample draws R replicates with replacement (the same draw for both models, which share seed and
    split) and N test images with replacement (the same images for every replicate and both models, since the
    test set is shared), and computes the mean over the drawn replicates of accuracy_b - accuracy_a on the drawn
    images (Bouthillier et al., MLSys 2021). It is shown for contrast and no verdict reads it, because it is
    miscalibrated both ways: resampling images counts the per-image noise that is already inside the replicates'
    spread a second time (too wide with many replicates), while with few replicates the resampled mean of n draws
    spreads sqrt((n - 1)/n) as far as it should and is read with normal, not t, quantiles (too narrow).
    statistics.design's interval is the calibrated one (benchmarks/calibration.py). As the statistic is linear, a
    resample is
    w^T D c / (R N), with D = correct_b - correct_a (R, N) and w, c the replicate and image draw counts, which
    vectorises over resamples.

    Args:
        correct_a: (R, N) bool (or 0/1) matrix, model A correct per replicate and test image.
        correct_b: same for model B; row k is the replicate that shares row k's seed and split.
        n_resamples: number of bootstrap resamples (>= 1).
        confidence: two-sided coverage of the percentile interval, in (0, 1).
        seed: seed for numpy's default_rng; results are deterministic given it.
        levels: "both" (the default), or "images" (test-set sampling only: replicates fixed, what a
            single-run paired bootstrap reports) or "replicates" (training variance only: images fixed).

    Returns:
        {"diff": observed mean over replicates of accuracy_b - accuracy_a, "ci_low", "ci_high",
         "se": sd of the bootstrap distribution, "n_resamples": int, "confidence": float, "levels": str,
         "n_replicates": int, "n_test": int}
    """
    a, b = check_correctness_matrices(correct_a, correct_b)
    n_resamples = check_n_resamples(n_resamples)
    check_confidence(confidence)
    if levels not in BOOTSTRAP_LEVELS:
        raise ValueError(f"levels must be one of {BOOTSTRAP_LEVELS}, got {levels!r}")
    n_rep, n_test = a.shape
    d = b.astype(np.float64) - a.astype(np.float64)  # (R, N), values in {-1, 0, 1}

    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(n_rep, n_test))
    boot = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        w = (_resample_counts(rng, m, n_rep) if levels in ("both", "replicates")
             else np.ones((m, n_rep)))  # (m, R)
        per_image = w @ d  # (m, N): replicate-weighted difference per image
        if levels in ("both", "images"):
            per_image *= _resample_counts(rng, m, n_test)  # (m, N)
        boot[start:start + m] = per_image.sum(axis=1) / (n_rep * n_test)

    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"diff": float(d.mean()), "ci_low": float(low), "ci_high": float(high),
            "se": float(boot.std(ddof=1)) if n_resamples > 1 else 0.0, "n_resamples": n_resamples,
            "confidence": float(confidence), "levels": levels, "n_replicates": int(n_rep), "n_test": int(n_test)}
