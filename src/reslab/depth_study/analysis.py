"""The depth study's numbers from its cells: per (family, depth) the mean and t-interval across seeds of each
metric, per depth the paired difference plain - residual and its verdict (statistics.verdict). Pure: rows in,
dicts out.

A row is one cell: {"family", "depth", "seed", "final_train_loss", "final_train_error", "best_val_error",
"test_error", ...}. Seed k of the plain and of the residual net pair up: they share the seed (initial weights
drawn from it, batch order, augmentation) and the data, as in He et al. 2016's comparison of plain and residual
nets of one depth (Fig. 6).
"""
from __future__ import annotations

import math

import numpy as np

from ..statistics import replicate_summary
from ..statistics.verdict import seed_verdict, seed_verdict_rule
from .layout import REPRO
from .params import FAMILIES

METRICS = ("final_train_loss", "final_train_error", "best_val_error", "test_error")
METRIC_NAMES = {"final_train_loss": "final training loss", "final_train_error": "final training error",
                "best_val_error": "best validation error", "test_error": "test error"}
VERDICT_METRIC = "final_train_error"  # the degradation problem is one of optimisation: training error decides

# The verdict rule's words for this study (statistics.verdict.seed_verdict_rule / seed_verdict decide).
_WORDS = {"above": "plain has higher training error than residual",
          "below": "residual has higher training error than plain"}
_RULE_WORDS = {
    "pairing": "Seed k of the plain and of the residual net of a depth pair up (same seed, same data). At each depth",
    "difference": "plain - residual in final training error (the last epoch's weights on the unaugmented train "
                  "split, in eval mode)",
    "above": f"{_WORDS['above']} at depth d", "below": f"{_WORDS['below']} at depth d",
    "note": "; validation and test errors are reported beside it but do not enter the verdict"}


def rule(confidence: float = 0.95) -> str:
    """The verdict rule in this study's words, for the report.

    Args:
        confidence: the interval's two-sided coverage.
    """
    return seed_verdict_rule(confidence, **_RULE_WORDS)


def _by_cell(rows: list[dict], depths, seeds) -> dict[tuple[str, int, int], dict]:
    """Rows keyed by (family, depth, seed); ValueError naming the first missing cell."""
    index = {(r["family"], int(r["depth"]), int(r["seed"])): r for r in rows}
    for family in FAMILIES:
        for depth in depths:
            for seed in seeds:
                if (family, depth, seed) not in index:
                    raise ValueError(f"no cell {family} depth {depth} seed {seed}; run `{REPRO}`")
    return index


def summarise(rows: list[dict], depths, seeds, confidence: float = 0.95) -> dict[str, dict[int, dict]]:
    """{family: {depth: {metric: replicate_summary over seeds}}} for every metric of METRICS.

    Args:
        rows: one dict per cell (at least every (family, depth, seed) asked for).
        depths: the depths to summarise.
        seeds: the seeds; each (family, depth) is summarised over exactly these.
        confidence: the t-intervals' coverage.
    """
    index = _by_cell(rows, depths, seeds)
    return {family: {depth: {m: replicate_summary([index[family, depth, s][m] for s in seeds], confidence)
                             for m in METRICS} for depth in depths} for family in FAMILIES}


def paired_differences(rows: list[dict], depths, seeds, confidence: float = 0.95) -> dict[int, dict[str, dict]]:
    """{depth: {metric: replicate_summary of plain - residual over seeds, plus "per_seed": the differences}}.

    Args:
        rows: one dict per cell.
        depths: the depths compared.
        seeds: the seeds; seed k of both families pairs.
        confidence: the t-intervals' coverage.
    """
    index = _by_cell(rows, depths, seeds)
    out: dict[int, dict[str, dict]] = {}
    for depth in depths:
        out[depth] = {}
        for m in METRICS:
            d = np.array([index["plain", depth, s][m] - index["residual", depth, s][m] for s in seeds])
            out[depth][m] = {**replicate_summary(d, confidence), "per_seed": d.tolist()}
    return out


def depth_verdict(difference: dict, depth: int) -> str:
    """The verdict at one depth from the paired difference of final training error (`rule`).

    Args:
        difference: `replicate_summary` of plain - residual final training error, {"n", "mean", "ci_low", ...}.
        depth: the depth, for the sentence.
    """
    return seed_verdict(difference, prefix=f"depth {depth}: ", what="plain - residual training error", **_WORDS)


def lowest_training_error(summary: dict[str, dict[int, dict]]) -> dict[str, int]:
    """{family: the depth with the lowest mean final training error}: for plain nets He et al. 2016 found it at the
    shallowest depth (degradation), for residual nets at the deepest."""
    return {family: min(by_depth, key=lambda d: (by_depth[d][VERDICT_METRIC]["mean"], d))
            for family, by_depth in summary.items()}


def analyse(rows: list[dict], depths, seeds, confidence: float = 0.95) -> dict:
    """Everything the report, metrics.json and the figures show.

    Args:
        rows: one dict per cell (`cell_summary` + "test_error").
        depths: the study's depths (sorted in the result).
        seeds: the study's seeds.
        confidence: the t-intervals' coverage.

    Returns:
        {"depths", "seeds", "confidence", "summary" (`summarise`), "difference" (`paired_differences`),
         "verdicts" {depth: sentence}, "rule", "lowest_training_error", "cells" (the rows asked for)}
    """
    depths, seeds = sorted(int(d) for d in depths), [int(s) for s in seeds]
    summary = summarise(rows, depths, seeds, confidence)
    difference = paired_differences(rows, depths, seeds, confidence)
    index = _by_cell(rows, depths, seeds)
    return {"depths": depths, "seeds": seeds, "confidence": confidence, "summary": summary,
            "difference": difference,
            "verdicts": {d: depth_verdict(difference[d][VERDICT_METRIC], d) for d in depths},
            "rule": rule(confidence), "lowest_training_error": lowest_training_error(summary),
            "cells": [index[f, d, s] for f in FAMILIES for d in depths for s in seeds]}


def _finite(x):
    """JSON has no NaN: None instead (one seed has no sd or interval)."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def metrics_summary(result: dict) -> dict:
    """studies/depth/metrics.json (DVC metrics): per family and depth each metric's mean and interval, per depth
    the paired difference and the verdict (each cell's own scores are in cells/ and the report)."""
    keep = ("mean", "ci_low", "ci_high")
    out: dict = {"n_seeds": len(result["seeds"]), "confidence": result["confidence"]}
    for family, by_depth in result["summary"].items():
        out[family] = {f"depth_{d}": {m: {k: _finite(s[k]) for k in keep} for m, s in stats.items()}
                       for d, stats in by_depth.items()}
    out["plain_minus_residual"] = {
        f"depth_{d}": {**{m: {k: _finite(s[k]) for k in keep} for m, s in stats.items()},
                       "verdict": result["verdicts"][d]} for d, stats in result["difference"].items()}
    return out


def flat_metrics(result: dict) -> dict[str, float]:
    """The study's aggregate as flat MLflow metrics: plain_d20_final_train_error_mean, diff_d20_test_error_ci_low..."""
    out: dict[str, float] = {}
    for family, by_depth in result["summary"].items():
        for d, stats in by_depth.items():
            for m, s in stats.items():
                out.update({f"{family}_d{d}_{m}_{k}": s[k] for k in ("mean", "ci_low", "ci_high")})
    for d, stats in result["difference"].items():
        for m, s in stats.items():
            out.update({f"diff_d{d}_{m}_{k}": s[k] for k in ("mean", "ci_low", "ci_high")})
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}
