"""Does bf16 hurt? Validation accuracy of fp32 vs bf16 training on the built-in data set, same seeds.

    .venv/bin/python benchmarks/precision.py                                # resnet, 5 seeds x 8 epochs: ~5 min
    .venv/bin/python benchmarks/precision.py --models baseline resnet --seeds 0 1 2 3 4

Each (model, seed) trains twice through `reslab.training.train_classifier`, as the training stages do (same init,
batch order, augmentation and dropout draws, since all derive from the seed), once with train.precision fp32 and
once with bf16, for --epochs epochs without early stopping; everything else is params.yaml. Reported: validation
accuracy at the best-val-loss epoch (what the stage keeps) and at the last epoch, mean +/- sd over seeds per
precision, and the paired difference bf16 - fp32 with a 95 % t interval. The seed-to-seed sd of fp32 is the noise
to compare with.
Needs `dvc repro prepare` (artifacts/prepared). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
from scipy import stats

from reslab.config import load_params, resolve, resolve_runtime
from reslab.data.prepared import load_train_val
from reslab.layout import Layout
from reslab.training import resolve_precision, setup_runtime, train_classifier

from machine import QuietWait

ROOT = Path(__file__).resolve().parents[1]


def mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{100 * statistics.mean(xs):6.2f} +/- {100 * sd:4.2f}"


def paired(diffs: list[float]) -> str:
    """mean and 95 % t interval of paired differences, in percentage points."""
    m = statistics.mean(diffs)
    if len(diffs) < 2:
        return f"{100 * m:+6.2f} pp"
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return f"{100 * m:+6.2f} pp  [{100 * (m - half):+.2f}, {100 * (m + half):+.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--precisions", nargs=2, default=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default_threads()); results are "
                    "reproducible for a fixed thread count, and 1 thread is robust to busy neighbours")
    ap.add_argument("--max-wait", type=float, default=30.0, help="wait per run for other processes to go quiet")
    args = ap.parse_args()

    quiet = QuietWait(10 * args.max_wait)
    params = load_params(ROOT / "params.yaml")
    setup_runtime(dataclasses.replace(resolve_runtime(params), num_threads=args.threads, device="cpu"), who="precision")
    prepared = ROOT / "artifacts/prepared"
    train, val = load_train_val(prepared, Layout(ROOT).replicate_splits, params.replicates.design,
                                params.replicates.seeds[0])  # replicate 0's, as `reslab tune`
    print(f"{len(train)} train / {len(val)} val images at {train.images.shape[1]} px, {len(train.classes)} classes; "
          f"{args.epochs} epochs, patience 0, batch {params.train.batch_size}, lr {params.train.lr}, augmentation "
          f"magnitude {params.augment.magnitude}; {torch.get_num_threads()} threads")
    results: dict[tuple[str, str], list[dict]] = {}
    for model in args.models:
        role = "resnet" if model.startswith(("resnet", "plain")) else "baseline"
        for seed in args.seeds:
            for name in args.precisions:
                config = dataclasses.replace(resolve(params, role), model=model, model_args={},
                                             lr=params.train.lr, augment=params.augment, seed=seed,
                                             epochs=args.epochs, patience=0)
                precision = resolve_precision(name, torch.device("cpu"))
                quiet(args.max_wait)
                t0 = time.perf_counter()
                _, result = train_classifier(config, train, val, precision=precision, progress=False)
                best = next(r for r in result.history if r["epoch"] == result.best_epoch)
                row = {"seed": seed, "best": best["val_accuracy"], "last": result.history[-1]["val_accuracy"],
                       "best_epoch": result.best_epoch, "s_per_epoch": (time.perf_counter() - t0) / args.epochs}
                results.setdefault((model, name), []).append(row)
                print(f"  {model:<9}{name:<6}seed {seed}: val_accuracy {100 * row['best']:.2f} % at best epoch "
                      f"{row['best_epoch']}, {100 * row['last']:.2f} % at epoch {args.epochs}; "
                      f"{row['s_per_epoch']:.1f} s/epoch", flush=True)

    a, b = args.precisions
    print(f"\nval accuracy, % (mean +/- sd over seeds {', '.join(map(str, args.seeds))}); diff = {b} - {a}, paired "
          f"by seed, 95 % t interval")
    head = f"  {'model':<10}{'at':<12}{a:>18}{b:>18}   {'diff':<32}{'s/epoch ' + a + '/' + b:>18}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for model in args.models:
        ra, rb = results[(model, a)], results[(model, b)]
        speed = (f"{statistics.mean(r['s_per_epoch'] for r in ra):.1f} / "
                 f"{statistics.mean(r['s_per_epoch'] for r in rb):.1f}")
        for key, label in (("best", "best epoch"), ("last", f"epoch {args.epochs}")):
            xa, xb = [r[key] for r in ra], [r[key] for r in rb]
            print(f"  {model:<10}{label:<12}{mean_sd(xa):>18}{mean_sd(xb):>18}   "
                  f"{paired([y - x for x, y in zip(xa, xb)]):<32}{speed if key == 'best' else '':>18}")
    print(f"(waited {quiet.waited_s:.0f} s for other processes to go quiet)")


if __name__ == "__main__":
    main()
