"""One training loop for every model: `train_one_epoch` / `evaluate` return metric dicts; `fit` adds early
stopping and a resumable checkpoint. Nothing here knows about MLflow: callers pass `on_epoch_end`."""
from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import ConfigError
from .data.prepared import ImageArrays

CHECKPOINT_FORMAT = 1


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


# ----------------------------------------------------------------------------- device, precision, threads


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device("cuda" if setting in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def _native_bf16_in_cpuinfo(text: str) -> bool:
    """True when /proc/cpuinfo text lists a bf16 dot-product instruction set on its first flags line."""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86 / Arm spelling
            return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (x86 AVX512-BF16/AMX-BF16, Arm BF16) and torch's
    oneDNN can use them.

    torch's own `mkldnn._is_mkldnn_bf16_supported()` is also true on AVX512 CPUs *without* bf16 instructions, where
    oneDNN emulates bf16 and runs slower than fp32; hence the CPU's flags are read rather than torch asked.
    """
    if platform.system() != "Linux" or not torch.backends.mkldnn.is_available():
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return _native_bf16_in_cpuinfo(text)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """How a step runs: autocast dtype (None = fp32) and memory format."""

    name: str
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """`auto`: AMP on CUDA (bf16 where supported, else fp16); bf16 autocast on CPUs with native bf16; fp32 otherwise.

    Layout: channels_last on CPU for every dtype (oneDNN's convolutions are NHWC-native: on the 2-core EPYC an fp32
    step runs 1.04-1.27x faster than NCHW, benchmarks/throughput.py), and on CUDA with AMP (tensor cores).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision {setting!r}: accepted {' | '.join(PRECISIONS)}")
    device = torch.device(device)
    if setting == "auto":
        if device.type == "cuda":
            # native bf16 only (Ampere+): the default also says yes where bf16 is emulated (T4, V100) and slow
            setting = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        else:
            setting = "bf16" if cpu_has_native_bf16() else "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setting]
    channels_last = dtype is not None or (device.type == "cpu" and torch.backends.mkldnn.is_available())
    return Precision(setting, device, dtype, channels_last=channels_last)


def _cgroup_cpu_limit() -> int | None:
    """Whole cores allowed by a cgroup CPU quota (containers), or None when there is no quota."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),  # cgroup v2: "<quota|max> <period>"
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            if period_file is not None:
                fields.append(Path(period_file).read_text().strip())
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return max(1, int(int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def default_threads(workers: int = 1) -> int:
    """Intra-op threads for one of `workers` processes sharing this machine's cores (at least 1).

    Never more threads than cores in total: with OpenMP, two 2-thread processes on 2 cores run each epoch several
    times slower than one, as every parallel region waits for a descheduled thread (benchmarks/throughput.py).
    """
    return max(1, available_cores() // max(1, workers))


def oversubscription(num_threads: int, workers: int) -> str | None:
    """A warning when `workers` processes of `num_threads` torch threads each (0: default_threads) ask for more
    threads than this machine's cores; None when they fit."""
    threads = num_threads or default_threads(workers)
    cores = available_cores()
    if threads * workers <= cores:
        return None
    return (f"train.num_threads {num_threads} x {workers} worker(s) = {threads * workers} threads on {cores} cores: "
            f"every OpenMP step then waits for descheduled threads (2 x 2 threads on 2 cores measured 9-34x slower "
            f"per epoch than 2 x 1, benchmarks/throughput.py); set train.num_threads: 0 to share the cores")


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused (one kernel over all parameters) on CPU and CUDA: in a profiled batch-32 bf16 step of the ResNet
    on the 2-core CPU the default for-each Adam took 5.6 % of the time, the fused one 0.8 %."""
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if device.type in ("cpu", "cuda") else None)


def compile_model(model: nn.Module, device: torch.device) -> nn.Module:
    """torch.compile(model) for training steps; the parameters stay `model`'s, so state dicts keep their names.

    Inductor generates C++ on CPU, so a missing compiler is reported here, before any training starts, rather than
    as a traceback from inside the first step."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ConfigError("train.compile is true but no C++ compiler (c++, g++ or clang++) is on PATH, which "
                           "torch.compile needs on CPU; install one or set train.compile: false")
    return torch.compile(model)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- batches


