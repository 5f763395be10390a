"""The study's scale on this CPU (issue 22, point 6): the Kaggle-size stand-in at 128 px, the training throughput of
one replicate, and the wall time of 10 seeds x 2 models projected for 1, 2 and 8 such machines.

    nice -n 5 .venv/bin/python benchmarks/scale.py                      # ~6 min on a quiet 2-core machine
    .venv/bin/python benchmarks/scale.py --batches 30 --val-images 512  # quicker, noisier

1. Data: a scratch project under /tmp (removed at the end; --work keeps one and reuses its prepared arrays) with
   this checkout's params.yaml but data.image_size: 128 and the 10-replicate k-fold design (replicates.folds: 5,
   seeds 1..10: k-fold needs seeds a multiple of the folds); the CLI as a user runs it: `reslab data synth --scale
   5`, then the pipeline's own `reslab filter`, `split` and `prepare`. Printed: the images each step keeps and the
   train / val / test images of the replicates, beside the Kaggle set's.
2. Training: each configuration runs in fresh processes; each loads its replicate's train and val splits as the
   training stage does (`load_train_val`), builds the model its resolved config names, warms up, then times
   --batches batches of reslab's `train_one_epoch` at train.batch_size (a random subset of the replicate's train
   split, augmented as configured) and `evaluate` on --val-images validation images at the batch size
   `train_classifier` uses. Seconds per epoch = the replicate's full train (val) split at the measured rate.
   Configurations per model: 1 process x 1 thread (train.num_threads: 1, what every pipeline stage runs), 1 x 2
   threads (for contrast), 2 processes x 1 thread at once (replicates.jobs: 2, what `reslab repro` runs; both
   processes start each timed phase together).
3. Projection: a replicate takes epochs x (train + val seconds per epoch) at the 2-process rate; 10 seeds x 2
   models are laid onto 2 x M one-thread slots (M machines like this one), longest first.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime
import heapq
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from machine import HZ, QuietWait, busy_jiffies, cpu_jiffies, cpu_model

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = {"train": 12_411, "val": 3_091, "test": 950}  # the study's data set at 128 px (issue 22)
ROLES = ("baseline", "resnet")
CONFIGS = ((1, 1), (1, 2), (2, 1))  # (processes at once, torch threads each)
MACHINES = (1, 2, 8)
SLOTS_PER_MACHINE = 2  # replicates.jobs 2 x train.num_threads 1 on a 2-core machine


# ----------------------------------------------------------------------------- the data


def scratch_project(work: Path, scale: float, image_size: int, seeds: int, folds: int) -> list[str]:
    """Generate, filter, split and prepare the stand-in in `work` with the reslab CLI; returns the timing lines."""
    from reslab.config import write_params

    reslab = str(Path(sys.executable).with_name("reslab"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    write_params(work / "params.yaml", {"data.image_size": image_size, "replicates.folds": folds,
                                        "replicates.seeds": list(range(1, seeds + 1))})
    lines = []
    for cmd in ([reslab, "data", "synth", "--out", "data", "--scale", f"{scale:g}"],
                [reslab, "filter", "--root", "."], [reslab, "split", "--root", "."],
                [reslab, "prepare", "--root", "."]):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd[1:])} failed:\n{proc.stderr[-3000:]}")
        lines.append(f"  reslab {' '.join(cmd[1:]):<44}{time.perf_counter() - t:7.1f} s")
    return lines


def data_summary(work: Path) -> tuple[list[str], dict[int, dict]]:
    """What filter and split kept, and each replicate's split sizes (from their reports)."""
    kept = json.loads((work / "reports/data_report.json").read_text())
    split = json.loads((work / "reports/split.json").read_text())
    reps = {int(s): r for s, r in split["replicates"].items()}
    array = work / "artifacts/prepared/all_images.npy"
    shape = np.load(array, mmap_mode="r").shape
    span = {k: (min(r[k] for r in reps.values()), max(r[k] for r in reps.values())) for k in KAGGLE}
    lines = [f"  filter: {kept['n_kept_images']} images kept in {kept['n_classes_kept']} classes of "
             f"{kept['n_entries_seen']} entries",
             f"  prepare: {shape[0]} images x {shape[1]}x{shape[2]}x{shape[3]} uint8 = "
             f"{array.stat().st_size / 1e9:.2f} GB (the `all` array each k-fold replicate selects its rows from)",
             f"  split: {split['repeats']} repeats x {split['folds']} folds = {len(reps)} replicates; per replicate "
             + ", ".join(f"{k} {a}-{b}" for k, (a, b) in span.items()),
             "  the Kaggle set (one fixed split): " + ", ".join(f"{k} {v}" for k, v in KAGGLE.items())]
    return lines, reps


