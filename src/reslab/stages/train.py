"""DVC stages `train_baseline@<seed>` / `train_resnet@<seed>`: one training run per replicate seed, resumable,
recorded in MLflow as a child of the role's family run. It reads its replicate's train and val splits only
(kfold: the rows of artifacts/replicates/seed_<seed>.csv; holdout: the shared split), never its test split.

Outputs per (role, seed): models/<role>/seed_<seed>.pt (weights, weights_only-loadable),
metrics/train_<role>/seed_<seed>.json, plots/train_<role>/seed_<seed>.csv. They hold only what a rerun reproduces
bit for bit (no wall-clock times, no run ids): timings go to MLflow, and the MLflow run is found again from the
weights file's hash (its `weights_sha256` tag; `tracking.training_run.find_training_run`). Resume state lives in
.reslab/checkpoints/train_<role>/ (the checkpoint seed_<seed>.pt and the MLflow run ledger seed_<seed>.mlflow.json),
outside DVC's outputs (DVC deletes a stage's outputs before running it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import pandas as pd
from torch import nn

from ..config import Params, load_params, resolve
from ..data.augment import BatchAugment
from ..data.prepared import load_train_val
from ..data.splitting import read_replicate_split, replicate_split_file
from ..layout import Layout
from ..models.serialization import save_model_file
from ..tracking import check_store
from ..tracking.resume import RunResume
from ..tracking.store import setup
from ..tracking.training_run import TrainingRun, training_run
from ..training import (FitResult, augmented_examples, fingerprint, resumable_state, setup_runtime, train_classifier,
                        training_params)


def stage_params(params: Params, role: str) -> dict:
    """Exactly the params this stage reads (and declares in dvc.yaml), its replicate seed aside."""
    stage = params.model_stage(role)
    out = {"data": asdict(params.data), "train": asdict(params.train), f"train_{role}": asdict(stage),
           # design: where the replicate's train/val come from (how many stages run at once is not a param)
           "replicates": {"design": params.replicates.design}}
    if stage.augment:
        out["augment"] = asdict(params.augment)
    return out


def family_fingerprint(params: Params, role: str, prepared_dir: Path) -> str:
    """What a role's replicates share (config and data, whatever the seed): their MLflow family run's key."""
    return fingerprint(stage_params(params, role), prepared_dir)


def split_table(layout: Layout, seed: int, split: str) -> tuple[pd.DataFrame, Path]:
    """The rows of one split of the replicate (MLflow's dataset input) and the file they come from: the
    replicate's own split file in either design, the stage's declared dependency."""
    table = read_replicate_split(layout.replicate_splits, seed)
    return table[table["split"] == split].reset_index(drop=True), replicate_split_file(layout.replicate_splits, seed)


TIMING = ("epoch_time_s",)  # history columns that differ between identical runs: MLflow only, not DVC outputs


def training_summary(model: nn.Module, result: FitResult) -> dict:
    """metrics/train_<role>.json: the best epoch's validation figures, the budget used and the model's size (what
    a rerun reproduces; the training time is logged to MLflow beside it)."""
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    return {"best_epoch": result.best_epoch, "epochs_trained": len(result.history),
            "stopped_early": result.stopped_early, "best_val_loss": best["val_loss"],
            "best_val_accuracy": best["val_accuracy"],
            "n_parameters": sum(p.numel() for p in model.parameters())}


def after_epoch(run: TrainingRun, remote: RunResume | None, checkpoint: Path, row: dict[str, float]) -> None:
    """The training loop's `on_epoch_end` (the epoch's checkpoint is written): log the epoch, then, for a replicate
    that may resume elsewhere, upload the checkpoint."""
    run.log_epoch(row)
    if remote is not None:
        remote.keep(checkpoint)


def main(root: Path, params_file: Path, role: str, seed: int | None = None, progress: bool = True) -> dict:
    """Train `role`'s model once per training seed: `seed`, or every seed of replicates.seeds when None."""
    params = load_params(params_file)
    seeds = list(params.replicates.seeds) if seed is None else [seed]
    return {s: train_replicate(root, params, role, s, progress)[0] for s in seeds}


