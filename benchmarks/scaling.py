"""How one training epoch's time and memory grow with the number of images.

    .venv/bin/python benchmarks/scaling.py                     # 1k, 4k, 16k, 64k images: ~4 min on 2 cores
    .venv/bin/python benchmarks/scaling.py --sizes 1000 4000 16000

Each size is a prepared split as the prepare stage writes it (a uint8 .npy, memory-mapped), made by tiling the real
prepared training images of artifacts/prepared (decoding 64k JPEGs would only time the decoder; prepare's decode
cost per image is in benchmarks/throughput.py). Every size trains one epoch of the study's ResNet with reslab's
loop (ArrayLoader + BatchAugment + resolve_precision("auto")) in a fresh process, so each peak is its own (one
torch thread by default: the per-image time is what is compared across sizes, and on a shared machine a busy
neighbour stalls 2-thread OpenMP runs; --threads 0 uses the training default):
- epoch s and ms/image: linear time means ms/image stays flat;
- peak anon MB: the process's own memory (heap, torch, batches) - flat: it does not grow with the data set;
- mapped MB: peak resident pages of the memory-mapped array in this process (from /proc/self/smaps) - at most the
  array itself, and clean page cache the OS can drop and re-read, so a split larger than RAM still trains;
- peak RSS MB: VmHWM, everything resident including torch's libraries and the mapped pages;
- the last row loads the largest split into RAM instead (np.load without mmap), for contrast: anon grows by the
  whole array.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from machine import HZ, QuietWait, busy_jiffies, mapped_kb, own_cpu_s, status_kb

ROOT = Path(__file__).resolve().parents[1]
MEMORY = ("VmHWM", "RssAnon")  # the /proc/self/status fields a child reports


def write_split(out: Path, n: int) -> int:
    """A prepared train/val pair of n (and 256) images tiled from artifacts/prepared; returns the array's bytes."""
    src_images = np.load(ROOT / "artifacts/prepared/train_images.npy", mmap_mode="r")
    src_labels = np.load(ROOT / "artifacts/prepared/train_labels.npy")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", n), ("val", 256)):
        images = np.lib.format.open_memmap(out / f"{name}_images.npy", mode="w+", dtype=np.uint8,
                                           shape=(rows, *src_images.shape[1:]))
        for start in range(0, rows, len(src_images)):
            k = min(len(src_images), rows - start)
            images[start:start + k] = src_images[:k]
        images.flush()
        del images
        np.save(out / f"{name}_labels.npy", np.resize(src_labels, rows))
    (out / "classes.json").write_text((ROOT / "artifacts/prepared/classes.json").read_text())
    return (out / "train_images.npy").stat().st_size


