"""Input checks shared by the statistics modules: each raises ValueError naming the bad argument."""

from __future__ import annotations

import numpy as np


def as_1d(name: str, x) -> np.ndarray:
    """Return `x` as a non-empty 1-D array or raise ValueError naming it."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty")
    return arr


def check_pair(name_a: str, a, name_b: str, b) -> tuple[np.ndarray, np.ndarray]:
    """Validate two 1-D non-empty arrays of equal length."""
    a = as_1d(name_a, a)
    b = as_1d(name_b, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    return a, b


def as_bool(name: str, x: np.ndarray) -> np.ndarray:
    """Convert a 0/1 or bool array to bool, rejecting any other values."""
    if x.dtype == bool:
        return x
    if not np.isin(x, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
    return x.astype(bool)


def check_labels(name: str, y: np.ndarray, n_classes: int) -> np.ndarray:
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


def check_confidence(confidence: float) -> None:
    """Reject confidence levels outside the open interval (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def check_n_resamples(n_resamples: int) -> int:
    """Return n_resamples as an int, rejecting non-integers and values below 1."""
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    return int(n_resamples)


def check_scores(name: str, x) -> np.ndarray:
    """A non-empty 1-D float array of finite per-replicate scores."""
    arr = as_1d(name, x).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def check_correctness_matrices(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    """Two (R replicates, N test images) boolean matrices of the same shape, R >= 1 and N >= 1."""
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    for name, m in (("correct_a", a), ("correct_b", b)):
        if m.ndim != 2:
            raise ValueError(f"{name} must be 2-D (replicates, test images), got shape {m.shape}")
        if m.size == 0:
            raise ValueError(f"{name} must be non-empty, got shape {m.shape}")
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must have the same shape, got {a.shape} and {b.shape}")
    return as_bool("correct_a", a), as_bool("correct_b", b)
