"""The one place a null key becomes a value: `resolve(params, role)` returns the frozen `TrainingConfig` that
everything below the stages takes (`train_classifier`, `fit`, `train_one_epoch`; its `runtime` goes to
`setup_runtime`); `resolve_runtime` and `resolve_interpolation` are its parts that stages without a role need
(evaluate, prepare). `check_recipe` is the check across sections that needs the resolved values."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..layout import ROLES
from .presets import ORIGINAL, PRESETS, SWITCHES
from .sections import AugmentConfig, ConfigError, ModelStageConfig, Params, TrainConfig

BUDGET_KEYS = ("epochs", "patience", "min_epochs")  # train.<key>: fair's budget, which `original` replaces per role


@dataclass(frozen=True)
class RuntimeConfig:
    """How a process runs (not what it trains): `training.setup_runtime` turns it into threads and a precision plan.

    Args:
        precision: auto | fp32 | bf16 | fp16, the recipe's already applied (`auto` is left to the hardware).
        device: auto | cpu | cuda.
        num_threads: torch threads; 0 = this machine's cores divided between the processes sharing them (sweep
            workers), which makes the numbers depend on the machine.
    """

    precision: str = "auto"
    device: str = "auto"
    num_threads: int = 0


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines one training run of one model, fully resolved (no nulls left to interpret, no
    Params, no roles). Built by `resolve`, or directly (the depth study's cells, tests).

    Args:
        model, model_args: the registered model and its overrides.
        image_size: px of the prepared arrays.
        seed: weight init, batch order and augmentation.
        batch_size, lr, epochs, patience: Adam's batches and rate, the epoch cap, early stopping (0 = never).
        augment: the ranges and magnitude, or None for no augmentation.
        compile: train through torch.compile.
        min_epochs: early stopping never ends training before this epoch.
        restore_best: end with the best-val-loss epoch's weights (False: the last epoch's).
        lr_milestones, lr_gamma: the step schedule (`training.loop.lr_at`); () = constant.
        recipe: the `train.recipe` these values came from (recorded; the values decide).
        init: torch (the layers' own initialisation) | keras (glorot_uniform kernels, zero biases).
        adam_eps: Adam's epsilon.
        bn_momentum, bn_eps: PyTorch convention; None keeps the model's own (PyTorch: 0.1, 1e-5).
        bn_frozen: BatchNorm in inference mode while training (the study's ResNet bug).
        interpolation: how prepare resized the arrays (recorded; training does not resize).
        runtime: how it runs (recorded as tags, not params: it does not define what is trained).
    """

    model: str
    model_args: dict[str, Any]
    image_size: int
    seed: int
    batch_size: int
    lr: float
    epochs: int
    patience: int
    augment: AugmentConfig | None = None
    compile: bool = False
    min_epochs: int = 0
    restore_best: bool = True
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    recipe: str = "fair"
    init: str = "torch"
    adam_eps: float = 1e-8
    bn_momentum: float | None = None
    bn_eps: float | None = None
    bn_frozen: bool = False
    interpolation: str = "bilinear"
    runtime: RuntimeConfig = RuntimeConfig()


def _first_set(*values: Any) -> Any:
    """The first non-null value: the most specific key wins, the preset's comes last."""
    return next((v for v in values if v is not None), None)


def _shared(recipe: str, key: str) -> Any:
    """A preset value both roles share (precision, interpolation: one prepare, one runtime per process)."""
    values = {getattr(preset, key) for preset in PRESETS[recipe].values()}
    assert len(values) == 1, f"config.presets: {recipe}'s {key} differs between roles"
    return values.pop()


def resolve_runtime(params: Params) -> RuntimeConfig:
    """`train.precision / device / num_threads`, `precision: auto` taking the recipe's (original: fp32)."""
    train = params.train
    precision = _first_set(_shared(train.recipe, "precision"), "auto") if train.precision == "auto" \
        else train.precision
    return RuntimeConfig(precision=precision, device=train.device, num_threads=train.num_threads)


def resolve_interpolation(params: Params) -> str:
    """prepare's resize: `data.interpolation`, or the recipe's when null (fair: bilinear, original: nearest)."""
    return _first_set(params.data.interpolation, _shared(params.train.recipe, "interpolation"))


def resolve(params: Params, role: str, seed: int | None = None) -> TrainingConfig:
    """The training config of `role` (baseline | resnet): every null key of its section and of `train:` /
    `data:` takes the value of `train.recipe`'s preset (config.presets); an explicit key wins. A role's key wins
    over train's (init).

    Args:
        params: the validated params.
        role: baseline | resnet.
        seed: the replicate's training seed (weight init, batch order, augmentation); default: the first of
            `replicates.seeds`.
    """
    stage, train = params.model_stage(role), params.train
    preset = PRESETS[train.recipe][role]
    augment = None
    augmented = stage.augment if preset.augment is None else preset.augment  # original's is the notebook's
    if augmented:  # the shared ranges, scaled by the role's own magnitude when it sets one
        augment = (params.augment if stage.augment_magnitude is None
                   else dataclasses.replace(params.augment, magnitude=stage.augment_magnitude))
    def switch(name: str) -> Any:  # the role's key, train's when set, the preset's, then train's budget
        shared = getattr(train, name, None)
        return _first_set(getattr(stage, name, None), None if name in BUDGET_KEYS else shared,
                          getattr(preset, name), shared)

    return TrainingConfig(
        model=stage.model, model_args=dict(stage.model_args), image_size=params.data.image_size,
        seed=params.replicates.seeds[0] if seed is None else seed, batch_size=train.batch_size,
        lr=_first_set(stage.lr, train.lr), augment=augment, compile=train.compile,
        lr_milestones=tuple(train.lr_milestones), lr_gamma=train.lr_gamma, recipe=train.recipe,
        interpolation=resolve_interpolation(params), runtime=resolve_runtime(params),
        **{name: switch(name) for name in SWITCHES})


def check_recipe(params: Params) -> None:
    """Checks across sections: keys that `train.recipe: original` would silently replace, and each role's resolved
    budget (min_epochs <= epochs)."""
    train = params.train
    if train.recipe == "original":
        defaults = TrainConfig()
        for key in BUDGET_KEYS:
            if getattr(train, key) != getattr(defaults, key):
                raise ConfigError(
                    f"train.{key}: {getattr(train, key)!r} has no effect with train.recipe: original, whose "
                    f"per-role budget replaces it (" + ", ".join(f"{r} {getattr(ORIGINAL[r], key)}" for r in ROLES)
                    + f"); set train_<role>.{key} instead (e.g. train_{ROLES[0]}.{key}), or train.recipe: fair")
        for role in ROLES:
            value, preset = params.model_stage(role).augment, ORIGINAL[role].augment
            if value != ModelStageConfig().augment and value != preset:
                raise ConfigError(
                    f"train_{role}.augment: {str(value).lower()} has no effect with train.recipe: original, which "
                    f"augments as the notebook did (" + ", ".join(f"{r} {str(ORIGINAL[r].augment).lower()}"
                                                         for r in ROLES) + "); use train.recipe: fair to choose")
    for role in ROLES:
        resolved, stage = resolve(params, role), params.model_stage(role)
        if resolved.min_epochs > resolved.epochs:
            source = f"train_{role}" if stage.min_epochs is not None else (
                "train" if train.recipe == "fair" else "train.recipe: original")
            raise ConfigError(
                f"train_{role}.min_epochs: {resolved.min_epochs} (from {source}) is out of range; accepted: an "
                f"integer from 0 to the role's epochs ({resolved.epochs}); set train_{role}.min_epochs")