class ArrayLoader:
    """Batches of a prepared split as uint8 (B, 3, H, W) tensors, reproducible per epoch.

    Reading the memory-mapped rows of the next batch overlaps with the current step (one background thread).

    Args:
        data: a prepared split.
        batch_size: images per batch.
        shuffle: reshuffle every epoch with a generator seeded by (seed, epoch), so a resumed run sees the same
            order as an uninterrupted one.
        seed: base seed.
        device: where batches go.
    """

    def __init__(self, data: ImageArrays, batch_size: int, *, shuffle: bool, seed: int = 0,
                 device: torch.device | str = "cpu"):
        if len(data) == 0:
            raise ValueError("cannot iterate an empty split")
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.device = torch.device(device)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.data))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data))

    def _fetch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(idx)  # sequential reads from the memory map; order inside a batch does not matter
        x = torch.from_numpy(self.data.images[idx])  # (B, H, W, 3): fancy indexing copies the rows out of the map
        y = torch.from_numpy(self.data.labels[idx])
        if self.device.type == "cuda":  # pin before the permute: pinning a permuted view would copy it to NCHW
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2), y  # (B, 3, H, W) with channels_last strides, no copy

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._fetch, chunks[0])
            for nxt in chunks[1:] + [None]:
                batch = pending.result()
                if nxt is not None:
                    pending = pool.submit(self._fetch, nxt)
                yield batch


def to_device(model: nn.Module, precision: Precision) -> nn.Module:
    """The model on the step's device, in its memory format (weights in the layout the inputs arrive in)."""
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    return model.to(precision.device, memory_format=fmt)


def to_input(x: torch.Tensor, precision: Precision) -> torch.Tensor:
    """uint8 or float batch -> float in [0, 1] in the step's memory format (one pass: cast and relayout together)."""
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    if x.dtype == torch.uint8:
        return x.to(dtype=torch.float32, memory_format=fmt).div_(255)
    return x.contiguous(memory_format=fmt)


# ----------------------------------------------------------------------------- one epoch


def _check_finite(loss_sum: torch.Tensor, batch: int) -> None:
    """Raise DivergedError when the running loss sum is NaN or infinite (one bad batch poisons the sum)."""
    value = loss_sum.item()
    if not math.isfinite(value):
        raise DivergedError(f"loss became {value} by batch {batch}")


def train_one_epoch(model: nn.Module, loader: ArrayLoader, optimizer: torch.optim.Optimizer,
                    precision: Precision, augment: Callable[..., torch.Tensor] | None = None,
                    generator: torch.Generator | None = None, progress: bool = True,
                    desc: str = "train") -> dict[str, float]:
    """One pass over `loader`; returns {"loss", "accuracy"} averaged over images.

    Loss and accuracy are summed on the batch's device and read back every `sync_every` batches (every batch on
    CPU, where reading is free; every 25 on CUDA, where each read stalls the queue). fp16 uses a GradScaler that
    starts afresh each epoch, so an epoch's result depends only on the state at its start (resume-equivalence).
    """
    model.train()
    device = precision.device
    sync_every = 1 if device.type == "cpu" else 25
    scaler = (torch.amp.GradScaler(device.type, init_scale=2.0 ** 12) if precision.dtype == torch.float16
              else None)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = batch = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for batch, (x, y) in enumerate(bar, 1):
        x = augment(x, generator) if augment is not None else x
        x = to_input(x, precision)
        with precision.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        n = len(y)
        total_loss += loss.detach().double() * n
        correct += (logits.detach().argmax(1) == y).sum()
        seen += n
        if batch % sync_every == 0:
            _check_finite(total_loss, batch)  # on CPU this runs before the batch's step, as every batch is checked
            if progress:
                bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                refresh=False)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    _check_finite(total_loss, batch)
    return {"loss": total_loss.item() / seen, "accuracy": correct.item() / seen}


