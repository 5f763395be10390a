"""DVC stages `train_baseline` / `train_resnet`: one training run each, resumable, recorded in MLflow.

Outputs per role: models/<role>.pt (weights, weights_only-loadable), models/<role>.run.json (MLflow ids),
metrics/train_<role>.json, plots/train_<role>/history.csv. Resume state lives in .reslab/checkpoints/<role>.pt,
outside DVC's outputs (DVC deletes a stage's outputs before running it).
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from .. import plots, tracking
from ..config import Params, flatten, load_params
from ..data.augment import BatchAugment
from ..data.prepared import ImageArrays, load_prepared
from ..data.splitting import read_split
from ..layout import Layout
from ..models import create_model
from ..models.serialization import save_model_file
from ..training import (ArrayLoader, FitResult, Precision, default_threads, fit, load_checkpoint, oversubscription,
                        resolve_device, resolve_precision, seed_everything, to_device)


def stage_params(params: Params, role: str) -> dict:
    """Exactly the params this stage reads (and declares in dvc.yaml)."""
    stage = getattr(params, f"train_{role}")
    out = {"seed": params.seed, "data": asdict(params.data), "train": asdict(params.train),
           f"train_{role}": asdict(stage)}
    if stage.augment:
        out["augment"] = asdict(params.augment)
    return out


def fingerprint(params: dict, prepared_dir: Path) -> str:
    """Identifies a training configuration: params + the prepared arrays' sizes and label content."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for name in ("train", "val"):
        labels = prepared_dir / f"{name}_labels.npy"
        h.update(labels.read_bytes() if labels.is_file() else b"")
        images = prepared_dir / f"{name}_images.npy"
        h.update(str(images.stat().st_size if images.is_file() else 0).encode())
    return h.hexdigest()[:16]


