"""Training throughput: the naive pipeline a typical user writes vs reslab's, same data, models and steps.

    .venv/bin/python benchmarks/throughput.py                  # ~12 min on 2 cores
    .venv/bin/python benchmarks/throughput.py --batch-sizes 32 --repeats 2 --no-sweep   # quicker

(a) naive: torchvision ImageFolder on the JPEG folder (the prepared train split's files), PIL decode + Resize + the
    study's augmentation as v2 transforms per image, DataLoader(num_workers=cores, shuffle=True), fp32 NCHW.
(b) reslab: the prepare stage's memory-mapped uint8 arrays, ArrayLoader, BatchAugment, resolve_precision("auto")
    (bf16 autocast + channels_last here), fused Adam, i.e. `reslab.training.train_one_epoch` itself; and the same
    through torch.compile (train.compile: true; --no-compile skips it).

Printed per model and batch size: img/s (median of interleaved repeats, and the best), the ratio, model FLOPs per
training image (forward + backward, torch.utils.flop_counter), achieved GFLOP/s and the fraction of the matmul peak
measured in this run for the step's dtype, peak memory, and the CPU time other processes took meanwhile (this is a
shared machine: a busy neighbour slows a 2-thread OpenMP step far more than its share, so read `others` first).
Also: the model step alone on synthetic tensors (where the time goes), the one-time cost of decoding, and a sweep
check: two concurrent training processes with 1 vs 2 torch threads each.

Needs `dvc repro prepare` (artifacts/prepared) and the data folder; prints figures, asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from reslab.config import AugmentConfig, RuntimeConfig, TrainingConfig, load_params
from reslab.data.augment import BatchAugment, study_transforms
from reslab.data.prepared import ImageArrays, load_prepared, load_resized, prepare_split
from reslab.data.splitting import read_split
from reslab.models import create_model
from reslab.hardware import available_cores, cpu_has_native_bf16, default_threads
from reslab.training import (ArrayLoader, compile_model, make_optimizer, resolve_precision, setup_runtime, to_device,
                             to_input, train_one_epoch)

from flops import conv_ceiling, matmul_peak_gflops, training_flops_per_image
from machine import QuietWait, Usage, cpu_model, monitor, timed

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the two pipelines


def naive_loader(split_csv: Path, classes: list[str], image_size: int, batch_size: int, workers: int,
                 augment: AugmentConfig):
    """What a typical user writes: ImageFolder + PIL transforms + DataLoader(num_workers=cores)."""
    from torchvision import datasets
    from torchvision.transforms import v2

    rows = read_split(split_csv.parent, split_csv.stem)
    files = {str((ROOT / p).resolve()) for p in rows["path"]}
    folder = datasets.ImageFolder(
        str(ROOT / "data"), is_valid_file=lambda p: str(Path(p).resolve()) in files, allow_empty=True,
        transform=v2.Compose([v2.Resize((image_size, image_size)), study_transforms(augment)]))
    to_split_label = {folder.class_to_idx[c]: i for i, c in enumerate(classes)}
    folder.target_transform = to_split_label.__getitem__
    assert len(folder) == len(rows), (len(folder), len(rows))
    return torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=workers)


def loop_config(model: str, image_size: int, batch_size: int, augment: AugmentConfig | None) -> TrainingConfig:
    """The run config reslab's loop gets here: the fair recipe's switches (BatchNorm trains), Adam at 1e-3."""
    return TrainingConfig(model=model, model_args={}, image_size=image_size, seed=0, batch_size=batch_size, lr=1e-3,
                          epochs=1, patience=0, augment=augment)


def endless(loader) -> Iterator:
    while True:
        yield from loader  # a new epoch restarts the workers, as in a user's epoch loop


def naive_step(model, optimizer) -> Callable:
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step.total += loss.item()  # what a user logs

    step.total = 0.0
    return step


CLEAN = 0.1  # a block is clean when other processes used under this many cores meanwhile


@dataclass
class Row:
    name: str
    dtype: str
    img_s: list[float] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    flops: float = 0.0  # per training image

    @property
    def clean(self) -> list[float]:
        return [v for v, u in zip(self.img_s, self.usage) if u.others_cores < CLEAN]

    @property
    def median(self) -> float:
        """Median over the clean blocks, or over all when none was clean."""
        return statistics.median(self.clean or self.img_s)


def run_model(name: str, batch_size: int, args, train: ImageArrays, classes: list[str],
              augment_cfg: AugmentConfig, quiet: QuietWait) -> tuple[list[Row], float, float | None]:
    """The rows of one model and batch size, the GFLOP/s of its convolutions alone in reslab's precision, and the
    seconds torch.compile + the warm-up steps took (None without --compile)."""
    cores = available_cores()
    steps, warmup, size = args.steps, args.warmup, args.image_size
    n_classes = len(classes)
    fp32_nchw = resolve_precision("fp32", torch.device("cpu"))
    fp32_nchw = type(fp32_nchw)("fp32", fp32_nchw.device, None, channels_last=False)
    fast = resolve_precision("auto", torch.device("cpu"))

    def fresh(precision) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The model, and the naive step's default Adam for fp32 NCHW or fit's optimizer for reslab's layouts."""
        torch.manual_seed(0)
        m = to_device(create_model(name, num_classes=n_classes, image_size=size), precision)
        naive = precision is fp32_nchw
        return m, torch.optim.Adam(m.parameters(), lr=1e-3) if naive else make_optimizer(m, 1e-3)

    # FLOPs per training image (the same for both pipelines: same model, same input size)
    m, _ = fresh(fp32_nchw)
    flops = training_flops_per_image(m, torch.rand(batch_size, 3, size, size),
                                     torch.zeros(batch_size, dtype=torch.long), fp32_nchw)

    # model step alone, synthetic tensors: the naive step, then reslab's layout, then reslab's dtype
    def label(p) -> str:
        return f"{p.name} {'CL' if p.channels_last else 'NCHW'}"

    synth_precisions = {label(p): p for p in (fp32_nchw, resolve_precision("fp32", torch.device("cpu")), fast)}
    rows = {("model step, synthetic", k): Row("model step, synthetic", k) for k in synth_precisions}
    naive_key, reslab_key = ("end to end: naive", label(fp32_nchw)), ("end to end: reslab", label(fast))
    rows[naive_key], rows[reslab_key] = Row(*naive_key), Row(*reslab_key)
    x8 = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    y = torch.randint(0, n_classes, (batch_size,))
    variants = [(("model step, synthetic", k), p, *fresh(p)) for k, p in synth_precisions.items()]
    variants = [(key, p, m, opt, m) for key, p, m, opt in variants]  # (key, precision, model, optimizer, forward)
    if args.compile:  # train.compile: the same model and optimizer, stepped through torch.compile
        cm, copt = fresh(fast)
        ckey = ("model step, synthetic", label(fast) + " compiled")
        rows[ckey] = Row(*ckey)
        rows[reslab_key + (" compiled",)] = Row(reslab_key[0], reslab_key[1] + " compiled")
        variants.append((ckey, fast, cm, copt, compile_model(cm, torch.device("cpu"))))
    synth = []
    for key, precision, model, opt, forward in variants:

        def step(forward=forward, opt=opt, precision=precision) -> None:
            x = to_input(x8, precision)
            with precision.autocast():
                loss = F.cross_entropy(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        if key[1].endswith("compiled"):
            compile_s = time.perf_counter() - t0
        synth.append((key, step))

    # end to end
    naive_model, naive_opt = fresh(fp32_nchw)
    naive_it = endless(naive_loader(ROOT / "artifacts/split/train.csv", classes, size, batch_size, cores, augment_cfg))
    nstep = naive_step(naive_model, naive_opt)
    for _ in range(warmup):
        nstep(*next(naive_it))
    fast_model, fast_opt = fresh(fast)
    reslab_runs = {reslab_key: (fast_model, fast_opt)}
    if args.compile:
        reslab_runs[reslab_key + (" compiled",)] = (variants[-1][4], variants[-1][3])
    augment, config = BatchAugment(augment_cfg), loop_config(name, size, batch_size, augment_cfg)
    rng = np.random.default_rng(0)

    def reslab_block(n_steps: int, block: int, forward: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        # the product's own loop over a random subset of the memory-mapped train split
        idx = np.sort(rng.choice(len(train), size=min(len(train), n_steps * batch_size), replace=False))
        subset = ImageArrays(train.images[idx], train.labels[idx], train.classes)
        loader = ArrayLoader(subset, batch_size, shuffle=True, seed=0)
        loader.set_epoch(block)
        train_one_epoch(forward, loader, opt, config, fast, augment, torch.Generator().manual_seed(block),
                        progress=False)

    for forward, opt in reslab_runs.values():
        reslab_block(warmup, 0, forward, opt)

    for r in range(args.repeats):
        for key, step in synth:
            quiet(args.max_wait)
            with monitor() as u:
                for _ in range(steps):
                    step()
            rows[key].img_s.append(steps * batch_size / u.wall_s)
            rows[key].usage.append(u)
        quiet(args.max_wait)
        for _ in range(2 * cores):  # untimed: the batches the workers prefetched while we waited
            nstep(*next(naive_it))
        with monitor() as u:
            for _ in range(steps):
                nstep(*next(naive_it))
        rows[naive_key].img_s.append(steps * batch_size / u.wall_s)
        rows[naive_key].usage.append(u)
        for key, (forward, opt) in reslab_runs.items():
            quiet(args.max_wait)
            with monitor() as u:
                reslab_block(steps, r + 1, forward, opt)
            rows[key].img_s.append(steps * batch_size / u.wall_s)
            rows[key].usage.append(u)
    del naive_it  # stops the workers

    quiet(args.max_wait)
    ceiling = conv_ceiling(fast_model, to_input(x8, fast), fast)
    for row in rows.values():
        row.flops = flops
    if args.compile:
        print(f"    {name}, batch {batch_size}: torch.compile + first {warmup} steps took {compile_s:.1f} s",
              file=sys.stderr, flush=True)
    return list(rows.values()), ceiling, compile_s if args.compile else None


def measure_peaks(peaks: dict[str, float], max_wait: float, quiet: QuietWait) -> None:
    """Update the best matmul GFLOP/s seen per dtype (a peak is the best a quiet machine gives, so keep the max)."""
    quiet(max_wait)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[name] = max(peaks.get(name, 0.0), matmul_peak_gflops(dtype))


def print_table(name: str, batch_size: int, rows: list[Row], flops: float, peaks: dict[str, float]) -> None:
    print(f"\n{name}, batch {batch_size}: {flops / 1e6:.0f} MFLOP per training image (forward + backward)")
    head = (f"  {'pipeline':<24}{'dtype':<19}{'img/s':>8}{'best':>8}{'ratio':>7}{'GFLOP/s':>9}{'% peak':>8}"
            f"{'RSS MB':>8}{'PSS MB':>8}{'others':>8}{'clean':>7}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    base = {kind: next(r.median for r in rows if r.name.startswith(kind)) for kind in ("model step", "end to end")}
    for r in sorted(rows, key=lambda r: r.name.startswith("end to end")):  # model steps first (stable)
        ratio = r.median / base["end to end" if r.name.startswith("end to end") else "model step"]
        gflops = r.median * flops / 1e9
        peak = peaks["bf16" if r.dtype.startswith("bf16") else "fp32"]
        e2e = r.name.startswith("end to end")
        rss = f"{max(u.peak_rss_mb for u in r.usage):8.0f}" if e2e else f"{'':>8}"
        pss = f"{max(u.pss_mb for u in r.usage):8.0f}" if e2e else f"{'':>8}"
        others = statistics.mean(u.others_cores for u in r.usage)
        print(f"  {r.name:<24}{r.dtype:<19}{r.median:8.0f}{max(r.img_s):8.0f}{ratio:6.2f}x"
              f"{gflops:9.0f}{100 * gflops / peak:7.0f}%{rss}{pss}{others:8.2f}{len(r.clean):>5}/{len(r.img_s)}")


# ----------------------------------------------------------------------------- decode cost and sweep workers


def decode_costs(classes: list[str], image_size: int, augment_cfg: AugmentConfig, n: int = 300) -> None:
    from PIL import Image
    from torchvision.transforms import v2

    rows = read_split(ROOT / "artifacts/split", "train")
    paths = [str(ROOT / p) for p in rows["path"][:n]]
    t = timed(lambda: [load_resized(p, image_size) for p in paths]) / len(paths)
    naive = v2.Compose([v2.Resize((image_size, image_size)), study_transforms(augment_cfg)])

    def naive_one(p: str) -> None:
        with Image.open(p) as img:
            naive(img.convert("RGB"))

    t_naive = timed(lambda: [naive_one(p) for p in paths]) / len(paths)
    with tempfile.TemporaryDirectory() as tmp:
        t_prep = timed(lambda: prepare_split(rows, classes, image_size, Path(tmp), "train",
                                              workers=default_threads()))
    print(f"\nDecoding (one core, {len(paths)} training JPEGs): prepare's decode + resize {1e3 * t:.2f} ms/image; "
          f"naive decode + resize + per-image v2 augmentation {1e3 * t_naive:.2f} ms/image (every epoch).")
    print(f"prepare stage for the train split ({len(rows)} images, {default_threads()} processes): {t_prep:.1f} s, "
          f"once per pipeline run; reslab's BatchAugment costs ~{batch_augment_ms(image_size, augment_cfg):.2f} "
          f"ms per batch of 32.")


def batch_augment_ms(image_size: int, cfg: AugmentConfig) -> float:
    aug, g = BatchAugment(cfg), torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, image_size, image_size, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    for _ in range(3):
        aug(x, g)
    return 1e3 * min(timed(lambda: aug(x, g)) for _ in range(20))


def one_process(threads: int, steps: int, batch_size: int, image_size: int, model: str) -> dict:
    """Child process of the sweep check: `steps` training steps of the reslab loop with `threads` torch threads."""
    torch.set_num_threads(threads)
    train = load_prepared(ROOT / "artifacts/prepared", "train")
    precision = resolve_precision("auto", torch.device("cpu"))
    torch.manual_seed(0)
    m = to_device(create_model(model, num_classes=len(train.classes), image_size=image_size), precision)
    opt = make_optimizer(m, 1e-3)
    aug, config = BatchAugment(AugmentConfig()), loop_config(model, image_size, batch_size, AugmentConfig())
    warm = ImageArrays(train.images[:3 * batch_size], train.labels[:3 * batch_size], train.classes)
    train_one_epoch(m, ArrayLoader(warm, batch_size, shuffle=True), opt, config, precision, aug, progress=False)
    part = ImageArrays(train.images[:steps * batch_size], train.labels[:steps * batch_size], train.classes)
    t = timed(lambda: train_one_epoch(m, ArrayLoader(part, batch_size, shuffle=True), opt, config, precision, aug,
                                       progress=False))
    return {"threads": threads, "s_per_step": t / steps, "epoch_s": t / steps * len(train) / batch_size}


def sweep_check(args, quiet: QuietWait) -> None:
    """Two concurrent training processes, as `reslab tune --workers 2` runs them: 1 vs 2 threads each."""
    cores = available_cores()
    print(f"\nSweep workers ({args.sweep_model}, batch {args.batch_sizes[0]}, {args.sweep_steps} steps per process, "
          f"time scaled to one epoch of the {args.train_size} training images; the cleanest of {args.sweep_tries} "
          f"tries):")
    head = (f"  {'processes x threads':<26}{'epoch s (each)':>16}{'img/s (all)':>13}{'vs 1 x ' + str(cores):>10}"
            f"{'others':>8}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    base = None
    for procs, threads in ((1, cores), (2, max(1, cores // 2)), (2, cores)):
        cmd = [sys.executable, __file__, "--one-process", str(threads), "--steps", str(args.sweep_steps),
               "--batch-sizes", str(args.batch_sizes[0]), "--image-size", str(args.image_size),
               "--sweep-model", args.sweep_model]
        tries = []
        for _ in range(args.sweep_tries):
            quiet(args.max_wait)
            with monitor() as u:  # our children are in our tree: `others` is the neighbours' load only
                children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
                outs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
            tries.append((u.others_cores, statistics.mean(o["epoch_s"] for o in outs)))
        others, epoch = min(tries)
        base = base or epoch
        label = f"{procs} x {threads}" + ("  (default_threads)" if threads == default_threads(procs) else "")
        print(f"  {label:<26}{epoch:16.1f}{procs * args.train_size / epoch:13.0f}{epoch / base:9.1f}x{others:8.2f}")


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["baseline", "resnet"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--image-size", type=int, default=None, help="default: data.image_size of the prepared arrays")
    ap.add_argument("--steps", type=int, default=16, help="timed steps per block")
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps before timing")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved blocks per pipeline; the median is shown")
    ap.add_argument("--max-wait", type=float, default=90.0,
                    help="seconds to wait before each timed block for other processes to go quiet (0: never)")
    ap.add_argument("--max-total-wait", type=float, default=600.0, help="cap on all the waiting together")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the main process (0: default_threads())")
    ap.add_argument("--no-sweep", action="store_true", help="skip the two-process sweep check")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="skip the train.compile rows (torch.compile: 5-30 s of compiling per model and batch size)")
    ap.add_argument("--sweep-model", default="resnet")
    ap.add_argument("--sweep-steps", type=int, default=24)
    ap.add_argument("--sweep-tries", type=int, default=2)
    ap.add_argument("--one-process", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    train = load_prepared(ROOT / "artifacts/prepared", "train")
    if args.image_size is None:
        args.image_size = train.images.shape[1]
    if args.image_size != train.images.shape[1]:
        sys.exit(f"artifacts/prepared holds {train.images.shape[1]} px images; run `dvc repro prepare` with "
                 f"data.image_size={args.image_size} first")
    if args.one_process is not None:
        print(json.dumps(one_process(args.one_process, args.steps, args.batch_sizes[0], args.image_size,
                                     args.sweep_model)))
        return

    fast = setup_runtime(RuntimeConfig(precision="auto", device="cpu", num_threads=args.threads), who="throughput")
    quiet = QuietWait(args.max_total_wait)
    augment_cfg = load_params(ROOT / "params.yaml").augment
    print(f"{cpu_model()}, {available_cores()} cores, native bf16: {cpu_has_native_bf16()}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; reslab auto precision: {fast.name}"
          f"{' + channels_last' if fast.channels_last else ''}; {args.image_size} px, {len(train)} training images, "
          f"augmentation magnitude {augment_cfg.magnitude}")
    peaks: dict[str, float] = {}
    tables = []
    for batch_size in args.batch_sizes:
        for name in args.models:
            measure_peaks(peaks, args.max_wait, quiet)
            print(f"... {name}, batch {batch_size}", file=sys.stderr, flush=True)
            tables.append((name, batch_size, *run_model(name, batch_size, args, train, train.classes, augment_cfg,
                                                          quiet)))
    measure_peaks(peaks, args.max_wait, quiet)
    print(f"Matmul peak ({torch.get_num_threads()} threads, 2048^2, best of 8 at each of {len(tables) + 1} "
          f"points in the run): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"img/s: median of the clean interleaved blocks of --steps steps (clean: other processes used < {CLEAN} "
          "cores; of all blocks when none was); best: the fastest block; ratio: vs the fp32 NCHW row of the same "
          "kind; CL: channels_last; fp32 NCHW rows use torch.optim.Adam's default (as a user writes it), the others fit's "
          "fused Adam; GFLOP/s and % peak: from "
          "img/s, of the matmul peak for the row's dtype; RSS: peak of the main process; PSS: main + loader workers "
          "at the end of a block (shared pages split); others: mean cores used by other processes meanwhile")
    for name, batch_size, rows, ceiling, compile_s in tables:
        print_table(name, batch_size, rows, rows[0].flops, peaks)
        if compile_s is not None:
            print(f"  compiled rows (train.compile: true): compiling + {args.warmup} warm-up steps took "
                  f"{compile_s:.1f} s (inductor's on-disk cache makes a repeat faster)")
        print(f"  ceiling: the model's convolutions alone (forward + backward, {fast.name}"
              f"{' CL' if fast.channels_last else ''}, the step's shapes) run at {ceiling:.0f} GFLOP/s = "
              f"{100 * ceiling / peaks['bf16' if fast.name == 'bf16' else 'fp32']:.0f}% of the peak")
    sys.stdout.flush()
    quiet(args.max_wait)
    decode_costs(train.classes, args.image_size, augment_cfg)
    if not args.no_sweep:
        args.train_size = len(train)
        sweep_check(args, quiet)
    print(f"waited {quiet.waited_s:.0f} s in all for other processes to go quiet")
    print(f"peak RSS of this process over the whole run: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
