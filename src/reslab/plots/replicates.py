"""Figures of a replicated comparison: per-replicate test scores with paired lines, and learning curves over replicates.

Showing every replicate next to the mean and its interval, rather than one number per model, follows Agarwal et
al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021) and Bouthillier et al.,
"Accounting for Variance in Machine Learning Benchmarks" (MLSys 2021).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


BANDS = ("sd", "minmax")

_PAIR_COLORS = {1: "tab:green", -1: "tab:red", 0: "tab:gray"}  # sign of B - A


def _finite_1d(name: str, x) -> np.ndarray:
    """A non-empty 1-D float array without NaN or inf, or ValueError naming it."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _interval(name: str, interval, values: np.ndarray) -> tuple[float, float]:
    """The given (low, high), or the t-interval of the mean of `values` (NaN for a single value)."""
    if interval is None:
        from ..statistics import replicate_summary  # scipy.stats: imported only when a figure needs it

        s = replicate_summary(values)
        return s["ci_low"], s["ci_high"]
    low, high = (float(v) for v in interval)
    if not low <= high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {interval}")
    return low, high


def _mean_with_interval(ax, pos: float, mean: float, interval: tuple[float, float], *, horizontal: bool,
                        color: str, label: str, gid: str) -> None:
    """A diamond at the mean with the interval as an error bar (none when the interval is NaN)."""
    low, high = interval
    err = None if np.isnan(low) else np.array([[mean - low], [high - mean]]).clip(min=0.0)
    xy = (mean, pos) if horizontal else (pos, mean)
    cont = ax.errorbar(*xy, **{"xerr" if horizontal else "yerr": err}, fmt="D", color=color, ms=7, capsize=5,
                       elinewidth=2, label=label, zorder=4)
    cont.lines[0].set_gid(gid)


