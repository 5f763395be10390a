"""Learning curves of one training run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"


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
