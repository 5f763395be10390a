"""Figures for training curves, sample images and model comparison.

Every plotting function builds and returns a matplotlib Figure without saving
or closing it; the caller decides where it goes (see `save_figure`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Headless rendering: training machines and CI have no display.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "learning_curves",
    "image_grid",
    "confusion_matrix_figure",
    "prediction_figure",
    "comparison_bar",
    "save_figure",
]

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_BAR_COLOR = "tab:gray"
_TRUE_COLOR = "tab:green"


def _to_hwc_uint8(images: np.ndarray) -> np.ndarray:
    """Convert (N,H,W,3) uint8 or (N,3,H,W) float in [0,1] to (N,H,W,3) uint8."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"images must be 4-D (N,H,W,3) or (N,3,H,W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.shape[-1] == 3:
            return arr
        if arr.shape[1] == 3:
            return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
        raise ValueError(f"uint8 images must have 3 channels, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        # Channel-first is the torch tensor layout; fall back to channel-last.
        if arr.shape[1] == 3:
            arr = arr.transpose(0, 2, 3, 1)
        elif arr.shape[-1] != 3:
            raise ValueError(f"float images must have 3 channels, got shape {arr.shape}")
        return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"images must be uint8 or float, got dtype {arr.dtype}")


def _grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """Rows and columns for n tiles with at most ncols per row."""
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols


def learning_curves(history: list[dict], title: str = "") -> Figure:
    """Loss and accuracy versus epoch, train against validation.

    Args:
        history: one dict per epoch with keys "epoch", "train_loss",
            "val_loss", "train_accuracy", "val_accuracy".
        title: figure title (suptitle); empty for none.

    Returns:
        Figure with two axes (loss, accuracy); the epoch with the lowest
        validation loss is marked by a dashed vertical line on both.
    """
    if not history:
        raise ValueError("history must contain at least one epoch")
    required = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy")
    missing = [k for k in required if k not in history[0]]
    if missing:
        raise ValueError(f"history rows are missing keys: {missing}")
    rows = sorted(history, key=lambda r: r["epoch"])
    epochs = np.array([r["epoch"] for r in rows])
    series = {k: np.array([r[k] for r in rows], dtype=float) for k in required[1:]}
    best = int(np.nanargmin(series["val_loss"]))
    best_epoch = epochs[best]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        (ax_loss, "loss", "Loss"),
        (ax_acc, "accuracy", "Accuracy"),
    )
    marker = "o" if len(epochs) <= 30 else None
    for ax, key, label in panels:
        ax.plot(epochs, series[f"train_{key}"], color=_TRAIN_COLOR, marker=marker, ms=3, label="train")
        ax.plot(epochs, series[f"val_{key}"], color=_VAL_COLOR, marker=marker, ms=3, label="val")
        ax.axvline(best_epoch, color="black", linestyle="--", linewidth=1,
                   label=f"best val loss (epoch {best_epoch})")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    ax_acc.annotate(
        f"val acc {series['val_accuracy'][best]:.3f}",
        xy=(best_epoch, series["val_accuracy"][best]),
        xytext=(6, -14), textcoords="offset points", fontsize=8,
    )
    if len(epochs) <= 20:
        # Integer ticks only: fractional epochs read as a bug.
        for ax in (ax_loss, ax_acc):
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, labels: list[str], ncols: int = 8, title: str = "") -> Figure:
    """A grid of image tiles, each titled with its label.

    Args:
        images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1].
        labels: one label per image, shown above its tile.
        ncols: maximum tiles per row.
        title: figure title; empty for none.

    Returns:
        Figure with rows * cols axes; tiles beyond N are blank (axis off).
    """
    imgs = _to_hwc_uint8(images)
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("images must contain at least one image")
    if len(labels) != n:
        raise ValueError(f"need one label per image, got {len(labels)} labels for {n} images")
    nrows, ncols = _grid_shape(n, ncols)
    tile = 1.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile * ncols, tile * nrows + 0.4 + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(imgs[i], interpolation="nearest")
            ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


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


