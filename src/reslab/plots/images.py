"""Figures of images: a labelled grid, and test images beside each model's top-k predictions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

_BAR_COLOR = "tab:gray"
_TRUE_COLOR = "tab:green"


def _checked_images(images: np.ndarray, labels: list, what: str) -> np.ndarray:
    """(N, H, W, 3) uint8 images with one label each, or a ValueError naming what is wrong."""
    imgs = _to_hwc_uint8(images)
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("images must contain at least one image")
    if len(labels) != n:
        raise ValueError(f"need one {what} per image, got {len(labels)} for {n} images")
    return imgs


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
    imgs = _checked_images(images, labels, "label")
    n = imgs.shape[0]
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
    imgs = _checked_images(images, true_labels, "true label")
    n = imgs.shape[0]
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
