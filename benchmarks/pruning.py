"""What pruning saves: the same Optuna sweep (same seed, same trial budget) with and without a pruner.

Runs `reslab tune`'s objective and trial loop in this process on the prepared data set (artifacts/prepared: run
`dvc repro prepare` first), each arm in its own temporary journal, with MLflow switched off, and prints the epochs
each arm trained, its best validation accuracy and the ratios. The goal of issue 3: pruning spends <= 50 % of the
epochs at equal best accuracy (within the validation split's noise, printed as one binomial standard error).

    python benchmarks/pruning.py                  # the resnet, tune.n_trials x at most 6 epochs, a small space
    python benchmarks/pruning.py --role baseline  # the plain CNN's study
    python benchmarks/pruning.py --trials 12      # a smaller budget
    python benchmarks/pruning.py --epochs 0       # tune.epochs as params.yaml resolves it (the pipeline's cap)
    python benchmarks/pruning.py --params-space   # params.yaml's search space of the role (far longer: use a GPU)

Trials train as `reslab tune`'s do: the training stage's recipe (early stopping included) and its objective, the
val accuracy at the best-val-loss epoch. The default resnet search space keeps the networks small (depth 1-2, two
stages, width 16-32) so both arms finish quickly on a CPU; it still spans the learning rate and augmentation ranges
of params.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch

from reslab.config import load_params, resolve_runtime
from reslab.data.prepared import load_prepared
from reslab.layout import Layout
from reslab.training import setup_runtime
from reslab.tuning.objective import Objective, run_worker
from reslab.tuning.space import parse_search_space, tune_config
from reslab.tuning.storage import open_storage
from reslab.tuning.study import count_trials, open_study

SMALL_SPACE = {"resnet": {"depth": [1, 2], "stages": 2, "width": [16, 32, 16],
                          "train_resnet.augment_magnitude": [0.0, 1.5], "train_resnet.lr": [0.0003, 0.003]},
               "baseline": {"train_baseline.augment_magnitude": [0.0, 1.5], "train_baseline.lr": [0.0003, 0.003]}}


def run_arm(params, cfg, role, space, train, val, precision, pruner: str, workdir: Path) -> dict:
    """One sweep with `pruner`; returns its figures."""
    cfg = dataclasses.replace(cfg, pruner=pruner, study_name=f"benchmark-{role}-{pruner}")
    storage = open_storage(str(workdir / f"{role}-{pruner}.log"), workdir)
    study = open_study(storage, params, cfg, role)
    objective = Objective(params, cfg, role, space, train, val, precision=precision, tracker=None)
    t0 = time.perf_counter()
    run_worker(study, objective, cfg, notify=lambda msg: None)
    counts = count_trials(study)
    return {"pruner": pruner, "complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed,
            "epochs": sum(len(t.intermediate_values) for t in study.trials), "best": study.best_value,
            "best_trial": study.best_trial.number, "best_params": study.best_trial.params,
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="project root")
    ap.add_argument("--trials", type=int, default=None, help="trial budget (default: tune.n_trials)")
    ap.add_argument("--role", default="resnet", choices=["baseline", "resnet"], help="the model tuned")
    ap.add_argument("--epochs", type=int, default=6, help="epoch cap per trial (0: tune.epochs as resolved)")
    ap.add_argument("--pruner", default="median", choices=["median", "percentile", "hyperband"])
    ap.add_argument("--params-space", action="store_true",
                    help="search params.yaml's tune.search_space.ROLE instead of a small space")
    args = ap.parse_args()

    params = load_params(args.root / "params.yaml")
    cfg, space = tune_config(params, args.role, n_trials=args.trials)
    cfg = dataclasses.replace(cfg, epochs=args.epochs or cfg.epochs,
                              search_space=cfg.search_space if args.params_space else SMALL_SPACE)
    space = parse_search_space(params, args.role, cfg.search_space[args.role])
    precision = setup_runtime(resolve_runtime(params), who="pruning benchmark")
    prepared = Layout(args.root).prepared_dir
    train, val = load_prepared(prepared, "train"), load_prepared(prepared, "val")
    print(f"{args.role}: {cfg.n_trials} trials x at most {cfg.epochs} epochs, seed {cfg.sampler_seed}, "
          f"{len(train)} train / {len(val)} val images at {params.data.image_size} px, {torch.get_num_threads()} "
          f"threads, {precision.name}; space {cfg.search_space[args.role]}; pruner settings: startup trials "
          f"{cfg.pruner_startup_trials}, warm-up epochs {cfg.pruner_warmup_epochs}", flush=True)

    arms = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in ("none", args.pruner):
            arm = run_arm(params, cfg, args.role, space, train, val, precision, pruner, Path(tmp))
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
