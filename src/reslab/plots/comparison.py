"""Figures of test results: a confusion matrix, and grouped bars of summary metrics per model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def confusion_matrix_figure(
    cm: np.ndarray, class_names: list[str], title: str = "", normalize: bool = True
) -> Figure:
    """Heat map of a confusion matrix (rows = true, columns = predicted).

    Args:
        cm: (n_classes, n_classes) count matrix, rows = true class.
        class_names: tick labels, one per class.
        title: axes title; empty gives a default.
        normalize: if True, colour by row-normalised rate (recall per class)
            so rare classes are as visible as common ones; cells then show
            rates, otherwise counts.

    Returns:
        Figure with the matrix axes and its colour bar (two axes).
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) to match class_names, got {cm.shape}")
    if normalize:
        row_sums = cm.sum(axis=1, keepdims=True)
        values = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)
        vmax, fmt, cbar_label = 1.0, "{:.2f}", "fraction of true class"
    else:
        values = cm.astype(float)
        vmax, fmt, cbar_label = max(values.max(), 1.0), "{:.0f}", "count"

    size = min(max(4.5, 0.55 * k + 2.5), 16)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=cbar_label)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))
    # Cell annotations stop being legible beyond ~20 classes.
    if k <= 20:
        fontsize = 9 if k <= 10 else 7
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize,
                        color="white" if v > 0.5 * vmax else "black")
    fig.tight_layout()
    return fig


def comparison_bar(metrics_by_model: dict[str, dict], keys=("accuracy", "macro_f1")) -> Figure:
    """Grouped bars of summary metrics, one group per metric, one bar per model.

    Error bars are drawn for a metric when its dict also has
    ``f"{key}_ci_low"`` and ``f"{key}_ci_high"``.

    Args:
        metrics_by_model: {model name: {metric: value, ...}}.
        keys: metric names to plot; each must be present for every model.

    Returns:
        Figure with a single axes.
    """
    if not metrics_by_model:
        raise ValueError("metrics_by_model must contain at least one model")
    keys = list(keys)
    if not keys:
        raise ValueError("keys must name at least one metric")
    for model, metrics in metrics_by_model.items():
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise ValueError(f"metrics for {model!r} are missing keys: {missing}")
    models = list(metrics_by_model)
    n_models = len(models)
    width = 0.8 / n_models
    x = np.arange(len(keys))

    fig, ax = plt.subplots(figsize=(min(3.0 + 0.9 * len(keys) * n_models, 14.0), 4.2))
    for m, model in enumerate(models):
        metrics = metrics_by_model[model]
        vals = np.array([float(metrics[k]) for k in keys])
        err = np.zeros((2, len(keys)))
        has_err = False
        for j, k in enumerate(keys):
            lo, hi = metrics.get(f"{k}_ci_low"), metrics.get(f"{k}_ci_high")
            if lo is not None and hi is not None:
                # Clip at 0: a CI that excludes the point estimate must not draw inverted bars.
                err[:, j] = (max(vals[j] - float(lo), 0.0), max(float(hi) - vals[j], 0.0))
                has_err = True
        pos = x - 0.4 + width * (m + 0.5)
        bars = ax.bar(pos, vals, width, label=model, color=f"C{m}",
                      yerr=err if has_err else None, capsize=4 if has_err else 0)
        for rect, v, top in zip(bars, vals, vals + err[1]):
            ax.text(rect.get_x() + rect.get_width() / 2, top + 0.01, f"{v:.3f}",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(keys)
    ax.set_ylabel("score")
    ax.set_xlabel("metric")
    ax.set_title("Model comparison" + (" (error bars: CI)" if any(
        f"{k}_ci_low" in mm for mm in metrics_by_model.values() for k in keys) else ""))
    all_vals = [float(mm[k]) for mm in metrics_by_model.values() for k in keys]
    # Metrics here are rates; leave headroom above 1 for the value labels.
    ax.set_ylim(0, max(1.0, max(all_vals)) * 1.12)
    ax.grid(True, axis="y", alpha=0.3)
    # Outside the axes so it never hides a bar or its value label.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    return fig
