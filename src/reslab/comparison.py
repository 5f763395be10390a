"""The replicated comparison: every (role, seed) model on its test split, aggregated over replicates, and the
champion.

Pure functions on arrays and dicts; the evaluate stage reads the files, calls `compare`, and writes the results.
Replicate k of both models shares its training seed and split (holdout: one fixed split; kfold: fold k % folds of
repeat k // folds, so every image is tested once per repeat), so the two models are compared pairwise per
replicate, and the headline interval, from the design's variance model (statistics.design), covers training
variance as well as test-set sampling (Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks",
MLSys 2021; Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import statistics
from .config import EvaluateConfig

ROLE_NAMES = {"baseline": "CNN", "resnet": "ResNet"}  # how the verdict names the two roles
CHAMPION_RULE = ("@champion is chosen without the test split: the model family with the higher mean best-epoch "
                 "validation accuracy over its replicates (ties: lower mean validation loss), then, inside it, the "
                 "replicate with the highest validation accuracy (ties: lower validation loss, then lower seed).")


@dataclass(frozen=True)
class Replicate:
    """One trained model of the study, as the evaluate stage found it.

    Args:
        role: baseline | resnet.
        seed: its training seed.
        model: registry name of the architecture.
        run_id: its MLflow training run (None: none in this store produced its model file).
        model_uri: its logged MLflow model (None likewise).
        train: the training stage's summary (best_epoch, epochs_trained, stopped_early, best_val_accuracy,
            best_val_loss, ...): validation figures only.
        logits: (N, C) logits on its test split (kfold: its fold).
        labels: (N,) labels of its test split; None: the shared `labels` passed to `compare` (holdout).
        rows: kfold: (N,) indices of its test images among all the data set's images.
        repeat: kfold: its repeat.
        fold: kfold: its fold.
    """

    role: str
    seed: int
    model: str
    run_id: str | None
    model_uri: str | None
    train: dict[str, Any]
    logits: np.ndarray
    labels: np.ndarray | None = None
    rows: np.ndarray | None = None
    repeat: int = 0
    fold: int = 0


def test_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy (with Wilson CI), loss, macro-F1 and per-class precision/recall/F1 of one model."""
    pred = logits.argmax(1)
    report = statistics.classification_report(labels, pred, classes)
    lo, hi = statistics.accuracy_ci(pred == labels)
    loss = F.cross_entropy(torch.from_numpy(logits).float(), torch.from_numpy(labels).long()).item()
    return {"accuracy": report["accuracy"], "accuracy_ci_low": lo, "accuracy_ci_high": hi, "loss": loss,
            "macro_f1": report["macro_f1"], "macro_precision": report["macro_precision"],
            "macro_recall": report["macro_recall"], "per_class": report["per_class"]}


def ended_by(train: dict) -> str:
    """What ended a replicate's training: early stopping, or the epoch cap (train.epochs)."""
    return "early stopping" if train.get("stopped_early") else "epoch cap"


def choose_champion(replicates: dict[str, list[Replicate]]) -> dict:
    """The model family, then the replicate, with the best validation score; the test split plays no part."""
    def mean(role: str, key: str) -> float:
        return float(np.mean([r.train[key] for r in replicates[role]]))

    family = min(replicates, key=lambda role: (-mean(role, "best_val_accuracy"), mean(role, "best_val_loss")))
    best = min(replicates[family], key=lambda r: (-r.train["best_val_accuracy"], r.train["best_val_loss"], r.seed))
    return {"role": family, "seed": best.seed, "run_id": best.run_id, "model_uri": best.model_uri,
            "mean_val_accuracy": {role: mean(role, "best_val_accuracy") for role in replicates},
            "val_accuracy": best.train["best_val_accuracy"], "rule": CHAMPION_RULE}


def _summary(values: list[float], confidence: float) -> dict:
    return statistics.replicate_summary(np.asarray(values, float), confidence)


def correctness(reps: list[Replicate], labels: np.ndarray | None, n_images: int | None) -> tuple[np.ndarray, Any]:
    """The (rows, N) correctness matrix of one role and, for kfold (`n_images` set), the (repeats, N) folds.

    holdout: row k is replicate k on the shared test split. kfold: row r is repeat r, every one of the `n_images`
    images predicted by the replicate whose fold held it.
    """
    if n_images is None:
        return np.stack([r.logits.argmax(1) == labels for r in reps]), None
    repeats = max(r.repeat for r in reps) + 1
    correct = np.zeros((repeats, n_images), bool)
    folds = np.full((repeats, n_images), -1)
    for r in reps:
        correct[r.repeat, r.rows] = r.logits.argmax(1) == r.labels
        folds[r.repeat, r.rows] = r.fold
    if (folds < 0).any():
        raise ValueError("kfold: some images were tested by no replicate of their repeat; rerun `dvc repro`")
    return correct, folds


