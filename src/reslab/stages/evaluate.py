"""DVC stage `evaluate`: both models on the held-out test split, the paired comparison, figures, champion alias.

Outputs: metrics/evaluate.json, plots/evaluate/confusion_<role>.csv, reports/comparison.md, reports/figures/*.png.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import plots, statistics, tracking
from ..config import EvaluateConfig, flatten, load_params
from ..data.prepared import ImageArrays, load_prepared
from ..layout import ROLES, Layout
from ..models.serialization import load_model_file
from ..training import (ArrayLoader, default_threads, predict_logits, resolve_device, resolve_precision,
                        to_device)


def test_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy (with Wilson CI), loss, macro-F1 and per-class precision/recall/F1 of one model."""
    pred = logits.argmax(1)
    report = statistics.classification_report(labels, pred, classes)
    lo, hi = statistics.accuracy_ci(pred == labels)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"accuracy": report["accuracy"], "accuracy_ci_low": lo, "accuracy_ci_high": hi, "loss": loss,
            "macro_f1": report["macro_f1"], "macro_precision": report["macro_precision"],
            "macro_recall": report["macro_recall"], "per_class": report["per_class"]}


def compare(logits: dict[str, np.ndarray], labels: np.ndarray, classes: list[str], cfg: EvaluateConfig,
            seed: int) -> dict:
    """Per-model test metrics and the paired ResNet - baseline comparison on the same test images."""
    per_model = {role: test_metrics(lg, labels, classes) for role, lg in logits.items()}
    correct = {role: lg.argmax(1) == labels for role, lg in logits.items()}
    diff = statistics.paired_bootstrap_diff(correct["baseline"], correct["resnet"], n_resamples=cfg.n_bootstrap,
                                            confidence=cfg.confidence, seed=seed)
    mcnemar = statistics.mcnemar_exact(correct["baseline"], correct["resnet"])
    ranked = sorted(ROLES, key=lambda r: (per_model[r]["accuracy"], per_model[r]["macro_f1"],
                                          -per_model[r]["loss"]), reverse=True)
    return {"n_test": int(len(labels)), "models": per_model,
            "comparison": {"accuracy_diff_resnet_minus_baseline": diff["diff"], "ci_low": diff["ci_low"],
                           "ci_high": diff["ci_high"], "confidence": diff["confidence"],
                           "n_resamples": diff["n_resamples"], "mcnemar_p_value": mcnemar["p_value"],
                           "n_baseline_only_correct": mcnemar["n_a_only"],
                           "n_resnet_only_correct": mcnemar["n_b_only"]},
            "champion": ranked[0]}


def verdict(c: dict, pct: float) -> str:
    """One sentence on the paired comparison."""
    if c["ci_low"] > 0:
        return f"the ResNet is better; the {pct:.0f} % CI of the difference excludes 0"
    if c["ci_high"] < 0:
        return f"the plain CNN is better; the {pct:.0f} % CI of the difference excludes 0"
    return f"no significant difference; the {pct:.0f} % CI of the difference includes 0"


