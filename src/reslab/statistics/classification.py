"""Confusion matrix and per-class precision / recall / F1 of one classifier."""

from __future__ import annotations

import numpy as np

from ._inputs import check_labels, check_pair


__all__ = ["confusion_matrix", "classification_report"]

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
    y_true, y_pred = check_pair("y_true", y_true, "y_pred", y_pred)
    y_true = check_labels("y_true", y_true, n_classes)
    y_pred = check_labels("y_pred", y_pred, n_classes)
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
