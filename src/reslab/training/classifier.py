"""The reusable training entry point: a `Recipe` (model, budget, augmentation as plain values) and
`train_classifier`, which builds the model and runs `fit`. The training stages and the sweeps both call it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..config import AugmentConfig, flatten
from ..data.augment import BatchAugment
from ..data.prepared import ImageArrays
from ..models import create_model
from ..models.init import keras_init_, set_batchnorm_
from .loader import ArrayLoader
from .loop import FitResult, fit
from .runtime import Precision, seed_everything, to_device


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
    min_epochs: int = 0  # early stopping never ends training before this epoch
    restore_best: bool = True  # end with the best-val-loss epoch's weights (False: the last epoch's)
    lr_milestones: tuple[int, ...] = ()  # epochs after which lr is multiplied by lr_gamma (step schedule)
    lr_gamma: float = 0.1
    recipe: str = "fair"  # the train.recipe preset these values came from (recorded; the values below decide)
    init: str = "torch"  # torch: the layers' own initialisation; keras: glorot_uniform kernels, zero biases
    adam_eps: float = 1e-8
    bn_momentum: float | None = None  # PyTorch convention; None keeps the model's own (PyTorch: 0.1)
    bn_eps: float | None = None  # None keeps the model's own (PyTorch: 1e-5)
    bn_frozen: bool = False  # BatchNorm in inference mode while training (the study's ResNet bug)
    interpolation: str = "bilinear"  # how prepare resized the arrays (recorded for the run; training does not resize)


def recipe_from_params(params: Any, role: str, seed: int | None = None) -> Recipe:
    """The recipe a training stage uses for `role` (baseline | resnet): the shared budget plus the role's section.

    Args:
        params: the validated params.
        role: baseline | resnet.
        seed: the replicate's training seed (weight init, batch order, augmentation); default: the first of
            `replicates.seeds`.
    """
    stage = params.model_stage(role)
    cfg = params.train
    switches = params.role_recipe(role)  # train.recipe resolved: explicit keys, else the preset's (config.sections)
    augment = None
    if switches["augment"]:  # the shared ranges, scaled by the role's own magnitude when it sets one
        augment = (params.augment if stage.augment_magnitude is None
                   else dataclasses.replace(params.augment, magnitude=stage.augment_magnitude))
    return Recipe(model=stage.model, model_args=dict(stage.model_args), image_size=params.data.image_size,
                  seed=params.replicates.seeds[0] if seed is None else seed, batch_size=cfg.batch_size,
                  lr=stage.lr or cfg.lr, epochs=switches["epochs"], patience=switches["patience"],
                  augment=augment, compile=cfg.compile, min_epochs=switches["min_epochs"],
                  restore_best=switches["restore_best"], lr_milestones=tuple(cfg.lr_milestones),
                  lr_gamma=cfg.lr_gamma, recipe=cfg.recipe, init=switches["init"], adam_eps=switches["adam_eps"],
                  bn_momentum=switches["bn_momentum"], bn_eps=switches["bn_eps"], bn_frozen=switches["bn_frozen"],
                  interpolation=params.interpolation())


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
    seed_everything(recipe.seed)
    model = create_model(recipe.model, num_classes=len(train.classes), image_size=recipe.image_size,
                         **recipe.model_args)
    if recipe.init == "keras":
        keras_init_(model)
    elif recipe.init != "torch":
        raise ValueError(f"Recipe.init {recipe.init!r}: accepted 'torch' or 'keras'")
    set_batchnorm_(model, recipe.bn_momentum, recipe.bn_eps)
    model = to_device(model, precision)
    augment = BatchAugment(recipe.augment) if recipe.augment is not None else None
    train_loader = ArrayLoader(train, recipe.batch_size, shuffle=True, seed=recipe.seed, device=precision.device)
    val_loader = ArrayLoader(val, max(recipe.batch_size, 256), shuffle=False, device=precision.device)
    result = fit(model, train_loader, val_loader, epochs=recipe.epochs, lr=recipe.lr, patience=recipe.patience,
                 precision=precision, seed=recipe.seed, augment=augment, checkpoint=checkpoint,
                 fingerprint=fingerprint, extra=extra, on_epoch_end=on_epoch_end, should_stop=should_stop,
                 progress=progress, compile=recipe.compile, min_epochs=recipe.min_epochs,
                 restore_best=recipe.restore_best, lr_milestones=recipe.lr_milestones, lr_gamma=recipe.lr_gamma,
                 adam_eps=recipe.adam_eps, bn_frozen=recipe.bn_frozen)
    return model, result


def recipe_params(recipe: Recipe) -> dict:
    """The effective training settings under the same keys for every model (MLflow's compare view lines them up):
    model, model_args.*, lr, epochs, patience, min_epochs, batch_size, image_size, seed, recipe, init, adam_eps,
    bn_*, restore_best, interpolation, augment.* (an unaugmented model: every range 0 and no flip)."""
    flat = flatten({k: v for k, v in asdict(recipe).items() if k != "augment"})
    augment = asdict(recipe.augment) if recipe.augment is not None else \
        {f.name: False if f.type in (bool, "bool") else 0.0 for f in fields(AugmentConfig)}
    return {**flat, **flatten({"augment": augment})}


def fingerprint(params: dict, prepared_dir: Path) -> str:
    """Identifies a training configuration (for resume checkpoints and MLflow family runs): `params` plus the
    prepared train/val arrays' sizes and label content."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for name in ("train", "val"):
        labels = prepared_dir / f"{name}_labels.npy"
        h.update(labels.read_bytes() if labels.is_file() else b"")
        images = prepared_dir / f"{name}_images.npy"
        h.update(str(images.stat().st_size if images.is_file() else 0).encode())
    return h.hexdigest()[:16]