@torch.no_grad()
def predict_logits(model: nn.Module, loader: ArrayLoader, precision: Precision) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) float32 and labels (N,) in the loader's order (use shuffle=False)."""
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        with precision.autocast():
            outs.append(model(to_input(x, precision)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def evaluate(model: nn.Module, loader: ArrayLoader, precision: Precision) -> dict[str, float]:
    """{"loss", "accuracy"} on a split, in eval mode."""
    logits, labels = predict_logits(model, loader, precision)
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    return {"loss": F.cross_entropy(t_logits, t_labels).item(),
            "accuracy": (t_logits.argmax(1) == t_labels).float().mean().item()}


# ----------------------------------------------------------------------------- fit: early stopping + resume


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    resumed_from: int  # epochs that were already done when this call started (0 = fresh)
    extra: dict[str, Any] = field(default_factory=dict)


def _cpu_state(module_or_opt: Any) -> dict:
    def move(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu", copy=True)
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return move(module_or_opt.state_dict())


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write: a kill mid-save leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(model: nn.Module, train_loader: ArrayLoader, val_loader: ArrayLoader, *, epochs: int, lr: float,
        patience: int, precision: Precision, seed: int, augment: Callable[..., torch.Tensor] | None = None,
        checkpoint: Path | None = None, fingerprint: str = "", extra: dict | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        should_stop: Callable[[int, dict[str, float]], bool] | None = None, progress: bool = True,
        compile: bool = False) -> FitResult:
    """Adam training with early stopping on val loss; the best weights are restored into `model` at the end.

    With `checkpoint`, the full state (weights, optimizer, early-stopping counters, history, `extra`) is saved after
    every epoch and a later call with the same `fingerprint` continues after the last finished epoch. Each epoch
    draws its shuffling, augmentation and dropout randomness from (seed, epoch), so a resumed run reproduces the
    uninterrupted one.

    Args:
        model: the network (already on the device).
        train_loader: shuffled training batches.
        val_loader: validation batches.
        epochs: maximum number of epochs.
        lr: Adam learning rate.
        patience: epochs without val_loss improvement before stopping (0 disables early stopping).
        precision: autocast / memory-format plan.
        seed: base seed for per-epoch randomness.
        augment: batch augmentation applied to training batches.
        checkpoint: resume file; removed by the caller when the stage has finished.
        fingerprint: identifies the configuration; a checkpoint with another fingerprint is ignored.
        extra: caller's data stored in the checkpoint (e.g. the MLflow run id); returned in FitResult.extra.
        on_epoch_end: called with each finished epoch's row (epoch, train_loss, ..., epoch_time_s).
        should_stop: called after each epoch; True ends training (sweep pruning).
        progress: show progress bars.
        compile: train through `torch.compile(model)` (validation runs eagerly: no second compile for eval mode).
    """
    optimizer = make_optimizer(model, lr)
    step_model = compile_model(model, precision.device) if compile else model
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state and (state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint):
        state = None  # a checkpoint of another configuration: start over
    history: list[dict[str, float]] = []
    best_val_loss, best_epoch, bad_epochs, stopped = math.inf, 0, 0, False
    best_state = None
    extra = dict(extra or {})
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best_val_loss, best_epoch = state["history"], state["best_val_loss"], state["best_epoch"]
        bad_epochs, stopped, best_state = state["bad_epochs"], state["stopped"], state["best_state"]
        extra = {**state["extra"], **{k: v for k, v in extra.items() if k not in state["extra"]}}
    resumed_from = len(history)
    start = resumed_from + 1
    bar = tqdm(range(start, epochs + 1), desc="epochs", initial=resumed_from, total=epochs, disable=not progress,
               unit="epoch")
    for epoch in bar:
        if stopped:
            break
        t0 = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)  # dropout and any other global-RNG draws of this epoch
        generator = torch.Generator().manual_seed(seed * 100_019 + epoch)
        train_loader.set_epoch(epoch)
        tr = train_one_epoch(step_model, train_loader, optimizer, precision, augment, generator, progress,
                             desc=f"epoch {epoch}")
        va = evaluate(model, val_loader, precision)
        if not math.isfinite(va["loss"]):
            raise DivergedError(f"validation loss became {va['loss']} at epoch {epoch}")
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "val_loss": va["loss"],
               "val_accuracy": va["accuracy"], "epoch_time_s": time.perf_counter() - t0}
        history.append(row)
        if va["loss"] < best_val_loss:
            best_val_loss, best_epoch, bad_epochs = va["loss"], epoch, 0
            best_state = _cpu_state(model)
        else:
            bad_epochs += 1
        stopped = patience > 0 and bad_epochs >= patience
        if should_stop is not None and should_stop(epoch, row):
            stopped = True
        if checkpoint:
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "extra": extra, "history": history,
                "model": _cpu_state(model), "optimizer": _cpu_state(optimizer), "best_state": best_state,
                "best_val_loss": best_val_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "stopped": stopped,
            })
        if on_epoch_end is not None:
            on_epoch_end(row)
        bar.set_postfix(val_loss=f"{va['loss']:.3f}", val_acc=f"{va['accuracy']:.3f}", refresh=False)
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, best_val_loss, stopped and len(history) < epochs, resumed_from, extra)


