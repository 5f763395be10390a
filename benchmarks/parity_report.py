"""benchmarks/parity.py's outputs: the parity and ablation tables (Markdown), the learning-curve figure, the raw JSON.

Every interval is over seeds (training variance on the fixed test folder): a group's mean with its 95 % t-interval
(`reslab.statistics.replicate_summary`); an ablation step's effect is the paired difference to the previous step,
seed by seed, with the t-interval of its mean; reslab original vs the reference (unrelated random streams, so
unpaired) is Welch's interval.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from reslab.plots import save_figure  # noqa: E402
from reslab.statistics import replicate_summary  # noqa: E402

ROLES = ("baseline", "resnet")
TITLES = {"baseline": "plain CNN (baseline)", "resnet": "ResNet"}
CURVES = (("reference (Keras)", "tab:red"), ("reslab original", "tab:blue"), ("reslab fair", "tab:green"))
NOT_REPRODUCED = [
    "Batches: reslab draws a fresh permutation of the training files each epoch and sees every file once; the "
    "notebook's ResNet loop takes steps + 1 batches from a running Keras iterator and the CNN's `fit` takes "
    "n // 32 steps, so epoch boundaries differ slightly.",
    "Augmentation: reslab's `BatchAugment` draws the study's ImageDataGenerator ranges, not Keras' exact transforms.",
    "The ResNet's per-epoch validation in the reference runs on the augmented validation generator (its curve "
    "below); reslab validates on unaugmented images. The held-out test folder is unaugmented in both.",
    "Adam's epsilon: Keras adds it to sqrt(v) before the bias correction, PyTorch after (the same once 0.999^t is "
    "small); BatchNorm's running variance: Keras' batch variance vs PyTorch's unbiased one (irrelevant where "
    "BatchNorm is frozen).",
    "Decoding: reslab applies EXIF orientation and composites transparency over white (`reslab.data.images`); Keras "
    "only converts to RGB. The data line above counts the files where this differs.",
    "The softmax outputs: Keras' cross-entropy on probabilities (clipped at 1e-7) vs PyTorch's on logits.",
]


def threads_text(threads: dict) -> str:
    return ", ".join(f"{k} {'/'.join(str(t) for t in v) or '-'}" for k, v in threads.items() if v)


def train_minutes(reference: dict, reslab: dict) -> float:
    runs = [r for rs in reference.values() for r in rs]
    seen = {}
    for variant in reslab.values():
        for role, rs in variant.items():
            for r in rs:
                seen[(role, r.get("key"), r["seed"])] = r  # a run shared by two variants counts once
    return sum(r["train_time_s"] for r in runs + list(seen.values())) / 60


def pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def summary_cells(runs: list[dict]) -> dict:
    s = replicate_summary([r["test_accuracy"] for r in runs])
    epochs = [r["epochs_trained"] for r in runs]
    return {**s, "epochs_mean": float(np.mean(epochs)), "epochs_min": min(epochs), "epochs_max": max(epochs),
            "train_time_s": float(np.mean([r["train_time_s"] for r in runs]))}


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) and Welch's 95 % interval (NaN with fewer than two values on a side)."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return diff, math.nan, math.nan
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(ci.low), float(ci.high)


def row(label: str, c: dict) -> str:
    epochs = f"{c['epochs_mean']:.1f} ({c['epochs_min']}-{c['epochs_max']})"
    return (f"| {label} | {pct(c['mean'])} ± {pct(c['sd'])} | [{pct(c['ci_low'])}, {pct(c['ci_high'])}] | {epochs} "
            f"| {c['train_time_s']:.0f} |")


def parity_tables(reference: dict, reslab: dict) -> tuple[list[str], dict]:
    lines, data = [], {}
    for role in ROLES:
        groups = [(label, runs) for label, runs in (("reference (Keras)", reference[role]),
                                                    ("reslab original", reslab["original"][role]),
                                                    ("reslab fair", reslab["fair"][role])) if runs]
        cells = {label: summary_cells(runs) for label, runs in groups}
        lines += [f"### {TITLES[role]}", "",
                  "| implementation | held-out accuracy % (mean ± sd) | 95 % CI | epochs trained (min-max) | "
                  "train s per run |", "|---|---|---|---|---|"]
        lines += [row(label, c) for label, c in cells.items()]
        if reference[role]:
            ref, orig = cells["reference (Keras)"], cells["reslab original"]
            diff, lo, hi = welch([r["test_accuracy"] for r in reslab["original"][role]],
                                 [r["test_accuracy"] for r in reference[role]])
            inside = ref["ci_low"] <= orig["mean"] <= ref["ci_high"] if math.isfinite(ref["ci_low"]) else None
            lines += ["", f"reslab original - reference: {100 * diff:+.2f} pp, Welch 95 % CI [{pct(lo)}, {pct(hi)}]; "
                          f"reslab original's mean inside the reference's 95 % CI: "
                          f"{'n/a (one seed)' if inside is None else 'yes' if inside else 'no'}."]
            data[role] = {"cells": cells, "original_minus_reference": {"mean": diff, "ci_low": lo, "ci_high": hi},
                          "original_inside_reference_ci": inside}
        else:
            data[role] = {"cells": cells}
        lines.append("")
    return lines, data


def ablation_tables(reslab: dict, steps: list[str]) -> tuple[list[str], dict]:
    lines, data = [], {}
    order = ["fair", *steps, "original"]
    for role in ROLES:
        # the steps may run on fewer seeds than the parity table (--ablation-seeds): pair on those
        seeds = [r["seed"] for r in reslab[steps[0]][role]] if steps else [r["seed"] for r in reslab["fair"][role]]
        by_seed = {name: {r["seed"]: r for r in reslab[name][role]} for name in order}
        lines += [f"### {TITLES[role]}", "",
                  "| step (cumulative from fair) | held-out accuracy % (mean ± sd) | 95 % CI | epochs trained | "
                  "train s per run | effect vs previous, pp (paired over seeds) | 95 % CI |",
                  "|---|---|---|---|---|---|---|"]
        data[role] = []
        for i, name in enumerate(order):
            runs = [by_seed[name][s] for s in seeds]
            c = summary_cells(runs)
            label = "fair (start)" if name == "fair" else "original (preset)" if name == "original" else f"+ {name}"
            effect, cells = None, "| | |"
            if i > 0:
                prev = [by_seed[order[i - 1]][s] for s in seeds]
                if all(a["key"] == b["key"] for a, b in zip(runs, prev)):
                    cells = "| 0 (the same recipe for this model: not retrained) | |"
                    effect = {"mean": 0.0, "same_recipe": True}
                else:
                    effect = replicate_summary([a["test_accuracy"] - b["test_accuracy"] for a, b in zip(runs, prev)])
                    cells = (f"| {100 * effect['mean']:+.2f} | [{100 * effect['ci_low']:+.2f}, "
                             f"{100 * effect['ci_high']:+.2f}] |" if math.isfinite(effect["ci_low"])
                             else f"| {100 * effect['mean']:+.2f} | n/a (one seed) |")
            lines.append(row(label, c)[:-1] + cells)
            data[role].append({"step": name, "cells": c, "effect_vs_previous": effect})
        lines.append("")
    return lines, data


def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean of `key` over the runs that reached each epoch."""
    longest = max(len(r["history"]) for r in runs)
    means = [np.mean([r["history"][e][key] for r in runs if len(r["history"]) > e
                      and r["history"][e][key] is not None] or [np.nan]) for e in range(longest)]
    return np.arange(1, longest + 1), np.array(means)


