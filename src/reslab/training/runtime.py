"""How a process runs its steps: torch threads, device, precision (autocast dtype + memory format), compilation and
seeding. `setup_runtime` is the one place a stage, a sweep worker or a benchmark turns `train:` into these."""
from __future__ import annotations

import contextlib
import random
import shutil
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import hardware
from ..config import PRECISIONS, ConfigError


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device("cuda" if setting in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


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

    Layout: channels_last on CPU for every dtype (oneDNN's convolutions are NHWC-native, so fp32 steps run faster
    than NCHW too; benchmarks/throughput.py compares them), and on CUDA with AMP (tensor cores).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision {setting!r}: accepted {' | '.join(PRECISIONS)}")
    device = torch.device(device)
    if setting == "auto":
        if device.type == "cuda":
            # native bf16 only (Ampere+): the default also says yes where bf16 is emulated (T4, V100) and slow
            setting = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        else:
            setting = "bf16" if hardware.cpu_has_native_bf16() else "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setting]
    channels_last = dtype is not None or (device.type == "cpu" and torch.backends.mkldnn.is_available())
    return Precision(setting, device, dtype, channels_last=channels_last)


def setup_runtime(runtime: Any, *, workers: int = 1, who: str = "") -> Precision:
    """Threads, device and precision for one process; returns the precision plan.

    Args:
        runtime: a resolved `config.resolve.RuntimeConfig` (`TrainingConfig.runtime`, `resolve_runtime(params)`),
            or anything with `num_threads`, `device` and `precision` whose `auto` is left to the hardware.
        workers: processes sharing this machine's cores; torch threads = train.num_threads or cores // workers.
        who: prefix of the warning printed on stderr when the threads oversubscribe the cores.
    """
    torch.set_num_threads(runtime.num_threads or hardware.default_threads(workers))
    warning = hardware.oversubscription(runtime.num_threads, workers)
    if warning:
        print(f"{who + ': ' if who else ''}warning: {warning}", file=sys.stderr)
    return resolve_precision(runtime.precision, resolve_device(runtime.device))


def to_device(model: nn.Module, precision: Precision) -> nn.Module:
    """The model on the step's device, in its memory format (weights in the layout the inputs arrive in)."""
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    return model.to(precision.device, memory_format=fmt)


def compile_model(model: nn.Module, device: torch.device) -> nn.Module:
    """torch.compile(model) for training steps; the parameters stay `model`'s, so state dicts keep their names.

    Inductor generates C++ on CPU, so a missing compiler is reported here, before any training starts, rather than
    as a traceback from inside the first step."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ConfigError("train.compile is true but no C++ compiler (c++, g++ or clang++) is on PATH, which "
                           "torch.compile needs on CPU; install one or set train.compile: false")
    return torch.compile(model)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
