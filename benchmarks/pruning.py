"""What pruning saves: the same Optuna sweep (same seed, same trial budget) with and without a pruner.

Runs `reslab tune`'s objective and trial loop in this process on the prepared data set (artifacts/prepared: run
`dvc repro prepare` first), each arm in its own temporary journal, with MLflow switched off, and prints the epochs
each arm trained, its best validation accuracy and the ratios. The goal of issue 3: pruning spends <= 50 % of the
epochs at equal best accuracy (within the validation split's noise, printed as one binomial standard error).

    python benchmarks/pruning.py                  # tune.n_trials x 6 epochs, params.yaml's pruner, a small space
    python benchmarks/pruning.py --trials 12      # a smaller budget
    python benchmarks/pruning.py --params-space   # params.yaml's search space (hours on a 2-core CPU; use a GPU)

The default search space keeps the networks small (depth 1-2, two stages, width 16-32) so both arms finish in
minutes on a CPU; it still spans the learning rate and augmentation ranges of params.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch

from reslab import tuning
from reslab.config import load_params
from reslab.data.prepared import load_prepared
from reslab.layout import Layout
from reslab.training import default_threads, resolve_device, resolve_precision

SMALL_SPACE = {"depth": [1, 2], "stages": 2, "width": [16, 32, 16], "magnitude": [0.0, 1.5], "lr": [0.0003, 0.003]}


def run_arm(params, cfg, space, train, val, precision, pruner: str, workdir: Path) -> dict:
    """One sweep with `pruner`; returns its figures."""
    cfg = dataclasses.replace(cfg, pruner=pruner, study_name=f"benchmark-{pruner}")
    storage = tuning.open_storage(str(workdir / f"{pruner}.log"), workdir)
    study = tuning.open_study(storage, params, cfg)
    objective = tuning.Objective(params, cfg, space, train, val, precision=precision, tracker=None)
    t0 = time.perf_counter()
    tuning.run_worker(study, objective, cfg, notify=lambda msg: None)
    counts = tuning.count_trials(study)
    return {"pruner": pruner, "complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed,
            "epochs": sum(len(t.intermediate_values) for t in study.trials), "best": study.best_value,
            "best_trial": study.best_trial.number, "best_params": study.best_trial.params,
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="project root")
    ap.add_argument("--trials", type=int, default=None, help="trial budget (default: tune.n_trials)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--pruner", default="median", choices=["median", "percentile", "hyperband"])
    ap.add_argument("--params-space", action="store_true",
                    help=f"search params.yaml's tune.search_space instead of {SMALL_SPACE}")
    args = ap.parse_args()

    params = load_params(args.root / "params.yaml")
    cfg, space = tuning.tune_config(params, n_trials=args.trials)
    cfg = dataclasses.replace(cfg, epochs=args.epochs, search_space=cfg.search_space if args.params_space
                              else SMALL_SPACE)
    space = tuning.parse_search_space(cfg.search_space)
    torch.set_num_threads(params.train.num_threads or default_threads())
    precision = resolve_precision(params.train.precision, resolve_device(params.train.device))
    prepared = Layout(args.root).prepared_dir
    train, val = load_prepared(prepared, "train"), load_prepared(prepared, "val")
    print(f"{cfg.n_trials} trials x {args.epochs} epochs, seed {cfg.sampler_seed}, {len(train)} train / {len(val)} val "
          f"images at {params.data.image_size} px, {torch.get_num_threads()} threads, {precision.name}; "
          f"space {cfg.search_space}; pruner settings: startup trials {cfg.pruner_startup_trials}, warm-up epochs "
          f"{cfg.pruner_warmup_epochs}", flush=True)

    arms = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in ("none", args.pruner):
            arm = run_arm(params, cfg, space, train, val, precision, pruner, Path(tmp))
            arms.append(arm)
            print(f"  {pruner:>10}: {arm['complete']} complete, {arm['pruned']} pruned, {arm['failed']} failed; "
                  f"{arm['epochs']} epochs; best val_accuracy {arm['best']:.4f} (trial {arm['best_trial']}: "
                  f"{arm['best_params']}); {arm['wall_s']:.0f} s", flush=True)
    full, pruned = arms
    se = math.sqrt(full["best"] * (1 - full["best"]) / len(val))
    print(f"\n| sweep | epochs trained | best val accuracy | wall time |\n|---|---|---|---|")
    for arm in arms:
        print(f"| {arm['pruner']} | {arm['epochs']} | {arm['best']:.4f} | {arm['wall_s']:.0f} s |")
    print(f"\nepochs with {args.pruner} pruning / without: {pruned['epochs']}/{full['epochs']} = "
          f"{pruned['epochs'] / full['epochs']:.1%} (goal <= 50 %); wall time {pruned['wall_s'] / full['wall_s']:.1%}")
    print(f"best val accuracy difference (pruned - full): {pruned['best'] - full['best']:+.4f}; one binomial "
          f"standard error on {len(val)} val images: {se:.4f}")


if __name__ == "__main__":
    main()