# ----------------------------------------------------------------------------- one training process


def child(work: Path, role: str, seed: int, threads: int, batches: int, val_images: int) -> None:
    """Time training and validation of one replicate in this process; each timed phase waits for a `go` line on
    stdin (so that concurrent processes run their phases together) and the result is one JSON line."""
    import torch

    from reslab.config import load_params, resolve
    from reslab.data.augment import BatchAugment
    from reslab.data.prepared import ImageArrays, load_train_val
    from reslab.layout import Layout
    from reslab.models import create_model
    from reslab.training import ArrayLoader, evaluate, make_optimizer, setup_runtime, to_device, train_one_epoch

    params = load_params(work / "params.yaml")
    config = resolve(params, role, seed)
    precision = setup_runtime(replace(config.runtime, num_threads=threads), who="scale")
    layout = Layout(work)
    train, val = load_train_val(layout.prepared_dir, layout.replicate_splits, params.replicates.design, seed)
    torch.manual_seed(seed)
    model = to_device(create_model(config.model, num_classes=len(train.classes), image_size=config.image_size,
                                   **config.model_args), precision)
    optimizer = make_optimizer(model, config.lr, config.adam_eps)
    augment = BatchAugment(config.augment) if config.augment is not None else None
    bs, val_bs = config.batch_size, max(config.batch_size, 256)  # as train_classifier's loaders
    rng = np.random.default_rng(seed)

    def subset(data: ImageArrays, n: int) -> ImageArrays:
        idx = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
        return ImageArrays(data.images[idx], data.labels[idx], data.classes)

    def train_on(data: ImageArrays, epoch: int) -> None:
        loader = ArrayLoader(data, bs, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        train_one_epoch(model, loader, optimizer, config, precision, augment,
                        torch.Generator().manual_seed(epoch), progress=False)

    train_on(subset(train, 4 * bs), 0)  # warm-up: oneDNN picks its kernels in the first steps
    evaluate(model, ArrayLoader(subset(val, val_bs), val_bs, shuffle=False), precision)
    timed_train, timed_val = subset(train, batches * bs), subset(val, val_images)

    def phase(name: str, fn) -> dict:
        print(f"ready {name}", flush=True)
        sys.stdin.readline()
        busy, own, t = busy_jiffies(), cpu_jiffies(os.getpid()), time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        return {"wall_s": wall, "busy_cores": (busy_jiffies() - busy) / HZ / wall,
                "own_cores": (cpu_jiffies(os.getpid()) - own) / HZ / wall}

    tr = phase("train", lambda: train_on(timed_train, 1))
    va = phase("val", lambda: evaluate(model, ArrayLoader(timed_val, val_bs, shuffle=False), precision))
    print(json.dumps({"role": role, "seed": seed, "threads": torch.get_num_threads(), "precision": precision.name,
                      "channels_last": precision.channels_last, "n_train": len(train), "n_val": len(val),
                      "train_img_s": len(timed_train) / tr["wall_s"], "val_img_s": len(timed_val) / va["wall_s"],
                      "batches": len(timed_train) // bs, "val_images": len(timed_val), "train": tr, "val": va}),
          flush=True)


@dataclass
class Measured:
    role: str
    processes: int
    threads: int
    runs: list[dict]  # one result per process

    @property
    def train_img_s(self) -> float:  # per process
        return float(np.mean([r["train_img_s"] for r in self.runs]))

    @property
    def val_img_s(self) -> float:
        return float(np.mean([r["val_img_s"] for r in self.runs]))

    @property
    def train_epoch_s(self) -> float:  # one replicate's full train split
        return float(np.mean([r["n_train"] / r["train_img_s"] for r in self.runs]))

    @property
    def val_epoch_s(self) -> float:
        return float(np.mean([r["n_val"] / r["val_img_s"] for r in self.runs]))

    @property
    def others(self) -> float:  # cores other processes used during the training phase
        busy = np.mean([r["train"]["busy_cores"] for r in self.runs])
        return max(0.0, float(busy - sum(r["train"]["own_cores"] for r in self.runs)))


def measure(work: Path, role: str, processes: int, threads: int, args) -> Measured:
    """`processes` children of replicates 1, 2, ... at once, released phase by phase together."""
    children = [subprocess.Popen([sys.executable, __file__, "--child", role, "--work", str(work), "--seed",
                                  str(seed), "--threads", str(threads), "--batches", str(args.batches),
                                  "--val-images", str(args.val_images)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for seed in range(1, processes + 1)]
    for _ in ("train", "val"):
        for c in children:
            line = c.stdout.readline()
            if not line.startswith("ready"):
                sys.exit(f"a {role} process ended before timing (exit {c.wait()})")
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
    runs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    return Measured(role, processes, threads, runs)


# ----------------------------------------------------------------------------- the projection


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of jobs laid longest first, each onto the slot that frees first (LPT list scheduling)."""
    free = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def hours(s: float) -> str:
    return f"{s / 3600:5.1f} h ({s / 60:6.0f} min)"


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=5.0, help="`reslab data synth --scale`")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=10, help="replicates per model")
    ap.add_argument("--folds", type=int, default=5, help="k-fold folds (seeds must be a multiple of them)")
    ap.add_argument("--batches", type=int, default=300, help="timed training batches per process")
    ap.add_argument("--val-images", type=int, default=1024, help="timed validation images per process")
    ap.add_argument("--work", type=Path, help="scratch project to keep (reused when it is already prepared)")
    ap.add_argument("--max-wait", type=float, default=60.0, help="wait per configuration for other processes to "
                    "go quiet")
    ap.add_argument("--child", choices=ROLES, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.work, args.child, args.seed, args.threads, args.batches, args.val_images)
        return

    import torch

    from reslab.config import load_params
    from reslab.hardware import available_cores

    started = time.perf_counter()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    picked = [line for line in lscpu if line.split(":")[0] in ("Model name", "CPU(s)", "Thread(s) per core")]
    print(f"python benchmarks/scale.py {' '.join(sys.argv[1:])}".rstrip()
          + f"  (niceness {os.nice(0)}); {datetime.date.today()}; torch {torch.__version__}")
    print("lscpu: " + "; ".join(" ".join(line.split()) for line in picked) if picked else f"CPU: {cpu_model()}")
    print(f"available cores: {available_cores()}; GPU: none was lent to this work, so GPU packing (issue 22 point 5) "
          "is not measured")

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="reslab-scale-")
    work = args.work or Path(tmp.name)
    try:
        print(f"\nData: the built-in generator at --scale {args.scale:g}, {args.image_size} px, "
              f"{args.folds}-fold k-fold x {args.seeds // args.folds} repeats (scratch project {work})")
        if not (work / "artifacts/prepared/all_images.npy").is_file():
            for line in scratch_project(work, args.scale, args.image_size, args.seeds, args.folds):
                print(line, flush=True)
        lines, reps = data_summary(work)
        print("\n".join(lines), flush=True)
        params = load_params(work / "params.yaml")
        epochs, min_epochs = params.train.epochs, params.train.min_epochs
        quiet = QuietWait(5 * args.max_wait)
        results: dict[tuple[str, int, int], Measured] = {}
        for processes, threads in CONFIGS:
            for role in ROLES:
                quiet(args.max_wait)
                print(f"... {role}, {processes} process(es) x {threads} thread(s)", file=sys.stderr, flush=True)
                results[role, processes, threads] = measure(work, role, processes, threads, args)
    finally:
        if tmp is not None:
            tmp.cleanup()

    first = next(iter(results.values())).runs[0]
    layout = first["precision"] + (" + channels_last" if first["channels_last"] else "")
    print(f"\nTraining: {args.batches} timed batches of {params.train.batch_size} per process (a random subset of "
          f"replicate 1's train split, the second process replicate 2's: not one full epoch), then validation on "
          f"{args.val_images} images at batch {max(params.train.batch_size, 256)}; {layout}, augmentation on; "
          f"epoch s = the replicate's {first['n_train']} train / {first['n_val']} val images at the measured rate")
    head = (f"  {'model':<10}{'processes x threads':>21}{'train img/s':>13}{'machine img/s':>15}{'train s/epoch':>15}"
            f"{'val img/s':>11}{'val s/epoch':>13}{'epoch s':>9}{'others':>8}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for (role, processes, threads), m in results.items():
        print(f"  {role:<10}{f'{processes} x {threads}':>21}{m.train_img_s:13.1f}{processes * m.train_img_s:15.1f}"
              f"{m.train_epoch_s:15.1f}{m.val_img_s:11.1f}{m.val_epoch_s:13.1f}"
              f"{m.train_epoch_s + m.val_epoch_s:9.1f}{m.others:8.2f}")
    print("  (train img/s: per process; machine img/s: all processes together; others: cores other processes used "
          "during the timed training)")

    # ------------------------------------------------------------------- projection
    epoch_s = {role: results[role, 2, 1].train_epoch_s + results[role, 2, 1].val_epoch_s for role in ROLES}
    replicate_s = {role: epochs * epoch_s[role] for role in ROLES}
    jobs = [replicate_s[role] for role in ROLES for _ in range(args.seeds)]
    print(f"\nProjection: {args.seeds} seeds x {len(ROLES)} models at the {epochs}-epoch cap (train.epochs; early "
          f"stopping can end a replicate sooner, never before train.min_epochs = {min_epochs})")
    print(f"  one replicate = {epochs} x epoch s, at the rate of 2 processes x 1 thread: "
          + ", ".join(f"{role} {epochs} x {epoch_s[role]:.1f} s = {hours(replicate_s[role])}" for role in ROLES))
    print(f"  wall(M machines) = makespan of the {len(jobs)} replicates laid longest first onto "
          f"{SLOTS_PER_MACHINE} x M one-thread slots (replicates.jobs 2 x train.num_threads 1 per machine); "
          "ideal = sum of replicates / slots")
    for m in MACHINES:
        slots = SLOTS_PER_MACHINE * m
        print(f"  {m} machine(s), {slots:2d} slots: {hours(makespan(jobs, slots))}   ideal {hours(sum(jobs) / slots)}"
              f"   at the {min_epochs}-epoch floor {hours(makespan(jobs, slots) * min_epochs / epochs)}")
    solo = {role: epochs * (results[role, 1, 2].train_epoch_s + results[role, 1, 2].val_epoch_s) for role in ROLES}
    print(f"  for contrast, one machine training one replicate at a time on 2 threads: "
          f"{hours(args.seeds * sum(solo.values()))}")
    print("  issue 22 estimated about 23 h on one machine (32-px throughput x 16 for the pixels); not included "
          "here: each stage's start-up, MLflow logging and checkpoints (seconds per replicate)")
    print(f"\nwaited {quiet.waited_s:.0f} s for other processes to go quiet; whole run "
          f"{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