def compare(replicates: dict[str, list[Replicate]], labels: np.ndarray | None, classes: list[str],
            cfg: EvaluateConfig, seed: int, *, n_images: int | None = None, folds: int | None = None) -> dict:
    """Per-replicate and aggregate test metrics of both roles, the replicated ResNet - CNN comparison, the champion.

    Args:
        replicates: {"baseline": [...], "resnet": [...]}, the same seeds in the same order for both roles.
        labels: (N,) test labels (holdout); None for kfold, where each replicate holds its fold's.
        classes: class names.
        cfg: the evaluate section (bootstrap resamples, confidence).
        seed: seeds every bootstrap.
        n_images: kfold only: the images of the data set (each tested once per repeat).
        folds: kfold only: k.
    """
    seeds = {role: [r.seed for r in reps] for role, reps in replicates.items()}
    if seeds["baseline"] != seeds["resnet"]:
        raise ValueError(f"the two roles were trained with different seeds: {seeds}")
    models: dict[str, dict] = {}
    correct: dict[str, np.ndarray] = {}
    for role, reps in replicates.items():
        rows = []
        for r in reps:
            m = test_metrics(r.logits, labels if r.labels is None else r.labels, classes)
            rows.append({"seed": r.seed, "repeat": r.repeat, "fold": r.fold, "n_test": len(r.logits),
                         "run_id": r.run_id, "epochs_trained": int(r.train["epochs_trained"]),
                         "best_epoch": int(r.train["best_epoch"]), "ended_by": ended_by(r.train),
                         "val_accuracy": float(r.train["best_val_accuracy"]),
                         "val_loss": float(r.train["best_val_loss"]), **m})
        correct[role], fold_of = correctness(reps, labels, n_images)
        per_class = {c: float(np.mean([row["per_class"][c]["f1"] for row in rows])) for c in classes}
        models[role] = {
            "model": reps[0].model, "replicates": rows, "per_class_f1": per_class,
            "cap_bound": sum(row["ended_by"] == "epoch cap" for row in rows),
            "summary": {key: _summary([row[key] for row in rows], cfg.confidence)
                        for key in ("accuracy", "macro_f1", "loss", "val_accuracy", "epochs_trained")},
        }
    comparison = statistics.compare_replicates(correct["baseline"], correct["resnet"], name_a=ROLE_NAMES["baseline"],
                                               name_b=ROLE_NAMES["resnet"], n_resamples=cfg.n_bootstrap,
                                               confidence=cfg.confidence, seed=seed,
                                               design="holdout" if n_images is None else "kfold", folds=fold_of)
    design = ({"design": "holdout"} if n_images is None else
              {"design": "kfold", "folds": folds, "repeats": int(fold_of.shape[0])})
    return {"n_test": int(len(labels)) if n_images is None else n_images, "seeds": seeds["baseline"],
            "design": design, "models": models, "comparison": comparison, "champion": choose_champion(replicates)}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def metrics_summary(result: dict) -> dict:
    """metrics/evaluate.json: what `dvc metrics show/diff` and `dvc exp show` compare (no per-class detail, no NaN).
    The answer comes first, as the first columns of `dvc exp show`: the verdict, ResNet - CNN with its interval and
    each model's mean test accuracy; then the details."""
    c = result["comparison"]
    interval, models = c["interval"], result["models"]
    out: dict[str, Any] = {
        "verdict": c["verdict"]["label"], "resnet_minus_baseline": interval["diff"], "ci_low": interval["ci_low"],
        "ci_high": interval["ci_high"],
        **{f"{role}_accuracy": m["summary"]["accuracy"]["mean"] for role, m in models.items()},
        "n_test": result["n_test"], "n_replicates": c["n_replicates"], **result["design"]}
    for role, m in result["models"].items():
        s = m["summary"]
        out[role] = {"accuracy_mean": s["accuracy"]["mean"], "accuracy_sd": s["accuracy"]["sd"],
                     "accuracy_ci_low": s["accuracy"]["ci_low"], "accuracy_ci_high": s["accuracy"]["ci_high"],
                     "macro_f1_mean": s["macro_f1"]["mean"], "loss_mean": s["loss"]["mean"],
                     "val_accuracy_mean": s["val_accuracy"]["mean"], "epochs_trained_mean": s["epochs_trained"]["mean"],
                     "cap_bound": m["cap_bound"],
                     "per_replicate": {str(r["seed"]): {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                                                        "loss": r["loss"], "n_test": r["n_test"]}
                                       for r in m["replicates"]}}
    boot, poi, signs, interval = c["bootstrap"], c["probability_of_improvement"], c["sign_count"], c["interval"]
    verdict = c["verdict"]
    out["comparison"] = {
        "verdict": verdict["label"], "accuracy_diff_resnet_minus_baseline": interval["diff"],
        "ci_low": interval["ci_low"], "ci_high": interval["ci_high"], "se": interval["se"], "df": interval["df"],
        "design": interval["design"], "minimum_detectable_difference": verdict["minimum_detectable_difference"],
        "mde_floor": verdict["mde"].get("floor"),
        "probability_of_improvement": poi["probability"], "probability_ci_low": poi["ci_low"],
        "probability_ci_high": poi["ci_high"], "probability_p_value": poi["p_value"],
        "resnet_better_in": signs["n_b_better"], "baseline_better_in": signs["n_a_better"], "ties": signs["n_ties"],
        "bootstrap_ci_low": boot["ci_low"], "bootstrap_ci_high": boot["ci_high"],
        "test_only_ci_low": c["bootstrap_test_only"]["ci_low"], "test_only_ci_high": c["bootstrap_test_only"]["ci_high"],
        "confidence": interval["confidence"], "n_resamples": boot["n_resamples"]}
    ch = result["champion"]
    out["champion"] = {"role": ch["role"], "seed": ch["seed"]}
    return _clean(out)


