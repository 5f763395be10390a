"""studies/depth/reports/depth_study.md: the setup, the table per family and depth, the paired differences, one
verdict per depth with its rule, the figures and every cell."""
from __future__ import annotations

import math

from .analysis import METRIC_NAMES, METRICS


def _num(x: float, signed: bool = False) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{'+' if signed else ''}.3f}"


def _with_ci(s: dict, signed: bool = False) -> str:
    """'0.123 [0.100, 0.146]', or the mean alone with one seed."""
    if math.isnan(s["ci_low"]):
        return _num(s["mean"], signed)
    return f"{_num(s['mean'], signed)} [{_num(s['ci_low'], signed)}, {_num(s['ci_high'], signed)}]"


def report_markdown(result: dict, setup: dict) -> str:
    """The report.

    Args:
        result: `analysis.analyse`.
        setup: {"image_size", "widths", "epochs", "batch_size", "lr", "augment_magnitude", "precision",
            "n_train", "n_val", "n_test", "n_classes", "n_parameters" {depth: count}}.
    """
    depths, seeds, pct = result["depths"], result["seeds"], f"{100 * result['confidence']:g}"
    n = len(seeds)
    interval = f"mean [{pct} % t-interval across {n} seeds]" if n > 1 else "one seed: no interval"
    aug = (f"the study's augmentation at magnitude {setup['augment_magnitude']:g}" if setup["augment_magnitude"] > 0
           else "no augmentation")
    lines = [
        "# Depth study: plain vs residual nets as depth grows",
        "",
        "He et al., \"Deep Residual Learning for Image Recognition\" (CVPR 2016), Section 4.2: CIFAR-style nets of "
        f"depth 6n+2 (3x3 convs, stages of widths {'/'.join(map(str, setup['widths']))}, stride-2 stage "
        "transitions, global average pooling, linear head); the residual net adds option-A (parameter-free) "
        "shortcuts to the plain net of the same depth, so both have the same parameters.",
        "",
        f"Budget, the same for every cell: {setup['epochs']} epochs (no early stopping; the last epoch's weights), "
        f"Adam at a constant lr {setup['lr']:g}, batch {setup['batch_size']}, {aug}, {setup['image_size']} px, "
        f"{setup['precision']}. Data: the main pipeline's split ({setup['n_train']} train / {setup['n_val']} val / "
        f"{setup['n_test']} test images, {setup['n_classes']} classes). Seeds: {', '.join(map(str, seeds))}.",
        "",
        "Final training loss and error: the last epoch's weights on the unaugmented train split in eval mode. Best "
        "validation error: the lowest over the epochs. Test error: the final model on the test split, which only "
        "this report reads.",
        "",
        "## Verdict per depth",
        "",
        *[f"- {result['verdicts'][d]}" for d in depths],
        "",
        f"Rule: {result['rule']}",
        "",
        "Lowest mean final training error: " + "; ".join(
            f"{family} at depth {d}" for family, d in result["lowest_training_error"].items()) + ".",
        "",
        f"## Per family and depth ({interval})",
        "",
        "| family | depth | parameters | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
        "|---|---:|---:|" + "---:|" * len(METRICS),
    ]
    for family, by_depth in result["summary"].items():
        for d in depths:
            cells = " | ".join(_with_ci(by_depth[d][m]) for m in METRICS)
            lines.append(f"| {family} | {d} | {setup['n_parameters'][d]:,} | {cells} |")
    lines += [
        "",
        f"## Plain - residual per depth (paired by seed; {interval})",
        "",
        "| depth | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " | per seed (training error) |",
        "|---:|" + "---:|" * len(METRICS) + "---|",
    ]
    for d in depths:
        diff = result["difference"][d]
        per_seed = ", ".join(f"{x:+.3f}" for x in diff["final_train_error"]["per_seed"])
        lines.append(f"| {d} | " + " | ".join(_with_ci(diff[m], signed=True) for m in METRICS) + f" | {per_seed} |")
    lines += [
        "",
        "## Figures",
        "",
        "![Error vs depth](figures/error_vs_depth.png)",
        "",
        "Final training error (left) and test error (right) against depth, mean over seeds with the interval "
        "(He et al. 2016, Fig. 6). Degradation shows as a plain curve that rises with depth while the residual "
        "one does not.",
        "",
        "![Training error per epoch](figures/training_error_curves.png)",
        "",
        "Training error per epoch (on the augmented batches, averaged over the epoch; mean over seeds), one line "
        "per depth, plain and residual side by side on one scale (He et al. 2016, Fig. 1 and 6).",
        "",
        "## Every cell",
        "",
        "| family | depth | seed | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " | best val epoch | time (s) |",
        "|---|---:|---:|" + "---:|" * len(METRICS) + "---:|---:|",
    ]
    for c in result["cells"]:
        lines.append(f"| {c['family']} | {c['depth']} | {c['seed']} | " + " | ".join(_num(c[m]) for m in METRICS)
                     + f" | {c['best_val_epoch']} | {c['wall_time_s']:.0f} |")
    return "\n".join(lines) + "\n"