def child(prepared: Path, in_ram: bool, model_name: str, batch_size: int, threads: int) -> dict:
    """One epoch in this fresh process; memory sampled every 0.5 s."""
    import torch

    from reslab.config import AugmentConfig, RuntimeConfig, TrainingConfig
    from reslab.data.augment import BatchAugment
    from reslab.data.prepared import ImageArrays, load_prepared
    from reslab.models import create_model
    from reslab.training import ArrayLoader, make_optimizer, setup_runtime, to_device, train_one_epoch

    precision = setup_runtime(RuntimeConfig(precision="auto", device="cpu", num_threads=threads), who="scaling")
    data = load_prepared(prepared, "train")
    if in_ram:
        data = ImageArrays(np.load(prepared / "train_images.npy"), data.labels, data.classes)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=len(data.classes), image_size=data.images.shape[1])
    model = to_device(model, precision)
    opt = make_optimizer(model, 1e-3)
    augment = BatchAugment(AugmentConfig())
    # what the loop reads of a run's config: the fair recipe's switches (BatchNorm trains)
    config = TrainingConfig(model=model_name, model_args={}, image_size=data.images.shape[1], seed=0,
                            batch_size=batch_size, lr=1e-3, epochs=1, patience=0, augment=AugmentConfig())
    warm = ImageArrays(np.array(data.images[:4 * batch_size]), data.labels[:4 * batch_size], data.classes)
    train_one_epoch(model, ArrayLoader(warm, batch_size, shuffle=True), opt, config, precision, augment,
                    progress=False)
    array_path = str((prepared / "train_images.npy").resolve())
    peak = {"RssAnon": 0, "array": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):  # rarely: a sampling thread preempts the training threads
            peak["RssAnon"] = max(peak["RssAnon"], status_kb("self", MEMORY)["RssAnon"])
            peak["array"] = max(peak["array"], mapped_kb(array_path))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    loader = ArrayLoader(data, batch_size, shuffle=True, seed=0)
    loader.set_epoch(1)
    t0 = time.perf_counter()
    train_one_epoch(model, loader, opt, config, precision, augment, torch.Generator().manual_seed(1), progress=False)
    epoch_s = time.perf_counter() - t0
    stop.set()
    thread.join()
    after = status_kb("self", MEMORY)
    return {"n": len(data), "epoch_s": epoch_s, "peak_anon_mb": max(peak["RssAnon"], after["RssAnon"]) / 1024,
            "peak_map_mb": max(peak["array"], mapped_kb(array_path)) / 1024, "hwm_mb": after["VmHWM"] / 1024,
            "threads": torch.get_num_threads(), "precision": precision.name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 4000, 16000, 64000])
    ap.add_argument("--model", default="resnet")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (0: default_threads()); one "
                    "thread keeps ms/image steady on a shared machine, where a busy neighbour stalls 2-thread runs")
    ap.add_argument("--no-in-ram", action="store_true", help="skip the in-RAM contrast row")
    ap.add_argument("--max-wait", type=float, default=60.0, help="wait per size for other processes to go quiet")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--in-ram", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.in_ram, args.model, args.batch_size, args.threads)))
        return
    if not (ROOT / "artifacts/prepared/train_images.npy").is_file():
        sys.exit("artifacts/prepared not found: run `dvc repro prepare` first")
    quiet = QuietWait(5 * args.max_wait)
    runs = [(n, False) for n in args.sizes] + ([] if args.no_in_ram else [(max(args.sizes), True)])
    print(f"One epoch of `{args.model}` (batch {args.batch_size}) per size, each in a fresh process; reslab's loop.")
    head = (f"  {'images':>8}{'loaded':>8}{'array MB':>10}{'epoch s':>9}{'ms/image':>10}{'peak anon MB':>14}"
            f"{'mapped MB':>11}{'peak RSS MB':>13}{'others':>8}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    with tempfile.TemporaryDirectory() as tmp:
        for n, in_ram in runs:
            split = Path(tmp) / str(n)
            size = write_split(split, n) if not split.exists() else (split / "train_images.npy").stat().st_size
            quiet(args.max_wait)
            cmd = [sys.executable, __file__, "--child", str(split), "--model", args.model,
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            cmd += ["--in-ram"] if in_ram else []
            t, busy, mine = time.perf_counter(), busy_jiffies(), own_cpu_s()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            others = max(0.0, (busy_jiffies() - busy) / HZ - (own_cpu_s() - mine)) / (time.perf_counter() - t)
            if proc.returncode != 0:
                sys.exit(f"child for {n} images failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {n:>8}{'RAM' if in_ram else 'mmap':>8}{size / 2**20:10.0f}{r['epoch_s']:9.1f}"
                  f"{1e3 * r['epoch_s'] / n:10.2f}{r['peak_anon_mb']:14.0f}{r['peak_map_mb']:11.0f}"
                  f"{r['hwm_mb']:13.0f}{others:8.2f}", flush=True)
    print(f"({r['precision']}, {r['threads']} threads; others: mean cores used by other processes during the run; "
          f"waited {quiet.waited_s:.0f} s for quiet)")


if __name__ == "__main__":
    main()