def prediction_figure(
    images: np.ndarray,
    true_labels: list[str],
    probs_by_model: dict[str, np.ndarray],
    class_names: list[str],
    top_k: int = 5,
) -> Figure:
    """Per-image top-k class probabilities for each model, side by side.

    Each row shows one test image, then one horizontal bar panel per model
    with its top-k predicted classes; the true class's bar is highlighted, and
    each panel's title says whether the model's top-1 guess is right.

    Args:
        images: uint8 (N, H, W, 3) (float (N, 3, H, W) in [0, 1] also accepted).
        true_labels: true class name per image (must appear in class_names).
        probs_by_model: {model name: (N, n_classes) probabilities}.
        class_names: names indexed by class id.
        top_k: number of classes shown per model (capped at n_classes).

    Returns:
        Figure with N * (1 + number of models) axes.
    """
    imgs = _to_hwc_uint8(images)
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("images must contain at least one image")
    if len(true_labels) != n:
        raise ValueError(f"need one true label per image, got {len(true_labels)} for {n} images")
    if not probs_by_model:
        raise ValueError("probs_by_model must contain at least one model")
    n_classes = len(class_names)
    name_to_idx = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({str(t) for t in true_labels if t not in name_to_idx})
    if unknown:
        raise ValueError(f"true_labels not in class_names: {unknown}")
    probs = {}
    for model, p in probs_by_model.items():
        p = np.asarray(p, dtype=float)
        if p.shape != (n, n_classes):
            raise ValueError(f"probs for {model!r} must have shape ({n}, {n_classes}), got {p.shape}")
        probs[model] = p
    k = max(1, min(int(top_k), n_classes))
    models = list(probs)
    n_models = len(models)

    row_h = max(1.6, 0.32 * k + 0.7)
    fig, axes = plt.subplots(
        n, 1 + n_models,
        figsize=(2.2 + 3.6 * n_models, row_h * n + 0.3),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0] + [1.9] * n_models},
    )
    for i in range(n):
        true_idx = name_to_idx[true_labels[i]]
        ax_img = axes[i, 0]
        ax_img.imshow(imgs[i], interpolation="nearest")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_title(f"true: {true_labels[i]}", fontsize=10, fontweight="bold")
        for m, model in enumerate(models):
            ax = axes[i, 1 + m]
            p = probs[model][i]
            # Stable sort keeps ties in class-id order, so figures are reproducible.
            top = np.argsort(-p, kind="stable")[:k]
            colors = [_TRUE_COLOR if c == true_idx else _BAR_COLOR for c in top]
            y = np.arange(k)
            ax.barh(y, p[top], color=colors)
            ax.set_yticks(y)
            ax.set_yticklabels([class_names[c] for c in top], fontsize=9)
            ax.invert_yaxis()  # highest probability on top
            ax.set_xlim(0, 1)
            for yy, v in zip(y, p[top]):
                ax.text(min(v + 0.02, 0.86), yy, f"{v:.2f}", va="center", fontsize=8)
            correct = top[0] == true_idx
            ax.set_title(
                f"{model}: {'correct' if correct else 'wrong'}"
                + ("" if true_idx in top else f" (true not in top {k})"),
                fontsize=10,
                color="black" if correct else "tab:red",
            )
            ax.tick_params(axis="x", labelsize=8)
            if i == n - 1:
                ax.set_xlabel("predicted probability", fontsize=9)
            else:
                ax.set_xticklabels([])
            ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Top-{k} predicted classes per model (green bar = true class)", fontsize=12)
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


def save_figure(fig: Figure, path) -> Path:
    """Save `fig` as PNG at dpi=100 (creating parent dirs), close it, return the path.

    Args:
        fig: the figure to write.
        path: destination file; parent directories are created as needed.

    Returns:
        The path written, as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
