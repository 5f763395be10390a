"""Stage `train@<family>-<depth>-<seed>` of studies/depth/dvc.yaml: one cell, resumable from its last finished epoch
into the same MLflow run (its checkpoint and run ledger live in .reslab/checkpoints/depth_study/, outside DVC's
outputs). Outputs: models/<cell>.pt, cells/<cell>.json, curves/<cell>.csv."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ..config import ConfigError
from ..data.prepared import load_prepared
from ..depth_study.cell import cell_config, cell_summary, remaining_seconds, with_errors
from ..depth_study.layout import StudyLayout
from ..depth_study.params import FAMILIES, StudyParams, budget_params, cells, load_study_params
from ..models.cifar import blocks_per_stage
from ..models.serialization import save_model_file
from ..tracking import check_store, log_params_flat
from ..tracking.study_run import cell_run, log_cell_result, parent_of, study_run_name
from ..training import (ArrayLoader, evaluate, fingerprint, resumable_state, setup_runtime, train_classifier,
                        training_params)


def _epoch_line(label: str, row: dict, epochs: int) -> str:
    return (f"{label}: epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.3f} error "
            f"{1 - row['train_accuracy']:.3f}, val error {1 - row['val_accuracy']:.3f} ({row['epoch_time_s']:.1f}s)")


def progress_line(layout: StudyLayout, p: StudyParams, study: str, current: dict) -> str:
    """`study: k of N cells done; about M min left`, from the cells of this budget already written (and the cell
    just trained, also when it is not one of the params' cells)."""
    done, todo = [], []
    for family, depth, seed in cells(p):
        path = layout.cell_summary(family, depth, seed)
        summary = json.loads(path.read_text()) if path.is_file() else None
        if summary is not None and summary.get("study") == study:
            done.append(summary)
        else:
            todo.append(depth)
    basis = done if any(c["mlflow_run_id"] == current["mlflow_run_id"] for c in done) else [*done, current]
    left = remaining_seconds(basis, todo, p.train.epochs)
    when = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
    return f"study: {len(done)} of {len(done) + len(todo)} cells done; about {when} left"


def main(root: Path, params_file: Path, family: str, depth: int, seed: int, progress: bool = False) -> dict:
    """Stage `train@<family>-<depth>-<seed>`: one cell, resumable from its last epoch into the same MLflow run.

    Args:
        root: project root.
        params_file: studies/depth/params.yaml.
        family: plain | residual.
        depth: weighted layers, 6n + 2.
        seed: the cell's training seed.
        progress: progress bars within each epoch (a line per epoch is printed either way).
    """
    t0 = time.perf_counter()
    p = load_study_params(params_file)
    if family not in FAMILIES:
        raise ConfigError(f"family {family!r}: accepted {' | '.join(FAMILIES)}")
    blocks_per_stage(depth, len(p.model.widths))  # a bad depth fails before any data is read
    check_store(root)
    layout = StudyLayout(root)
    label = f"train@{family}-{depth}-{seed}"
    config = cell_config(p, family, depth, seed)
    precision = setup_runtime(config.runtime, who=label)
    train_split, val_split = load_prepared(layout.prepared, "train"), load_prepared(layout.prepared, "val")
    study = fingerprint(budget_params(p), layout.prepared)  # the same budget and data, any cell
    fp = fingerprint({**budget_params(p), "cell": [family, depth, seed]}, layout.prepared)
    ckpt = layout.cell_checkpoint(family, depth, seed)
    ledger = ckpt.with_suffix(".mlflow.json")
    prior = resumable_state(ckpt, fp)
    done = prior["history"] if prior else []
    earlier = sum(r["epoch_time_s"] for r in done)  # the killed attempts' epochs, for the cell's wall time

    with cell_run(root, p.mlflow.experiment_name, family=family, depth=depth, seed=seed, ledger=ledger,
                  fingerprint=fp, study=study,
                  study_name=study_run_name(p.data.image_size, p.train.epochs, p.train.lr),
                  tags={"model": config.model, "precision": precision.name, "device": str(precision.device)}) as run:
        if done or run.resumed:
            print(f"{label}: resuming after epoch {len(done)} in MLflow run {run.run_id}")
        run.catch_up(done)  # epochs checkpointed but killed before they were logged
        log_params_flat(training_params(config))

        def on_epoch_end(row: dict) -> None:
            run.log_epoch(row)
            print(_epoch_line(label, row, config.epochs), flush=True)

        model, result = train_classifier(config, train_split, val_split, precision=precision, checkpoint=ckpt,
                                         fingerprint=fp, extra={"mlflow_run_id": run.run_id},
                                         on_epoch_end=on_epoch_end, progress=progress)
        final = evaluate(model, ArrayLoader(train_split, 256, shuffle=False, device=precision.device), precision)
        save_model_file(layout.cell_model(family, depth, seed), model, name=config.model,
                        model_args=config.model_args, classes=train_split.classes, image_size=config.image_size,
                        extra={"family": family, "depth": depth, "seed": seed, "mlflow_run_id": run.run_id})
        history = with_errors(result.history)
        summary = cell_summary(history, final, family=family, depth=depth, seed=seed,
                               n_parameters=sum(q.numel() for q in model.parameters()), study=study,
                               wall_time_s=earlier + time.perf_counter() - t0)
        log_cell_result(summary, history, title=f"{label} ({config.model}, depth {depth})")
        summary.update(mlflow_run_id=run.run_id, mlflow_parent_run_id=parent_of(run.run_id),
                       mlflow_experiment_id=run.experiment_id)
        for path in (layout.cell_summary(family, depth, seed), layout.cell_curve(family, depth, seed)):
            path.parent.mkdir(parents=True, exist_ok=True)
        layout.cell_summary(family, depth, seed).write_text(json.dumps(summary, indent=2) + "\n")
        pd.DataFrame(history).to_csv(layout.cell_curve(family, depth, seed), index=False)
    ckpt.unlink(missing_ok=True)  # finished: a forced rerun starts fresh
    ledger.unlink(missing_ok=True)
    print(f"{label}: final train error {summary['final_train_error']:.3f} (loss {summary['final_train_loss']:.3f}), "
          f"best val error {summary['best_val_error']:.3f} at epoch {summary['best_val_epoch']}, "
          f"{summary['train_time_s']:.0f}s training, {summary['wall_time_s']:.0f}s in all; MLflow run {run.run_id}")
    print(progress_line(layout, p, study, summary), flush=True)
    return summary