def _ci(s: dict) -> str:
    if s["ci_low"] is None or not math.isfinite(s["ci_low"]):
        return "n/a (1 replicate)"
    return f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"


def comparison_markdown(result: dict, promoted: str) -> str:
    """reports/comparison.md: the verdict first, then how it was reached.

    Args:
        result: `compare`'s output.
        promoted: one line on what happened to the @champion alias (promoted, or why not).
    """
    c, models = result["comparison"], result["models"]
    n, pct = c["n_replicates"], c["interval"]["confidence"] * 100
    boot, poi, signs, verdict = c["bootstrap"], c["probability_of_improvement"], c["sign_count"], c["verdict"]
    interval = c["interval"]
    seeds = ", ".join(map(str, result["seeds"]))
    d = result.get("design", {"design": "holdout"})
    if d["design"] == "kfold":
        title = f"# Plain CNN vs ResNet by {d['folds']}-fold cross-validation, over splits and training seeds"
        design = (f"Design: repeated stratified {d['folds']}-fold cross-validation, {d['repeats']} repeat(s) x "
                  f"{d['folds']} folds = {n} replicates (training seeds {seeds}); replicate j is fold j % "
                  f"{d['folds']} of repeat j // {d['folds']}, tested on its fold and trained and validated on the "
                  f"other folds, so each of the {result['n_test']} images is tested once per repeat by a model "
                  "that never saw it (its fold was never used for training, early stopping, tuning or choosing "
                  "the champion). Replicate j of both models shares its seed and split. The interval covers "
                  "training variance (seed and split) and the sampling of the images.")
        where = "on its fold"
    else:
        title = "# Plain CNN vs ResNet on the held-out test split, over training seeds"
        design = (f"Design: holdout. Test images: {result['n_test']} (never used for training, early stopping, "
                  f"tuning or choosing the champion). Replicates: {n} training seeds ({seeds}); replicate k of both "
                  "models shares its seed and the one fixed split, whose own luck no interval covers.")
        where = "on these test images"
    lines = [title, "", f"**Verdict: {verdict['label']}.** {verdict['sentence']}", "", design, "",
             "## Each model over its replicates", "",
             f"The mean's interval (t over the replicates, each scored {where}) covers training variance; a single "
             f"run's Wilson interval covers the sampling of its test images for one replicate.", "",
             f"| role | model | test accuracy, mean ± sd | {pct:.0f} % CI of the mean over seeds (t) | one run's "
             f"{pct:.0f} % Wilson CI (mean bounds) | macro-F1 | test loss | val accuracy | epochs | ended by the cap |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for role, m in models.items():
        s = m["summary"]
        sd = s["accuracy"]["sd"]
        sd_text = f" ± {sd:.4f}" if sd is not None and math.isfinite(sd) else ""
        wilson = (float(np.mean([r["accuracy_ci_low"] for r in m["replicates"]])),
                  float(np.mean([r["accuracy_ci_high"] for r in m["replicates"]])))
        lines.append(f"| {role} | {m['model']} | {s['accuracy']['mean']:.4f}{sd_text} | {_ci(s['accuracy'])} | "
                     f"[{wilson[0]:.4f}, {wilson[1]:.4f}] | {s['macro_f1']['mean']:.4f} | {s['loss']['mean']:.4f} | "
                     f"{s['val_accuracy']['mean']:.4f} | {s['epochs_trained']['mean']:.1f} | {m['cap_bound']} of {n} |")
    comps = interval["components"]
    parts = ", ".join(f"{name} {value:.2e}" for name, value in comps.items() if math.isfinite(value))
    df = interval["df"]
    lines += ["", "## ResNet − CNN", "",
              f"- mean paired difference in test accuracy: **{interval['diff']:+.4f}**, {pct:.0f} % CI "
              f"[{interval['ci_low']:+.4f}, {interval['ci_high']:+.4f}] (se {interval['se']:.4f}, "
              f"{df:.1f} df; covers {interval['covers']}; the verdict reads this interval)",
              f"- its variance model ({interval['design']}): per-cell components {parts or 'n/a'} "
              "(replicate: training; image: the model × image effect of the test images; residual: per-image "
              "noise)",
              f"- probability of improvement P(ResNet > CNN) over the replicates: {poi['probability']:.2f}, "
              f"{pct:.0f} % CI [{poi['ci_low']:.2f}, {poi['ci_high']:.2f}] (Newcombe), Mann-Whitney p "
              f"{poi['p_value']:.3g} ({poi['p_method']}); conditional on these test images",
              f"- the ResNet was better in {signs['n_b_better']} of {signs['n']} replicates, the CNN in "
              f"{signs['n_a_better']}, ties {signs['n_ties']}"]
    mde = verdict["mde"]
    if math.isfinite(mde["now"]):
        floor = mde.get("floor", math.nan)
        lines.append(f"- smallest difference this design could detect (80 % power): {mde['now']:.4f}"
                     + (f"; floor set by the {result['n_test']} test images: {floor:.4f}" if math.isfinite(floor)
                        else ""))
    lines.append(f"- for contrast, neither read by the verdict: test-set sampling alone (bootstrap over images) "
                 f"[{c['bootstrap_test_only']['ci_low']:+.4f}, {c['bootstrap_test_only']['ci_high']:+.4f}]; a "
                 f"two-level bootstrap over replicates and images [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] "
                 f"({boot['n_resamples']} resamples; it counts per-image noise twice and is too narrow with few "
                 "replicates, so it is miscalibrated both ways)")
    lines += ["", f"Rule: {verdict['rule']}", "",
              "## Per replicate", "",
              f"| {'seed (repeat, fold)' if d['design'] == 'kfold' else 'seed'} | CNN test acc | ResNet test acc | "
              "ResNet − CNN | McNemar p | CNN epochs (best, ended by) | ResNet epochs (best, ended by) |",
              "|---:|---:|---:|---:|---:|---|---|"]
    for k, (a, b) in enumerate(zip(models["baseline"]["replicates"], models["resnet"]["replicates"])):
        where = f" ({a['repeat']}, {a['fold']})" if d["design"] == "kfold" else ""
        lines.append(f"| {a['seed']}{where} | {a['accuracy']:.4f} | {b['accuracy']:.4f} | "
                     f"{b['accuracy'] - a['accuracy']:+.4f} "
                     f"| {c['mcnemar'][k]['p_value']:.3g} | {a['epochs_trained']} ({a['best_epoch']}, "
                     f"{a['ended_by']}) | {b['epochs_trained']} ({b['best_epoch']}, {b['ended_by']}) |")
    ch = result["champion"]
    lines += ["", "McNemar p-values are per replicate (test-set sampling only, one training run each); read them "
              "as a table of single runs, not as the verdict.", "",
              "## Champion", "", f"{ch['role']} seed {ch['seed']} (validation accuracy {ch['val_accuracy']:.4f}). "
              f"{promoted}", "", CHAMPION_RULE, "",
              "## Per-class F1 (mean over replicates)", "", "| class | " + " | ".join(models) + " |",
              "|---|" + "---:|" * len(models)]
    for name in models["baseline"]["per_class_f1"]:
        lines.append(f"| {name} | " + " | ".join(f"{m['per_class_f1'][name]:.3f}" for m in models.values()) + " |")
    return "\n".join(lines) + "\n"