# ----------------------------------------------------------------------------- the reusable training entry point


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run of one model, as plain values (no Params, no roles)."""

    model: str
    model_args: dict[str, Any]
    image_size: int
    seed: int
    batch_size: int
    lr: float
    epochs: int
    patience: int
    augment: Any = None  # an AugmentConfig, or None for no augmentation
    compile: bool = False


def recipe_from_params(params: Any, role: str) -> Recipe:
    """The recipe a training stage uses for `role` (baseline | resnet): the shared budget plus the role's section."""
    stage = params.model_stage(role)
    cfg = params.train
    return Recipe(model=stage.model, model_args=dict(stage.model_args), image_size=params.data.image_size,
                  seed=params.seed, batch_size=cfg.batch_size, lr=stage.lr or cfg.lr, epochs=cfg.epochs,
                  patience=cfg.patience, augment=params.augment if stage.augment else None, compile=cfg.compile)


def train_classifier(recipe: Recipe, train: ImageArrays, val: ImageArrays, *, precision: Precision,
                     checkpoint: Path | None = None, fingerprint: str = "", extra: dict | None = None,
                     on_epoch_end: Callable[[dict[str, float]], None] | None = None,
                     should_stop: Callable[[int, dict[str, float]], bool] | None = None,
                     progress: bool = True) -> tuple[nn.Module, FitResult]:
    """Build `recipe.model` and train it on `train`, validating on `val`. No files besides the checkpoint.

    Args:
        recipe: model, budget and augmentation.
        train: the train split.
        val: the validation split.
        precision: device, autocast and memory-format plan (see `setup_runtime`).
        checkpoint, fingerprint, extra, on_epoch_end, should_stop, progress: as in `fit`.
    """
    from .data.augment import BatchAugment
    from .models import create_model

    seed_everything(recipe.seed)
    model = create_model(recipe.model, num_classes=len(train.classes), image_size=recipe.image_size,
                         **recipe.model_args)
    model = to_device(model, precision)
    augment = BatchAugment(recipe.augment) if recipe.augment is not None else None
    train_loader = ArrayLoader(train, recipe.batch_size, shuffle=True, seed=recipe.seed, device=precision.device)
    val_loader = ArrayLoader(val, max(recipe.batch_size, 256), shuffle=False, device=precision.device)
    result = fit(model, train_loader, val_loader, epochs=recipe.epochs, lr=recipe.lr, patience=recipe.patience,
                 precision=precision, seed=recipe.seed, augment=augment, checkpoint=checkpoint,
                 fingerprint=fingerprint, extra=extra, on_epoch_end=on_epoch_end, should_stop=should_stop,
                 progress=progress, compile=recipe.compile)
    return model, result


def setup_runtime(train_cfg: Any, *, workers: int = 1, who: str = "") -> Precision:
    """Threads, device and precision for one process: torch threads = train.num_threads or cores // workers (a
    warning on stderr, prefixed by `who`, when that oversubscribes the cores); returns the precision plan."""
    import sys

    torch.set_num_threads(train_cfg.num_threads or default_threads(workers))
    warning = oversubscription(train_cfg.num_threads, workers)
    if warning:
        print(f"{who + ': ' if who else ''}warning: {warning}", file=sys.stderr)
    return resolve_precision(train_cfg.precision, resolve_device(train_cfg.device))
