"""One training loop for every model: `train_one_epoch` / `evaluate` return metric dicts; `fit` adds early
stopping and an atomic per-epoch checkpoint to resume from. Nothing here knows about MLflow: callers pass
`on_epoch_end`."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..config.resolve import TrainingConfig
from ..data.augment import BatchAugment
from ..models.init import freeze_batchnorm_
from .loader import ArrayLoader, to_input
from .runtime import Precision, compile_model

CHECKPOINT_FORMAT = 1


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def make_optimizer(model: nn.Module, lr: float, eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam, fused (one kernel over all parameters instead of one per tensor) on CPU and CUDA; `eps` is PyTorch's
    default (Keras': 1e-7)."""
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=lr, eps=eps,
                            fused=True if device.type in ("cpu", "cuda") else None)


def lr_at(epoch: int, lr: float, milestones: tuple[int, ...] = (), gamma: float = 0.1) -> float:
    """The step schedule's learning rate in `epoch` (1-based): `lr` times `gamma` for every milestone already
    passed, so epoch m + 1 is the first at the lower rate (torch's MultiStepLR stepped once per epoch). A pure
    function of the epoch, so a resumed run needs no scheduler state."""
    return lr * gamma ** sum(epoch > m for m in milestones)


# ----------------------------------------------------------------------------- one epoch


def _check_finite(loss_sum: torch.Tensor, batch: int) -> None:
    """Raise DivergedError when the running loss sum is NaN or infinite (one bad batch poisons the sum)."""
    value = loss_sum.item()
    if not math.isfinite(value):
        raise DivergedError(f"loss became {value} by batch {batch}")


def train_one_epoch(model: nn.Module, loader: ArrayLoader, optimizer: torch.optim.Optimizer,
                    config: TrainingConfig, precision: Precision, augment: Callable[..., torch.Tensor] | None = None,
                    generator: torch.Generator | None = None, progress: bool = True,
                    desc: str = "train") -> dict[str, float]:
    """One pass over `loader`; returns {"loss", "accuracy"} averaged over images. `config.bn_frozen` keeps every
    BatchNorm in inference mode (`models.init.freeze_batchnorm_`: the study's ResNet bug, on purpose); `augment`
    is `config.augment`'s batch transform (built once per `fit`), drawing from `generator`.

    Loss and accuracy are summed on the batch's device and read back every `sync_every` batches (every batch on
    CPU, where reading is free; every 25 on CUDA, where each read stalls the queue). fp16 uses a GradScaler that
    starts afresh each epoch, so an epoch's result depends only on the state at its start (resume-equivalence).
    """
    model.train()
    if config.bn_frozen:
        freeze_batchnorm_(model)
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


def resumable_state(path: Path | None, fingerprint: str) -> dict | None:
    """The checkpoint at `path` if `fit` would resume from it (same format and configuration), else None."""
    state = load_checkpoint(path) if path else None
    if state and (state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint):
        return None  # a checkpoint of another configuration: start over
    return state


def fit(model: nn.Module, loaders: tuple[ArrayLoader, ArrayLoader], config: TrainingConfig, *,
        precision: Precision, checkpoint: Path | None = None, fingerprint: str = "", extra: dict | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        should_stop: Callable[[int, dict[str, float]], bool] | None = None, progress: bool = True) -> FitResult:
    """Adam training of `model` by `config`, with early stopping on val loss; the best weights are restored into
    `model` at the end (unless `config.restore_best` is False: then `model` keeps the last epoch's weights).

    With `checkpoint`, the full state (weights, optimizer, early-stopping counters, history, `extra`) is saved after
    every epoch and a later call with the same `fingerprint` continues after the last finished epoch. Each epoch
    draws its shuffling, augmentation and dropout randomness from (config.seed, epoch), so a resumed run reproduces
    the uninterrupted one.

    Of `config` (`config.resolve.TrainingConfig`) fit reads the budget (epochs, patience, min_epochs: early stopping
    never ends training before it), the optimizer (lr, lr_milestones / lr_gamma: `lr_at`, adam_eps), seed,
    augment, bn_frozen, restore_best and compile (train through `torch.compile(model)`; validation runs eagerly).

    Args:
        model: the network (already on the device).
        loaders: the shuffled training batches and the validation batches.
        config: the resolved training config.
        precision: autocast / memory-format plan.
        checkpoint: resume file; removed by the caller when the stage has finished.
        fingerprint: identifies the configuration; a checkpoint with another fingerprint is ignored.
        extra: caller's data stored in the checkpoint (e.g. the MLflow run id); returned in FitResult.extra.
        on_epoch_end: called with each finished epoch's row (epoch, train_loss, ..., epoch_time_s).
        should_stop: called after each epoch; True ends training (sweep pruning).
        progress: show progress bars.
    """
    train_loader, val_loader = loaders
    epochs, patience, seed = config.epochs, config.patience, config.seed
    augment = BatchAugment(config.augment) if config.augment is not None else None
    optimizer = make_optimizer(model, config.lr, config.adam_eps)
    step_model = compile_model(model, precision.device) if config.compile else model
    state = resumable_state(checkpoint, fingerprint)
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
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, config.lr, config.lr_milestones, config.lr_gamma)
        tr = train_one_epoch(step_model, train_loader, optimizer, config, precision, augment, generator, progress,
                             desc=f"epoch {epoch}")
        va = evaluate(model, val_loader, precision)
        if not math.isfinite(va["loss"]):
            raise DivergedError(f"validation loss became {va['loss']} at epoch {epoch}")
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": tr["loss"],
               "train_accuracy": tr["accuracy"], "val_loss": va["loss"],
               "val_accuracy": va["accuracy"], "epoch_time_s": time.perf_counter() - t0}
        history.append(row)
        if va["loss"] < best_val_loss:
            best_val_loss, best_epoch, bad_epochs = va["loss"], epoch, 0
            best_state = _cpu_state(model)
        else:
            bad_epochs += 1
        stopped = patience > 0 and bad_epochs >= patience and epoch >= config.min_epochs
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
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, best_val_loss, stopped and len(history) < epochs, resumed_from, extra)
