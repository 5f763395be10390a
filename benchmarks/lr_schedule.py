"""Does a learning-rate schedule let both models converge in fewer epochs? One training run per (model, seed,
schedule) on the prepared built-in split, validation only (the test split is never opened), printed as JSON lines.

    python benchmarks/lr_schedule.py --root . --models baseline resnet --seeds 1 2 --epochs 32 --schedule step

Schedules: `constant` (the study's Adam at train.lr), `cos` (cosine decay to 0 over the epochs), `step` (lr x 0.1
after 80 % of the epochs; the pipeline's `train.lr_milestones`). Everything else is the pipeline's recipe for the
role (params.yaml); the best epoch is the one with the lowest validation loss, as the training stage keeps it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from reslab.config import load_params, resolve, resolve_runtime
from reslab.data.prepared import load_train_val
from reslab.layout import Layout
from reslab.training import setup_runtime, train_classifier
from reslab.training import loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--models", nargs="+", default=["baseline", "resnet"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--schedule", choices=["constant", "cos", "step"], default="step")
    args = p.parse_args()
    params = load_params(args.root / "params.yaml")
    precision = setup_runtime(resolve_runtime(params))
    prepared = args.root / "artifacts" / "prepared"
    train, val = load_train_val(prepared, Layout(args.root).replicate_splits, params.replicates.design,
                                params.replicates.seeds[0])  # replicate 0's, as `reslab tune`
    if args.schedule == "cos":  # the loop's schedule hook is a step function; cosine replaces it for this script
        loop.lr_at = lambda epoch, lr, milestones=(), gamma=0.1: lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1)
                                                                                            / args.epochs))
    milestones = (round(0.8 * args.epochs),) if args.schedule == "step" else ()
    for seed in args.seeds:
        for role in args.models:
            config = dataclasses.replace(resolve(params, role, seed), epochs=args.epochs, patience=0,
                                         min_epochs=0, lr_milestones=milestones)
            t0 = time.perf_counter()
            _, result = train_classifier(config, train, val, precision=precision, progress=False)
            best = next(r for r in result.history if r["epoch"] == result.best_epoch)
            print(json.dumps({"role": role, "seed": seed, "epochs": args.epochs, "schedule": args.schedule,
                              "best_epoch": result.best_epoch, "best_val_loss": round(best["val_loss"], 4),
                              "best_val_accuracy": round(best["val_accuracy"], 4),
                              "last_epochs": [(r["epoch"], round(r["val_loss"], 4), round(r["val_accuracy"], 4))
                                              for r in result.history[-5:]],
                              "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
