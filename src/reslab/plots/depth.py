"""Figures of the depth study, after He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016): error
against depth for plain and residual nets (the comparison of Fig. 6), and training error per epoch for each depth
(Fig. 1 and the curves of Fig. 6)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

FAMILY_STYLE = {"plain": {"color": "tab:red", "marker": "o"}, "residual": {"color": "tab:blue", "marker": "s"}}


def error_vs_depth(summary: dict[str, dict[int, dict]], *, metrics=(("final_train_error", "final training error"),
                                                                   ("test_error", "test error")),
                   confidence: float = 0.95, title: str = "") -> Figure:
    """One panel per metric: mean error against depth for each family, with the interval across seeds as error bars.

    Args:
        summary: {family: {depth: {metric: replicate_summary}}} (`depth_study.analysis.summarise`).
        metrics: (metric key, axis label) per panel.
        confidence: the intervals' coverage, for the legend.
        title: figure title; empty for none.

    Returns:
        Figure with one axis per metric; each holds one errorbar line per family (gid "<family>:<metric>").
    """
    if not summary:
        raise ValueError("summary must hold at least one family")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), sharey=False, squeeze=False)
    all_depths = sorted({d for by_depth in summary.values() for d in by_depth})
    dodge = 0.012 * max(all_depths[-1] - all_depths[0], 10)  # the families' bars side by side, not on top
    for ax, (metric, label) in zip(axes[0], metrics):
        for i, (family, by_depth) in enumerate(summary.items()):
            depths = sorted(by_depth)
            x = np.array(depths, dtype=float) + (i - (len(summary) - 1) / 2) * dodge
            mean = np.array([by_depth[d][metric]["mean"] for d in depths])
            low = np.array([by_depth[d][metric]["ci_low"] for d in depths])
            high = np.array([by_depth[d][metric]["ci_high"] for d in depths])
            err = None if np.isnan(low).all() else np.vstack([mean - low, high - mean]).clip(min=0.0)
            style = FAMILY_STYLE.get(family, {})
            cont = ax.errorbar(x, mean, yerr=err, capsize=4, lw=1.8, ms=5, label=family, **style)
            cont.lines[0].set_gid(f"{family}:{metric}")
        ax.set_xticks(all_depths)
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs depth", fontsize=10)
        ax.grid(True, alpha=0.3)
    first_family = next(iter(summary.values()))
    n = first_family[min(first_family)][metrics[0][0]]["n"]  # seeds per cell
    note = f"mean over {n} seeds, bars: {100 * confidence:g} % t-interval" if n > 1 else "one seed: no interval"
    axes[0][0].legend(loc="best", fontsize=8, title=note, title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def training_error_curves(curves: dict[str, dict[int, list[list[dict]]]], *, title: str = "") -> Figure:
    """One panel per family, one line per depth: training error per epoch (mean over seeds, a min-max band over
    them when there are several), both panels on one scale.

    Args:
        curves: {family: {depth: [one seed's history rows with "epoch" and "train_error"], ...}}.
        title: figure title; empty for none.

    Returns:
        Figure with one axis per family; each line has gid "<family>:<depth>".
    """
    if not curves:
        raise ValueError("curves must hold at least one family")
    depths = sorted({d for by_depth in curves.values() for d in by_depth})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(depths), 1)))
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.2), sharey=True, squeeze=False)
    for ax, (family, by_depth) in zip(axes[0], curves.items()):
        for color, depth in zip(colors, depths):
            if depth not in by_depth:
                continue
            runs = by_depth[depth]
            epochs = sorted({r["epoch"] for run in runs for r in run})
            values = np.array([[next((r["train_error"] for r in run if r["epoch"] == e), np.nan) for e in epochs]
                               for run in runs])  # (seeds, epochs)
            line, = ax.plot(epochs, np.nanmean(values, axis=0), color=color, lw=1.8, label=f"{family}-{depth}")
            line.set_gid(f"{family}:{depth}")
            if len(runs) > 1:
                ax.fill_between(epochs, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color, alpha=0.15)
        all_epochs = sorted({r["epoch"] for runs in by_depth.values() for run in runs for r in run})
        if len(all_epochs) <= 20:
            ax.set_xticks(all_epochs)  # integer epochs only
        n = max(len(runs) for runs in by_depth.values())
        ax.set_xlabel("epoch")
        ax.set_title(f"{family} nets (mean over {n} seeds{'; band: min-max' if n > 1 else ''})", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0][0].set_ylabel("training error (augmented batches, epoch mean)")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