def replicate_strip_plot(
    scores_a,
    scores_b,
    *,
    name_a: str = "A",
    name_b: str = "B",
    interval_a: tuple[float, float] | None = None,
    interval_b: tuple[float, float] | None = None,
    difference_interval: tuple[float, float] | None = None,
    interval_label: str = "95 % t-interval",
    difference_label: str = "95 % t-interval",
    replicate_labels: list[str] | None = None,
    metric: str = "test accuracy",
    title: str = "",
) -> Figure:
    """Each replicate's score for both models joined by a line, beside the per-replicate differences (forest).

    Left: one point per replicate and model, a line between a replicate's two points (green where B scores
    higher, red where A does, grey on a tie), and each model's mean with its interval. Right: each replicate's
    difference B - A, and the mean difference with its interval, against a line at 0.

    Args:
        scores_a: 1-D per-replicate scores of model A (finite).
        scores_b: same for model B; entry k is the replicate that shares entry k's seed and split.
        name_a: model A's name on the axes and in the legend.
        name_b: model B's name.
        interval_a: (low, high) interval of A's mean; None computes the 95 % t-interval (none for one replicate).
        interval_b: same for B.
        difference_interval: (low, high) interval of the mean difference B - A, e.g. the two-level bootstrap CI
            from `statistics.hierarchical_bootstrap_diff`; None computes the 95 % t-interval of the differences.
        interval_label: how interval_a and interval_b were computed, for the legend.
        difference_label: how difference_interval was computed, for the legend.
        replicate_labels: one name per replicate (e.g. "seed 3") for the forest rows; default "replicate k".
        metric: the score's name, for the axis labels.
        title: figure title; empty for none.

    Returns:
        Figure with two axes; the left holds one line per replicate (gid "pair"), one scatter per model
        (gid "replicates:<name>") and one mean marker per model (gid "mean:<name>"); the right one scatter of
        differences (gid "differences") and the mean difference (gid "mean:difference").
    """
    a = _finite_1d("scores_a", scores_a)
    b = _finite_1d("scores_b", scores_b)
    if a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must have the same length, got {a.size} and {b.size}")
    n = a.size
    labels = [f"replicate {k}" for k in range(n)] if replicate_labels is None else list(replicate_labels)
    if len(labels) != n:
        raise ValueError(f"need one replicate label per replicate, got {len(labels)} for {n}")
    diffs = b - a

    fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, max(4.2, 0.3 * n + 2.0)),
                                      gridspec_kw={"width_ratios": [1.0, 1.3]})
    for k in range(n):
        line, = ax.plot([0, 1], [a[k], b[k]], color=_PAIR_COLORS[int(np.sign(diffs[k]))], alpha=0.6, lw=1.2)
        line.set_gid("pair")
    for x, name, scores, interval, offset in ((0, name_a, a, interval_a, -0.22), (1, name_b, b, interval_b, 0.22)):
        pts = ax.scatter(np.full(n, x), scores, color=f"C{x}", s=28, zorder=3, label=f"{name}: each replicate")
        pts.set_gid(f"replicates:{name}")
        _mean_with_interval(ax, x + offset, float(scores.mean()), _interval(f"interval_{'ab'[x]}", interval, scores),
                            horizontal=False, color=f"C{x}", label=f"{name}: mean, {interval_label}",
                            gid=f"mean:{name}")
    ax.set_xticks([0, 1])
    ax.set_xticklabels([name_a, name_b])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per replicate (lines pair a replicate's models)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)

    rows = np.arange(n)
    pts = ax_diff.scatter(diffs, rows, color=[_PAIR_COLORS[int(s)] for s in np.sign(diffs)], s=28, zorder=3)
    pts.set_gid("differences")
    _mean_with_interval(ax_diff, n + 0.5, float(diffs.mean()), _interval("difference_interval",
                        difference_interval, diffs), horizontal=True, color="black",
                        label=f"mean, {difference_label}", gid="mean:difference")
    ax_diff.axvline(0.0, color="black", lw=1, ls="--")
    ax_diff.set_yticks(list(rows) + [n + 0.5])
    ax_diff.set_yticklabels(labels + ["mean"], fontsize=8)
    ax_diff.invert_yaxis()  # replicate 0 on top, the mean at the bottom
    ax_diff.set_xlabel(f"{metric}: {name_b} - {name_a}")
    ax_diff.set_title(f"Paired difference per replicate ({n} replicates)", fontsize=10)
    ax_diff.grid(True, axis="x", alpha=0.3)
    ax_diff.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def _epoch_matrix(histories: list[list[dict]], key: str, epochs: np.ndarray) -> np.ndarray:
    """(replicates, epochs) values of `key`; NaN where a replicate did not train that epoch."""
    col = {e: j for j, e in enumerate(epochs)}
    out = np.full((len(histories), epochs.size), np.nan)
    for i, history in enumerate(histories):
        for row in history:
            out[i, col[row["epoch"]]] = float(row[key])
    return out


def replicate_learning_curves(histories_by_model: dict[str, list[list[dict]]], *, band: str = "sd",
                              title: str = "") -> Figure:
    """Validation accuracy and loss per epoch for each model: the mean over replicates with a band.

    Replicates may stop at different epochs (early stopping): at each epoch the mean and the band are taken over
    the replicates still training then, so the curve's tail rests on fewer replicates; a cross marks each
    replicate's last epoch. NaN values (a diverged epoch) are left out of the mean and band.

    Args:
        histories_by_model: {model name: one history per replicate}, a history being one dict per epoch with
            "epoch", "val_accuracy" and "val_loss" (the `fit` history; other keys are ignored).
        band: "sd" for mean +/- 1 standard deviation (ddof=0) or "minmax" for the range over replicates.
        title: figure title, above the explanation of the band; empty gives only the explanation.

    Returns:
        Figure with two axes (validation accuracy, validation loss); per model each holds one mean line
        (gid "mean:<name>"), one band (gid "band:<name>") and one cross per replicate (gid "stops:<name>").
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if not histories_by_model:
        raise ValueError("histories_by_model must contain at least one model")
    for name, histories in histories_by_model.items():
        if not histories or any(not h for h in histories):
            raise ValueError(f"{name!r}: need at least one replicate, each with at least one epoch")
        missing = sorted({k for h in histories for r in h for k in ("epoch", "val_accuracy", "val_loss")
                          if k not in r})
        if missing:
            raise ValueError(f"{name!r}: history rows are missing keys: {missing}")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = ((axes[0], "val_accuracy", "Validation accuracy"), (axes[1], "val_loss", "Validation loss"))
    all_epochs: set[int] = set()
    for m, (name, histories) in enumerate(histories_by_model.items()):
        epochs = np.array(sorted({r["epoch"] for h in histories for r in h}))
        all_epochs.update(int(e) for e in epochs)
        last = np.array([max(r["epoch"] for r in h) for h in histories])
        for ax, key, _ in panels:
            values = _epoch_matrix(histories, key, epochs)
            running = np.isfinite(values).sum(axis=0)
            keep = running > 0  # epochs no replicate reached with a finite value are not drawn
            v, x = values[:, keep], epochs[keep]
            mean = np.nanmean(v, axis=0)
            low, high = ((mean - np.nanstd(v, axis=0), mean + np.nanstd(v, axis=0)) if band == "sd"
                         else (np.nanmin(v, axis=0), np.nanmax(v, axis=0)))
            line, = ax.plot(x, mean, color=f"C{m}", lw=2,
                            label=f"{name}: mean of {len(histories)} replicates")
            line.set_gid(f"mean:{name}")
            fill = ax.fill_between(x, low, high, color=f"C{m}", alpha=0.2,
                                   label=f"{name}: {'mean ± 1 sd' if band == 'sd' else 'min-max'}")
            fill.set_gid(f"band:{name}")
            final = values[np.arange(len(histories)), np.searchsorted(epochs, last)]
            ok = np.isfinite(final)
            stops = ax.scatter(last[ok], final[ok], marker="x", color=f"C{m}", s=36, zorder=3)
            stops.set_gid(f"stops:{name}")
    for ax, _, label in panels:
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch", fontsize=10)
        ax.grid(True, alpha=0.3)
        if len(all_epochs) <= 20:
            ax.set_xticks(sorted(all_epochs))  # integer epochs only
    axes[1].legend(loc="best", fontsize=8)
    note = (f"band: {'mean ± 1 sd' if band == 'sd' else 'min-max'} over the replicates still training at each "
            "epoch; x = a replicate's last epoch")
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=11 if title else 10)
    fig.tight_layout()
    return fig