def comparison_markdown(result: dict, model_names: dict[str, str], run_ids: dict[str, str]) -> str:
    """reports/comparison.md: the table a reader looks at first."""
    c = result["comparison"]
    pct = c["confidence"] * 100
    lines = ["# Plain CNN vs ResNet on the held-out test split", "",
             f"Test images: {result['n_test']} (never used for training, early stopping or tuning).", "",
             "| role | model | test accuracy | 95 % CI (Wilson) | macro-F1 | test loss | MLflow run |",
             "|---|---|---:|---|---:|---:|---|"]
    for role, m in result["models"].items():
        lines.append(f"| {role} | {model_names[role]} | {m['accuracy']:.4f} | "
                     f"[{m['accuracy_ci_low']:.4f}, {m['accuracy_ci_high']:.4f}] | {m['macro_f1']:.4f} | "
                     f"{m['loss']:.4f} | `{run_ids.get(role, '')}` |")
    lines += ["", "## Paired comparison (same test images)", "",
              f"- accuracy difference ResNet − CNN: **{c['accuracy_diff_resnet_minus_baseline']:+.4f}**, "
              f"{pct:.0f} % paired-bootstrap CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] "
              f"({c['n_resamples']} resamples)",
              f"- exact McNemar test: p = {c['mcnemar_p_value']:.4g} (images only the CNN got right: "
              f"{c['n_baseline_only_correct']}, only the ResNet: {c['n_resnet_only_correct']})",
              f"- verdict: {verdict(c, pct)}; champion (alias @champion): **{result['champion']}**", "",
              "## Per-class F1", "", "| class | " + " | ".join(result["models"]) + " |",
              "|---|" + "---:|" * len(result["models"])]
    classes = next(iter(result["models"].values()))["per_class"]
    for name in classes:
        lines.append(f"| {name} | " + " | ".join(f"{m['per_class'][name]['f1']:.3f}"
                                                  for m in result["models"].values()) + " |")
    return "\n".join(lines) + "\n"


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    torch.set_num_threads(params.train.num_threads or default_threads())
    device = resolve_device(params.train.device)
    precision = resolve_precision(params.train.precision, device)
    test: ImageArrays = load_prepared(layout.prepared_dir, "test")
    loader = ArrayLoader(test, 256, shuffle=False, device=device)
    logits, model_names, run_info = {}, {}, {}
    for role in ROLES:
        model, meta = load_model_file(layout.model_file(role), device)
        if meta["classes"] != test.classes:
            raise ValueError(f"{layout.model_file(role)}: trained on classes {meta['classes']}, but the test split "
                             f"has {test.classes}; rerun `dvc repro`")
        logits[role], labels = predict_logits(to_device(model, precision), loader, precision)
        model_names[role] = meta["model"]
        run_info[role] = json.loads(layout.run_info(role).read_text())
    result = compare(logits, labels, test.classes, params.evaluate, params.seed)

    # files DVC tracks
    layout.metrics.mkdir(parents=True, exist_ok=True)
    summary = {role: {k: v for k, v in m.items() if k != "per_class"} for role, m in result["models"].items()}
    (layout.metrics / "evaluate.json").write_text(json.dumps(
        {**summary, "comparison": result["comparison"], "champion": result["champion"], "n_test": result["n_test"]},
        indent=2) + "\n")
    (layout.plots / "evaluate").mkdir(parents=True, exist_ok=True)
    for role, lg in logits.items():
        pd.DataFrame({"actual": [test.classes[i] for i in labels],
                      "predicted": [test.classes[i] for i in lg.argmax(1)]}).to_csv(
            layout.plots / "evaluate" / f"confusion_{role}.csv", index=False)
    layout.figures.mkdir(parents=True, exist_ok=True)
    figures = {f"confusion_{role}.png": plots.confusion_matrix_figure(
        statistics.confusion_matrix(labels, lg.argmax(1), len(test.classes)), test.classes,
        title=f"{role} ({model_names[role]}) on the test split") for role, lg in logits.items()}
    pick = np.random.default_rng(params.seed).choice(len(test), size=min(params.evaluate.n_prediction_examples,
                                                                         len(test)), replace=False)
    pick.sort()
    probs = {role: torch.softmax(torch.from_numpy(lg[pick]), 1).numpy() for role, lg in logits.items()}
    figures["predictions.png"] = plots.prediction_figure(np.asarray(test.images[pick]),
                                                         [test.classes[i] for i in labels[pick]], probs, test.classes)
    figures["comparison.png"] = plots.comparison_bar(summary)
    run_ids = {role: info["run_id"] for role, info in run_info.items()}
    (layout.reports / "comparison.md").write_text(comparison_markdown(result, model_names, run_ids))

    # MLflow: an evaluation run, test metrics inside each training run, champion alias
    experiment_id = tracking.setup(root, params.mlflow.experiment_name)
    with tracking.mlflow.start_run(experiment_id=experiment_id, run_name="evaluate") as run:
        tracking.mlflow.set_tags(tracking.standard_tags(root, stage="evaluate", champion=result["champion"]))
        tracking.log_params_flat(flatten({"seed": params.seed, "evaluate": vars(params.evaluate)}))
        tracking.mlflow.log_metrics({f"{role}_test_{k}": v for role, m in summary.items() for k, v in m.items()})
        tracking.mlflow.log_metrics({k: float(v) for k, v in result["comparison"].items()})
        tracking.mlflow.log_artifact(str(layout.reports / "comparison.md"))
        tracking.mlflow.log_artifact(str(layout.metrics / "evaluate.json"))
        for name, fig in figures.items():
            plots.save_figure(fig, layout.figures / name)
            tracking.mlflow.log_artifact(str(layout.figures / name), artifact_path="figures")
    for role, m in summary.items():
        tracking.log_metrics_to_run(run_ids[role], {f"test_{k}": v for k, v in m.items()})
    champion = result["champion"]
    version = tracking.set_champion(run_info[champion]["model_uri"], params.mlflow.registered_model_name,
                                    run_ids[champion])
    print(comparison_markdown(result, model_names, run_ids).split("## Per-class")[0].rstrip())
    print(f"\nchampion: {champion} -> registered model '{params.mlflow.registered_model_name}' version {version} "
          f"(alias @champion); evaluation run {run.info.run_id}")
    return result
