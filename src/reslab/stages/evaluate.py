"""DVC stage `evaluate`: every (role, seed) model on its test split (kfold: its fold; holdout: the shared one), the
replicated comparison, figures,
and the `@champion` alias (chosen on validation scores; moved only by `dvc repro` in the workspace, never by an
experiment).

Outputs: metrics/evaluate.json, plots/evaluate/{confusion_<role>,learning_curves,predictions}.csv,
reports/comparison.md,
reports/figures/*.png.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import plots, statistics, tracking
from ..comparison import ROLE_NAMES, Replicate, compare, comparison_markdown, metrics_summary
from ..config import Params, flatten, load_params, resolve_runtime
from ..data.prepared import ALL, ImageArrays, load_prepared, load_replicate, replicate_rows
from ..layout import ROLES, Layout
from ..models.serialization import load_model_file
from ..tracking.evaluation_run import evaluation_run
from ..tracking.training_run import find_training_run
from ..training import ArrayLoader, Precision, predict_logits, setup_runtime, to_device


def load_replicates(layout: Layout, params: Params, precision: Precision,
                    experiment_id: str) -> tuple[dict[str, list[Replicate]], np.ndarray | None, ImageArrays]:
    """Every replicate's model and training summary (validation figures only) and its logits on its own test split.

    Returns:
        (replicates per role; the shared test labels (holdout) or None (kfold: each replicate holds its fold's);
         the images the replicates were tested on: holdout the test split, kfold every image of the data set).
    """
    reps_cfg = params.replicates
    kfold = reps_cfg.design == "kfold"
    shared = load_prepared(layout.prepared_dir, ALL if kfold else "test")
    replicates: dict[str, list[Replicate]] = {role: [] for role in ROLES}
    labels = None if kfold else np.asarray(shared.labels)
    for role in ROLES:
        for j, seed in enumerate(reps_cfg.seeds):
            path = layout.replicate_model(role, seed)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no model for train_{role}@{seed}; run `dvc repro` "
                                        f"(replicates.seeds lists {list(reps_cfg.seeds)})")
            model, meta = load_model_file(path, precision.device)
            if meta["classes"] != shared.classes:
                raise ValueError(f"{path}: trained on classes {meta['classes']}, but the test split has "
                                 f"{shared.classes}; rerun `dvc repro`")
            rows = replicate_rows(layout.replicate_splits, seed, "test") if kfold else None
            test = load_replicate(layout.prepared_dir, layout.replicate_splits, reps_cfg.design, seed, "test")
            loader = ArrayLoader(test, 256, shuffle=False, device=precision.device)
            logits, test_labels = predict_logits(to_device(model, precision), loader, precision)
            run_id, model_uri = find_training_run(experiment_id, f"train_{role}", path) or (None, None)
            train = json.loads(layout.replicate_metrics(role, seed).read_text())
            repeat, fold = divmod(j, reps_cfg.folds) if kfold else (0, 0)
            replicates[role].append(Replicate(role=role, seed=seed, model=meta["model"], run_id=run_id,
                                              model_uri=model_uri, train=train, logits=logits,
                                              labels=test_labels if kfold else None, rows=rows, repeat=repeat,
                                              fold=fold))
    return replicates, labels, shared


def replicate_labels(r: Replicate, labels: np.ndarray | None) -> np.ndarray:
    """The labels of the images replicate `r` was tested on."""
    return labels if r.labels is None else r.labels


def mean_curves(layout: Layout, seeds: tuple[int, ...]) -> tuple[pd.DataFrame, dict[str, list[list[dict]]]]:
    """Per-epoch means over replicates (the DVC plot: one line per role) and the raw histories (the figure)."""
    histories = {role: [pd.read_csv(layout.replicate_history(role, s)) for s in seeds] for role in ROLES}
    columns = []
    for role, frames in histories.items():
        mean = pd.concat(frames).groupby("epoch")[["train_loss", "val_loss", "val_accuracy"]].mean()
        columns.append(mean.add_prefix(f"{role}_"))
    curves = pd.concat(columns, axis=1).reset_index()
    return curves, {ROLE_NAMES[role]: [f.to_dict("records") for f in frames] for role, frames in histories.items()}


def figures(result: dict, replicates: dict[str, list[Replicate]], labels: np.ndarray | None, test: ImageArrays,
            histories: dict[str, list[list[dict]]], params: Params) -> dict:
    """The report's figures: replicates (strip/forest), learning curves over seeds, confusion matrices summed over
    replicates, and the study's prediction figure for the best replicate (by validation) of each role (kfold: of
    each image, the repeat-0 replicate whose fold held it)."""
    c, names = result["comparison"], ROLE_NAMES
    interval = c["interval"]
    out = {"replicates.png": plots.replicate_strip_plot(
        c["accuracy_a"], c["accuracy_b"], name_a=names["baseline"], name_b=names["resnet"],
        difference_interval=(interval["ci_low"], interval["ci_high"]),
        difference_label=f"{interval['confidence'] * 100:.0f} % CI (training + test sampling)",
        replicate_labels=[f"seed {s}" for s in result["seeds"]], title="Test accuracy per replicate (training seed)"),
        "learning_curves.png": plots.replicate_learning_curves(histories, band="minmax",
                                                               title="Validation curves over training seeds")}
    for role, reps in replicates.items():
        cm = sum(statistics.confusion_matrix(replicate_labels(r, labels), r.logits.argmax(1), len(test.classes))
                 for r in reps)
        out[f"confusion_{role}.png"] = plots.confusion_matrix_figure(
            cm, test.classes, title=f"{role} ({reps[0].model}) on the test split, {len(reps)} replicates summed")
    pick = np.random.default_rng(params.seed).choice(len(test), size=min(params.evaluate.n_prediction_examples,
                                                                         len(test)), replace=False)
    pick.sort()
    if labels is None:  # kfold: every image's logits from the repeat-0 replicate that tested it
        truth = np.asarray(test.labels)
        logits = {}
        for role, reps in replicates.items():
            full = np.zeros((len(test), reps[0].logits.shape[1]), np.float32)
            for r in reps:
                if r.repeat == 0:
                    full[r.rows] = r.logits
            logits[f"{role} (its fold's model)"] = full
    else:
        truth = labels
        best = {role: max(reps, key=lambda r: r.train["best_val_accuracy"]) for role, reps in replicates.items()}
        logits = {f"{role} seed {r.seed}": r.logits for role, r in best.items()}
    probs = {name: torch.softmax(torch.from_numpy(x[pick]).float(), 1).numpy() for name, x in logits.items()}
    out["predictions.png"] = plots.prediction_figure(np.asarray(test.images[pick]),
                                                     [test.classes[i] for i in truth[pick]], probs, test.classes)
    return out


def write_outputs(layout: Layout, result: dict, replicates: dict[str, list[Replicate]], labels: np.ndarray | None,
                  test: ImageArrays, curves: pd.DataFrame, figs: dict, promoted: str) -> None:
    """The files DVC tracks: metrics, plots data, the report and its figures."""
    layout.metrics.mkdir(parents=True, exist_ok=True)
    (layout.metrics / "evaluate.json").write_text(json.dumps(metrics_summary(result), indent=2) + "\n")
    (layout.plots / "evaluate").mkdir(parents=True, exist_ok=True)
    curves.to_csv(layout.plots / "evaluate" / "learning_curves.csv", index=False)
    predictions = []
    for role, reps in replicates.items():  # every replicate's predictions: the confusion template counts them
        for r in reps:
            truth = replicate_labels(r, labels)
            predictions.append(pd.DataFrame({
                "role": role, "seed": r.seed, "repeat": r.repeat, "fold": r.fold,
                "image": r.rows if r.rows is not None else np.arange(len(truth)),
                "actual": [test.classes[i] for i in truth],
                "predicted": [test.classes[i] for i in r.logits.argmax(1)]}))
        pd.concat(predictions[-len(reps):])[["actual", "predicted"]].to_csv(
            layout.plots / "evaluate" / f"confusion_{role}.csv", index=False)
    # image: the row of artifacts/split/images.csv (kfold) or test.csv (holdout); kfold: one per image, repeat, model
    pd.concat(predictions).to_csv(layout.plots / "evaluate" / "predictions.csv", index=False)
    layout.figures.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        plots.save_figure(fig, layout.figures / name)
    (layout.reports / "comparison.md").write_text(comparison_markdown(result, promoted))


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    # a tracking server that is down fails the stage before the test-split inference; the training runs are found
    # in this experiment
    experiment_id = tracking.setup(root, params.mlflow.experiment_name)
    layout = Layout(root)
    precision = setup_runtime(resolve_runtime(params), who="evaluate")
    replicates, labels, test = load_replicates(layout, params, precision, experiment_id)
    kfold = params.replicates.design == "kfold"
    result = compare(replicates, labels, test.classes, params.evaluate, params.seed,
                     **({"n_images": len(test), "folds": params.replicates.folds} if kfold else {}))
    curves, histories = mean_curves(layout, params.replicates.seeds)
    figs = figures(result, replicates, labels, test, histories, params)
    experiment = os.environ.get("DVC_EXP_NAME")
    champion = result["champion"]
    untracked = [f"train_{r.role}@{r.seed}" for reps in replicates.values() for r in reps if r.run_id is None]
    if untracked:  # models from elsewhere (dvc pull, another store): compared all the same, their runs not updated
        print(f"evaluate: warning: no FINISHED run in this MLflow store produced the model files of "
              f"{', '.join(untracked)} (matched by their weights' SHA-256): their test metrics are not logged to a "
              "training run, and such a champion is not promoted. Point MLFLOW_TRACKING_URI at the store they were "
              "trained in, or retrain them (dvc repro --force <stage>).", file=sys.stderr)
    promoted = (f"Not promoted: this is the DVC experiment {experiment!r}; only `dvc repro` in the workspace moves "
                "@champion." if experiment else
                "Not promoted: this MLflow store holds no training run of the champion's model file."
                if champion["run_id"] is None else
                f"Promoted to @champion of the registered model '{params.mlflow.registered_model_name}'.")
    write_outputs(layout, result, replicates, labels, test, curves, figs, promoted)

    # MLflow: the evaluation run holds the aggregate metrics, report and figures; every training run gets its own
    # test metrics. The ledger lets the next start mark this run KILLED if a kill ends the stage before the run does.
    summary = metrics_summary(result)
    tags = {"champion": champion["role"], "champion_seed": str(champion["seed"]),
            "verdict": summary["comparison"]["verdict"]}
    with evaluation_run(root, params.mlflow.experiment_name, ledger=layout.checkpoints / "evaluate.mlflow.json",
                        tags=tags) as run:
        run.log_inputs(flatten({"seed": params.seed, "replicates.seeds": list(params.replicates.seeds),
                                "replicates.design": params.replicates.design,
                                **({"replicates.folds": params.replicates.folds} if kfold else {}),
                                "evaluate": vars(params.evaluate)}), layout.split_dir)
        metrics = {f"{role}_test_{k}": v for role in ROLES for k, v in summary[role].items()
                   if isinstance(v, (int, float)) and v is not None}
        metrics.update({k: float(v) for k, v in summary["comparison"].items()
                        if isinstance(v, (int, float)) and v is not None})
        run.log_result(metrics, files=[layout.reports / "comparison.md", layout.metrics / "evaluate.json"],
                       figures=[layout.figures / name for name in figs])
    test_keys = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "loss", "macro_f1")
    run.log_replicate_metrics({row["run_id"]: {f"test_{k}": row[k] for k in test_keys}
                               for m in result["models"].values() for row in m["replicates"] if row["run_id"]})
    print(comparison_markdown(result, promoted).split("## Per replicate")[0].rstrip())
    if experiment or champion["run_id"] is None:
        why = f"DVC experiment {experiment}" if experiment else "no training run of it in this store"
        print(f"\nchampion: {champion['role']} seed {champion['seed']} (not promoted: {why})")
    else:
        version = run.promote(champion["model_uri"], params.mlflow.registered_model_name, champion["run_id"])
        print(f"\nchampion: {champion['role']} seed {champion['seed']} -> registered model "
              f"'{params.mlflow.registered_model_name}' version {version} (alias @champion); evaluation run "
              f"{run.run_id}")
    return result