def train_replicate(root: Path, params: Params, role: str, seed: int, progress: bool = True, *,
                    remote: RunResume | None = None, tags: dict[str, str] | None = None,
                    run_name: str | None = None, parent: str | None = None) -> tuple[dict, str]:
    """DVC stage instance train_<role>@<seed>: one resumable training run, recorded in MLflow. Returns the
    summary (metrics/train_<role>/seed_<seed>.json) and the MLflow run's id.

    The keyword arguments are the Ray executor's (`cluster.py`), which runs the replicate in a scratch copy of its
    inputs on any machine: `remote` keeps the resume state in the MLflow run rather than only under `root`; `tags`
    (the coordinator's git commit, data version, ...) win over those read from `root`; `run_name` names the run;
    `parent` is the family run the coordinator created."""
    check_store(root)  # a tracking server that is down fails the stage now, not after loading data and training
    layout = Layout(root)
    name = f"train_{role}"
    # train.num_threads torch threads whoever runs the stage (dvc repro, reslab repro --jobs N, a DVC queue worker),
    # so that scheduling never changes the numbers; `reslab repro` warns when its stages oversubscribe the cores
    config = resolve(params, role, seed)
    precision = setup_runtime(config.runtime, who=f"{name}@{seed}")
    design = params.replicates.design
    train, val = load_train_val(layout.prepared_dir, layout.replicate_splits, design, seed)
    sp = stage_params(params, role)
    family = family_fingerprint(params, role, layout.prepared_dir)
    rows = {}  # kfold: the replicate's own split, which differs with the seed
    if design == "kfold":
        split_file = replicate_split_file(layout.replicate_splits, seed)
        rows = {"split_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest()}
    fp = fingerprint({**sp, "replicate_seed": seed, **rows}, layout.prepared_dir)
    ckpt = layout.replicate_checkpoint(role, seed)
    ledger = ckpt.with_suffix(".mlflow.json")
    if remote is not None:  # an earlier attempt on another machine: its run and last checkpoint
        remote.restore(setup(root, params.mlflow.experiment_name), fp, ckpt, ledger)
    prior = resumable_state(ckpt, fp)
    done = prior["history"] if prior else []

    run_tags = {"model": config.model, "role": role, "precision": precision.name, "device": str(precision.device),
                **(remote.tags(fp) if remote is not None else {}), **(tags or {})}
    with training_run(root, params.mlflow.experiment_name, stage=name, seed=seed, ledger=ledger, fingerprint=fp,
                      family=family, tags=run_tags, run_name=run_name, parent=parent) as run:
        if done or run.resumed:
            print(f"{name}@{seed}: resuming after epoch {len(done)} in MLflow run {run.run_id}")
        run.catch_up(done)  # epochs checkpointed but killed before they were logged
        if not run.inputs_logged:
            augment = BatchAugment(config.augment) if config.augment is not None else None
            images, names = augmented_examples(train, augment, 16, config.seed)
            run.log_inputs(training_params(config), {split: split_table(layout, seed, split)
                                                     + (context,) for split, context in (("train", "training"),
                                                                                         ("val", "validation"))},
                           (images.numpy(), names), title=f"{name}@{seed}: training images as the model sees them")
        model, result = train_classifier(config, train, val, precision=precision, checkpoint=ckpt, fingerprint=fp,
                                         extra={"mlflow_run_id": run.run_id},
                                         on_epoch_end=partial(after_epoch, run, remote, ckpt),
                                         progress=progress)
        summary = training_summary(model, result)
        train_time_s = round(sum(r["epoch_time_s"] for r in result.history), 2)
        model_file = layout.replicate_model(role, seed)
        model_file.parent.mkdir(parents=True, exist_ok=True)
        save_model_file(model_file, model, name=config.model, model_args=config.model_args, classes=train.classes,
                        image_size=config.image_size, extra={"role": role, "seed": seed})
        run.log_result({**summary, "train_time_s": train_time_s}, result.history, model_file=model_file,
                       title=f"{name}@{seed} ({config.model})")
        for path in (layout.replicate_metrics(role, seed), layout.replicate_history(role, seed)):
            path.parent.mkdir(parents=True, exist_ok=True)
        layout.replicate_metrics(role, seed).write_text(json.dumps(summary, indent=2) + "\n")
        pd.DataFrame(result.history).drop(columns=list(TIMING)).to_csv(layout.replicate_history(role, seed),
                                                                       index=False)
    ckpt.unlink(missing_ok=True)  # finished: a forced rerun starts fresh
    ledger.unlink(missing_ok=True)
    print(f"{name}@{seed}: {config.model} best val_accuracy {summary['best_val_accuracy']:.4f} at epoch "
          f"{result.best_epoch} ({len(result.history)} epochs, {'early stopping' if result.stopped_early else 'cap'}, "
          f"{train_time_s:.0f}s, {precision.name}); MLflow run {run.run_id}")
    return summary, run.run_id
