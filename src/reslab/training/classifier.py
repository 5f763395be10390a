"""The reusable training entry point: `train_classifier` builds a `TrainingConfig`'s model and runs `fit`; the
training stages, the sweeps, the depth study and the benchmarks all call it. `training_params` is what MLflow
records of a config, `fingerprint` what identifies it for resuming."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

from torch import nn

from ..config import AugmentConfig, flatten
from ..config.resolve import TrainingConfig
from ..data.prepared import ImageArrays
from ..models import create_model
from ..models.init import keras_init_, set_batchnorm_
from .loader import ArrayLoader
from .loop import FitResult, fit
from .runtime import Precision, seed_everything, to_device


def train_classifier(config: TrainingConfig, train: ImageArrays, val: ImageArrays, *, precision: Precision,
                     checkpoint: Path | None = None, fingerprint: str = "", extra: dict | None = None,
                     on_epoch_end: Callable[[dict[str, float]], None] | None = None,
                     should_stop: Callable[[int, dict[str, float]], bool] | None = None,
                     progress: bool = True) -> tuple[nn.Module, FitResult]:
    """Build `config.model` and train it on `train`, validating on `val`. No files besides the checkpoint.

    Args:
        config: the resolved training config (`config.resolve`).
        train: the train split.
        val: the validation split.
        precision: device, autocast and memory-format plan (`setup_runtime(config.runtime)`).
        checkpoint, fingerprint, extra, on_epoch_end, should_stop, progress: as in `fit`.
    """
    seed_everything(config.seed)
    model = create_model(config.model, num_classes=len(train.classes), image_size=config.image_size,
                         **config.model_args)
    if config.init == "keras":
        keras_init_(model)
    elif config.init != "torch":
        raise ValueError(f"TrainingConfig.init {config.init!r}: accepted 'torch' or 'keras'")
    set_batchnorm_(model, config.bn_momentum, config.bn_eps)
    model = to_device(model, precision)
    loaders = (ArrayLoader(train, config.batch_size, shuffle=True, seed=config.seed, device=precision.device),
               ArrayLoader(val, max(config.batch_size, 256), shuffle=False, device=precision.device))
    result = fit(model, loaders, config, precision=precision, checkpoint=checkpoint, fingerprint=fingerprint,
                 extra=extra, on_epoch_end=on_epoch_end, should_stop=should_stop, progress=progress)
    return model, result


def training_params(config: TrainingConfig) -> dict:
    """The effective training settings under the same keys for every model (MLflow's compare view lines them up):
    model, model_args.*, lr, epochs, patience, min_epochs, batch_size, image_size, seed, recipe, init, adam_eps,
    bn_*, restore_best, interpolation, augment.* (an unaugmented model: every range 0 and no flip). The runtime is
    not among them (runs are tagged with it)."""
    flat = flatten({k: v for k, v in asdict(config).items() if k not in ("augment", "runtime")})
    augment = asdict(config.augment) if config.augment is not None else \
        {f.name: False if f.type in (bool, "bool") else 0.0 for f in fields(AugmentConfig)}
    return {**flat, **flatten({"augment": augment})}


def fingerprint(params: dict, prepared_dir: Path) -> str:
    """Identifies a training configuration (for resume checkpoints and MLflow family runs): `params` plus the
    prepared train/val arrays' sizes and label content (kfold: the `all` array's, which every replicate selects
    from)."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    names = ("train", "val") + (("all",) if (prepared_dir / "all_labels.npy").is_file() else ())
    for name in names:
        labels = prepared_dir / f"{name}_labels.npy"
        h.update(labels.read_bytes() if labels.is_file() else b"")
        images = prepared_dir / f"{name}_images.npy"
        h.update(str(images.stat().st_size if images.is_file() else 0).encode())
    return h.hexdigest()[:16]
