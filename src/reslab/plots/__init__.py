"""Figures for training curves, sample images, model comparison and replicated studies.

Every plotting function builds and returns a matplotlib Figure without saving
or closing it; the caller decides where it goes (see `save_figure`).

Modules:
    curves: learning curves of one training run.
    images: a labelled image grid; test images beside each model's top-k predictions.
    comparison: confusion matrix; grouped bars of summary metrics.
    replicates: per-replicate strip/forest plot; learning curves over replicates.
    depth: the depth study's error vs depth and training-error curves per depth (He et al. 2016).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Headless rendering: training machines and CI have no display. Selected before any submodule imports pyplot.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .comparison import comparison_bar, confusion_matrix_figure  # noqa: E402
from .curves import learning_curves  # noqa: E402
from .depth import error_vs_depth, training_error_curves  # noqa: E402
from .images import image_grid, prediction_figure  # noqa: E402
from .replicates import replicate_learning_curves, replicate_strip_plot  # noqa: E402

__all__ = [
    "learning_curves",
    "image_grid",
    "confusion_matrix_figure",
    "prediction_figure",
    "comparison_bar",
    "replicate_strip_plot",
    "replicate_learning_curves",
    "error_vs_depth",
    "training_error_curves",
    "save_figure",
]


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