def augmented_examples(data: ImageArrays, augment: BatchAugment | None, n: int,
                       seed: int) -> tuple[torch.Tensor, list[str]]:
    """A fixed sample of training images as the model sees them (after augmentation), with their class names."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values.numpy()
    x = torch.from_numpy(data.images[idx]).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
    x = augment(x, torch.Generator().manual_seed(seed)) if augment else x.float() / 255
    return x, [data.classes[i] for i in data.labels[idx]]


def train_model(params: Params, role: str, train: ImageArrays, val: ImageArrays, *, precision: Precision,
                checkpoint: Path | None, fingerprint: str = "", extra: dict | None = None, on_epoch_end=None,
                should_stop=None, epochs: int | None = None, patience: int | None = None,
                progress: bool = True) -> tuple[torch.nn.Module, FitResult]:
    """Build the role's model and train it with the shared budget. Pure: no files besides the checkpoint.

    `epochs`/`patience` override train.epochs/train.patience (sweeps train a fixed number of epochs and prune with
    `should_stop` instead of early stopping)."""
    stage = getattr(params, f"train_{role}")
    seed_everything(params.seed)
    model = create_model(stage.model, num_classes=len(train.classes), image_size=params.data.image_size,
                         **stage.model_args)
    model = to_device(model, precision)
    augment = BatchAugment(params.augment) if stage.augment else None
    cfg = params.train
    train_loader = ArrayLoader(train, cfg.batch_size, shuffle=True, seed=params.seed, device=precision.device)
    val_loader = ArrayLoader(val, max(cfg.batch_size, 256), shuffle=False, device=precision.device)
    result = fit(model, train_loader, val_loader, epochs=cfg.epochs if epochs is None else epochs,
                 lr=stage.lr or cfg.lr, patience=cfg.patience if patience is None else patience,
                 precision=precision, seed=params.seed, augment=augment, checkpoint=checkpoint,
                 fingerprint=fingerprint, extra=extra, on_epoch_end=on_epoch_end, should_stop=should_stop,
                 progress=progress, compile=cfg.compile)
    return model, result


def main(root: Path, params_file: Path, role: str, progress: bool = True) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    stage = getattr(params, f"train_{role}")
    torch.set_num_threads(params.train.num_threads or default_threads())
    warning = oversubscription(params.train.num_threads, 1)
    if warning:
        print(f"train_{role}: warning: {warning}", file=sys.stderr)
    device = resolve_device(params.train.device)
    precision = resolve_precision(params.train.precision, device)
    train, val = load_prepared(layout.prepared_dir, "train"), load_prepared(layout.prepared_dir, "val")
    sp = stage_params(params, role)
    fp = fingerprint(sp, layout.prepared_dir)
    ckpt = layout.checkpoints / f"train_{role}.pt"
    prior = load_checkpoint(ckpt)
    resume_run = prior["extra"].get("mlflow_run_id") if prior and prior.get("fingerprint") == fp else None

    experiment_id = tracking.setup(root, params.mlflow.experiment_name)
    with tracking.mlflow.start_run(run_id=resume_run, experiment_id=None if resume_run else experiment_id,
                                   run_name=None if resume_run else f"train_{role}") as run:
        if resume_run:
            # Epochs saved in the checkpoint but not yet logged (killed between the two) are logged now;
            # epochs already logged are not logged again.
            done = tracking.logged_epochs(run.info.run_id)
            for row in prior["history"]:
                if row["epoch"] not in done:
                    tracking.log_epoch(row)
            print(f"train_{role}: resuming after epoch {len(prior['history'])} in MLflow run {run.info.run_id}")
        else:
            tracking.mlflow.set_tags(tracking.standard_tags(root, model=stage.model, role=role, stage=f"train_{role}",
                                                            precision=precision.name, device=str(device)))
            tracking.log_params_flat(flatten(sp))
            for name, data in (("train", train), ("val", val)):
                tracking.log_dataset(read_split(layout.split_dir, name), layout.split_dir / f"{name}.csv",
                                     name=f"{name}", context="training" if name == "train" else "validation")
            images, names = augmented_examples(train, BatchAugment(params.augment) if stage.augment else None, 32,
                                               params.seed)
            fig = plots.image_grid(images.numpy(), names, title=f"train_{role}: training images as the model sees them")
            tracking.log_figure(fig, "figures/augmented_examples.png")

        model, result = train_model(params, role, train, val, precision=precision, checkpoint=ckpt, fingerprint=fp,
                                    extra={"mlflow_run_id": run.info.run_id}, on_epoch_end=tracking.log_epoch,
                                    progress=progress)
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        summary = {"best_epoch": result.best_epoch, "epochs_trained": len(result.history),
                   "stopped_early": result.stopped_early, "best_val_loss": best["val_loss"],
                   "best_val_accuracy": best["val_accuracy"],
                   "train_time_s": round(sum(r["epoch_time_s"] for r in result.history), 2),
                   "n_parameters": sum(p.numel() for p in model.parameters())}
        tracking.mlflow.log_metrics({k: float(v) for k, v in summary.items()})
        fig = plots.learning_curves(result.history, title=f"train_{role} ({stage.model})")
        tracking.log_figure(fig, "figures/learning_curves.png")
        save_model_file(layout.model_file(role), model, name=stage.model, model_args=stage.model_args,
                        classes=train.classes, image_size=params.data.image_size,
                        extra={"role": role, "mlflow_run_id": run.info.run_id})
        tracking.mlflow.log_artifact(str(layout.model_file(role)), artifact_path="checkpoint")
        model_uri = tracking.log_model(model, params.data.image_size, len(train.classes))

    layout.metrics.mkdir(parents=True, exist_ok=True)
    layout.train_metrics(role).write_text(json.dumps(summary, indent=2) + "\n")
    layout.history(role).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result.history).to_csv(layout.history(role), index=False)
    layout.run_info(role).write_text(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                                                 "model_uri": model_uri, "model": stage.model}, indent=2) + "\n")
    ckpt.unlink(missing_ok=True)  # finished: a forced rerun starts fresh
    print(f"train_{role}: {stage.model} best val_accuracy {best['val_accuracy']:.4f} at epoch {result.best_epoch} "
          f"({len(result.history)} epochs, {summary['train_time_s']:.0f}s, {precision.name}); MLflow run "
          f"{run.info.run_id}")
    return summary
