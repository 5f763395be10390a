"""Does the budget let a model converge? Train one role for a fixed number of epochs without early stopping and print
its validation curve, the epoch the stage would keep (lowest val loss) and what the default early-stopping rule
(train.min_epochs, train.patience) would have done on the same curve.

    .venv/bin/python benchmarks/convergence.py --role baseline --epochs 60 --seeds 1 2 3
    .venv/bin/python benchmarks/convergence.py --role resnet --epochs 60 --params params.yaml

Uses `reslab.training.train_classifier` with params.yaml's recipe for the role (the prepared arrays of
artifacts/prepared: run `dvc repro prepare` first). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from reslab.config import load_params, resolve, resolve_runtime
from reslab.data.prepared import load_train_val
from reslab.layout import Layout
from reslab.training import setup_runtime, train_classifier


def stopping_epoch(history: list[dict], min_epochs: int, patience: int) -> int:
    """The epoch at which the stage's early-stopping rule would have ended this curve (its length if never)."""
    best, bad = float("inf"), 0
    for row in history:
        if row["val_loss"] < best:
            best, bad = row["val_loss"], 0
        else:
            bad += 1
        if patience and bad >= patience and row["epoch"] >= min_epochs:
            return row["epoch"]
    return len(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["baseline", "resnet"], default="resnet")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    params = load_params(args.params)
    precision = setup_runtime(resolve_runtime(params), who="convergence")
    prepared = args.root / "artifacts" / "prepared"
    train, val = load_train_val(prepared, Layout(args.root).replicate_splits, params.replicates.design,
                                params.replicates.seeds[0])  # replicate 0's, as `reslab tune`
    cfg = params.train
    print(f"{args.role}: {params.data.image_size} px, {len(train)} train / {len(val)} val images, {precision.name}, "
          f"rule: min_epochs {cfg.min_epochs}, patience {cfg.patience}")
    for seed in args.seeds:
        config = dataclasses.replace(resolve(params, args.role, seed), epochs=args.epochs, patience=0)
        t0 = time.perf_counter()
        _, result = train_classifier(config, train, val, precision=precision, progress=False)
        h = result.history
        keep = min(h, key=lambda r: r["val_loss"])
        stop = stopping_epoch(h, cfg.min_epochs, cfg.patience)
        kept_by_rule = min(h[:stop], key=lambda r: r["val_loss"])
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; lowest val loss at epoch {keep['epoch']} "
              f"(val acc {keep['val_accuracy']:.4f}); max val acc {max(r['val_accuracy'] for r in h):.4f}; "
              f"the rule stops at epoch {stop} and keeps epoch {kept_by_rule['epoch']} "
              f"(val acc {kept_by_rule['val_accuracy']:.4f})")
        print("  val acc every 5 epochs: " + " ".join(f"{r['val_accuracy']:.3f}" for r in h[4::5]))
        print("  val loss every 5 epochs: " + " ".join(f"{r['val_loss']:.3f}" for r in h[4::5]))


if __name__ == "__main__":
    main()