def curves_figure(reference: dict, reslab: dict):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, role in zip(axes, ROLES):
        for (label, color), runs in zip(CURVES, (reference[role], reslab["original"][role], reslab["fair"][role])):
            if not runs:
                continue
            for key, style in (("val_accuracy", "-"), ("train_accuracy", "--")):
                x, y = mean_curve(runs, key)
                ax.plot(x, y, style, color=color, label=f"{label}, {key.split('_')[0]}")
        n = len(reslab["fair"][role])
        ax.set_title(f"{TITLES[role]}: accuracy per epoch (mean over {n} seed{'s' if n > 1 else ''})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown(meta: dict, reference: dict, reslab: dict) -> tuple[str, dict]:
    parity, parity_data = parity_tables(reference, reslab)
    ablation, ablation_data = ablation_tables(reslab, meta["steps"])
    info = meta["data_info"]
    lines = [
        f"# Parity with the study's own code ({meta['date']})", "",
        f"`{meta['command']}`", "",
        f"- data: `{meta['data']}`: {info['n_images']} images both implementations read (reslab's filter skipped "
        f"{info['filter_skipped'] or 'none'}; not listed by Keras: {info['not_listed_by_keras']}; decoded with "
        f"conversions Keras does not make: {info['decoded_with_conversions'] or 'none'})",
        f"- split (the reference's rule, checked against its --work-dir): {len(meta['classes'])} classes; "
        + ", ".join(f"{c} {n['train']}/{n['val']}/{n['test']}" for c, n in meta["classes"].items())
        + " (train/val/test)",
        f"- {meta['image_size']} px; seeds {meta['seeds']}; machine: {meta['cpus']} CPUs, torch {meta['torch']} "
        f"(threads per run: {threads_text(meta['threads'])})"
        + (f", TensorFlow {meta['tensorflow']}" if meta.get("tensorflow") else "")
        + f"; this invocation {meta['wall_s'] / 60:.1f} min, the runs' training time summed "
          f"{train_minutes(reference, reslab):.0f} min (runs cached under --work were trained by earlier ones)", "",
        "## Parity: held-out test accuracy", "",
        "Held-out = the test folder (the notebook's own 'Test accuracy' is on its validation generator). Epochs "
        "trained: the reference's CNN may stop early (patience 3), its ResNet runs a fixed budget.", "",
        *parity,
        "## Ablation: from reslab's fair recipe to the study's, one difference at a time", "",
        f"Seeds {meta.get('ablation_seeds') or meta['seeds']}; each step's effect is paired over them (a t-interval "
        "with n - 1 degrees of freedom, so few seeds give wide intervals). Overrides per step: "
        + "; ".join(f"`{name}`: " + ", ".join(f"{k}={v}" for k, v in o.items() if v not in (None, "auto"))
                    for name, o in meta["variants"].items() if o) + ".", "",  # (original's resets not shown)
        *ablation,
        "![learning curves](" + f"parity-{meta['date']}.png)", "",
        "## Not reproduced (differences that remain between reslab original and the reference)", "",
        *[f"- {note}" for note in NOT_REPRODUCED], "",
    ]
    return "\n".join(lines), {"parity": parity_data, "ablation": ablation_data}


def write(out: Path, meta: dict, reference: dict, reslab: dict) -> list[Path]:
    """parity-<date>.md, .json (everything, raw runs included) and .png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"parity-{meta['date']}"
    text, tables = markdown(meta, reference, reslab)
    md = stem.with_suffix(".md")
    md.write_text(text)
    raw = stem.with_suffix(".json")
    raw.write_text(json.dumps({"meta": meta, "tables": tables, "reference": reference, "reslab": reslab},
                              indent=1, default=float) + "\n")
    png = save_figure(curves_figure(reference, reslab), stem.with_suffix(".png"))
    return [md, raw, png]


def console_summary(meta: dict, reference: dict, reslab: dict) -> str:
    parity, _ = parity_tables(reference, reslab)
    ablation, _ = ablation_tables(reslab, meta["steps"])
    return "\n".join(["", "== parity ==", *parity, "== ablation ==", *ablation])
