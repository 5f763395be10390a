"""The sections of params.yaml, one frozen dataclass each, and the value checks that types cannot express."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..layout import ROLES

PARAMS_FILE = "params.yaml"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train.precision; see training.resolve_precision
AUGMENT_RANGES = ("rotation", "shift", "shear", "zoom", "brightness")  # AugmentConfig's ranges, scaled by magnitude
MAX_MAGNITUDE = 3.0  # augment.magnitude: 1 = the study's ranges
PRUNERS = ("median", "percentile", "hyperband", "none")
RECIPES = ("fair", "original")  # train.recipe
INITS = ("torch", "keras")  # train.init: PyTorch's layer defaults, or Keras' (glorot_uniform kernels, zero biases)
INTERPOLATIONS = ("bilinear", "nearest")  # data.interpolation: prepare's resize

# What `train.recipe: original` sets: the study's own Keras notebook (shared/reference/README.md, "What the notebook
# does that reslab does not"; shared/reference/seed_notebook.py), shared by both roles and then per role. Each value
# applies where its key is left null; `train.precision: auto` counts as unset. Keras' constants in PyTorch's terms:
# BatchNormalization(momentum=0.99) keeps 0.99 of the running value, i.e. PyTorch momentum 0.01; Adam's epsilon
# 1e-7 (Keras adds it to sqrt(v) before the bias correction, PyTorch after: the same value once 0.999**t is small).
ORIGINAL_RECIPE: dict[str, dict[str, Any]] = {
    "shared": {"init": "keras", "adam_eps": 1e-7, "bn_momentum": 0.01, "bn_eps": 1e-3, "precision": "fp32",
               "interpolation": "nearest"},
    # EarlyStopping(patience=3) on val_loss without restore_best_weights, model.fit(epochs=50), no augmentation
    "baseline": {"augment": False, "epochs": 50, "patience": 3, "min_epochs": 0, "restore_best": False,
                 "bn_frozen": False},
    # a fixed 40-epoch GradientTape loop (no early stopping, last weights) calling model(x) without training=True,
    # so BatchNormalization runs in inference mode throughout; the augmented generator
    "resnet": {"augment": True, "epochs": 40, "patience": 0, "min_epochs": 0, "restore_best": False,
               "bn_frozen": True},
}
# What `train.recipe: fair` sets where a switch is null: reslab's own choices (PyTorch's Adam epsilon; bn_* None
# leaves the constants the model was built with). Its budget is the shared train.epochs / patience / min_epochs.
FAIR_RECIPE: dict[str, Any] = {"adam_eps": 1e-8, "bn_momentum": None, "bn_eps": None,
                               "interpolation": "bilinear", "restore_best": True, "bn_frozen": False}
# fair's initialisation, per role, each model's better one on validation (README, "Parity"): PyTorch's layer defaults
# draw U(+-1/sqrt(fan_in)), a third of glorot's variance, and the plain CNN, with no BatchNorm to rescale its
# activations, trains worse from them (10 seeds, 32 px: 0.919 -> 0.944 val accuracy with glorot); the ResNet, with
# BatchNorm, trains worse from glorot (0.889 -> 0.860).
FAIR_INIT: dict[str, str] = {"baseline": "keras", "resnet": "torch"}
SHARED_SWITCHES = ("init", "adam_eps", "bn_momentum", "bn_eps")  # train.<key>: null = the recipe's
ROLE_SWITCHES = ("epochs", "patience", "min_epochs", "restore_best", "bn_frozen")  # train_<role>.<key>: likewise
BUDGET_KEYS = ("epochs", "patience", "min_epochs")  # train.<key>: the fair recipe's budget, replaced by `original`


class ConfigError(ValueError):
    """A params file or override that cannot be accepted; the message names the key at fault."""


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 32  # px, square; 128 reproduces the study
    interpolation: Literal[INTERPOLATIONS] | None = None  # prepare's resize; None = the recipe's (fair: bilinear)


@dataclass(frozen=True)
class FilterConfig:
    min_images_per_class: int = 100  # the study kept classes with more than 100 images
    min_image_size: int = 8  # px; an image narrower or shorter than this is skipped as carrying no information


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.2
    test_fraction: float = 0.15
    test_per_class: int | None = None  # e.g. 50 as in the study; overrides test_fraction when set


@dataclass(frozen=True)
class AugmentConfig:
    """The study's Keras ImageDataGenerator ranges, all scaled by `magnitude` (0 = off, 1 = the study)."""

    magnitude: float = 1.0
    rotation: float = 40.0  # degrees, +/-
    shift: float = 0.2  # fraction of width / height, +/-
    shear: float = 0.2  # degrees, +/- (Keras' shear_range is an angle in degrees)
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom] per axis
    brightness: float = 0.2  # factor in [1 - b, 1 + b]; the study's 0.8-1.2
    hflip: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The shared budget: both models get exactly this (each replicate with its own seed)."""

    epochs: int = 40  # cap
    batch_size: int = 32
    lr: float = 1e-3  # Adam, as in the study (the rate of the first epochs)
    lr_milestones: tuple[int, ...] = ()  # epochs after which lr is multiplied by lr_gamma; () = constant (the study)
    lr_gamma: float = 0.1
    patience: int = 10  # epochs without val_loss improvement before stopping (0 = never stop early)
    min_epochs: int = 20  # early stopping never ends training before this epoch (the first epochs are noisy)
    precision: Literal[PRECISIONS] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 0  # torch intra-op threads; 0 = all cores (divided between sweep workers)
    compile: bool = False  # torch.compile the training forward + backward (fuses BN/ReLU/adds; costs a compile)
    recipe: Literal[RECIPES] = "fair"  # fair = reslab's; original = the study's notebook (ORIGINAL_RECIPE)
    init: Literal[INITS] | None = None  # both roles (a train_<role>.init wins); None = the recipe's (fair: FAIR_INIT)
    adam_eps: float | None = None  # None = the recipe's (fair: 1e-8, PyTorch's; original: 1e-7, Keras')
    bn_momentum: float | None = None  # PyTorch convention (weight of the new batch); None = the recipe's
    bn_eps: float | None = None  # None = the recipe's (fair: the model's own, PyTorch's 1e-5; original: 1e-3)

    def precision_setting(self) -> str:
        """`precision`, with `auto` resolved by the recipe first (original: fp32, as the notebook trained)."""
        if self.precision == "auto" and self.recipe == "original":
            return ORIGINAL_RECIPE["shared"]["precision"]
        return self.precision


@dataclass(frozen=True)
class ReplicatesConfig:
    """The replicated study: one training run per seed and model; replicate k of both models shares seeds[k]."""

    seeds: tuple[int, ...] = (1, 2, 3)
    # training stages `reslab repro` (make run) runs at once; each gets train.num_threads or cores // jobs torch
    # threads, under plain `dvc repro` too, so both give the same numbers
    jobs: int = 2


@dataclass(frozen=True)
class ModelStageConfig:
    """One training stage (train_baseline / train_resnet): which model and which of the shared settings."""

    model: str = "baseline"
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the registered preset
    augment: bool = True  # False reproduces the study, where the plain CNN trained without augmentation
    augment_magnitude: float | None = None  # None = augment.magnitude; this model's own scale of augment's ranges
    lr: float | None = None  # None = train.lr
    # None = the recipe's: fair takes train.epochs / patience / min_epochs, restores the best epoch's weights and
    # trains BatchNorm normally; original takes the notebook's per role (ORIGINAL_RECIPE)
    epochs: int | None = None
    patience: int | None = None
    min_epochs: int | None = None
    restore_best: bool | None = None  # False: end with the last epoch's weights
    bn_frozen: bool | None = None  # True: BatchNorm in inference mode while training (the study's ResNet bug)
    init: Literal[INITS] | None = None  # this role's; None = train.init, else the recipe's (fair: FAIR_INIT)


@dataclass(frozen=True)
class MlflowConfig:
    experiment_name: str = "reslab"
    registered_model_name: str = "reslab-classifier"


@dataclass(frozen=True)
class EvaluateConfig:
    n_bootstrap: int = 10_000
    confidence: float = 0.95
    n_prediction_examples: int = 8  # rows in the study's prediction figure


@dataclass(frozen=True)
class TuneConfig:
    """`reslab tune --role ROLE`'s Optuna study, one per role with the same budget for both. `search_space` maps
    each role to its dimensions: dotted keys of its own section (`train_resnet.lr`) and, for the resnet, the
    derived architecture dimensions (`depth`, `stages`, `width`); reslab.tuning.space parses it."""

    study_name: str = "reslab-{role}"  # `{role}` is replaced by the tuned role
    n_trials: int = 20
    epochs: int | None = None  # per trial; None = train.epochs (the pipeline's objective)
    sampler_seed: int = 42
    sampler_startup_trials: int = 5
    pruner: Literal[PRUNERS] = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 0
    pruner_percentile: float = 25.0
    heartbeat_interval: int = 60  # s
    grace_period: int | None = None  # s; None = 2 x heartbeat_interval
    max_retry: int = 2
    search_space: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    replicates: ReplicatesConfig = field(default_factory=ReplicatesConfig)
    train_baseline: ModelStageConfig = field(default_factory=lambda: ModelStageConfig(model="baseline"))
    train_resnet: ModelStageConfig = field(default_factory=lambda: ModelStageConfig(model="resnet"))
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def model_stage(self, role: str) -> ModelStageConfig:
        """The training section of a role: `baseline` -> train_baseline, `resnet` -> train_resnet."""
        stages = {"baseline": self.train_baseline, "resnet": self.train_resnet}
        if role not in stages:
            raise ConfigError(f"unknown model role {role!r}; valid roles: {', '.join(stages)}")
        return stages[role]

    def role_recipe(self, role: str) -> dict[str, Any]:
        """The effective training switches of `role` with `train.recipe` resolved: {augment, SHARED_SWITCHES,
        ROLE_SWITCHES}. An explicit (non-null) key wins; a null one takes the recipe's value: original's per role
        (ORIGINAL_RECIPE), fair's (FAIR_RECIPE, the shared budget keys of train, the role's `augment`)."""
        stage, train = self.model_stage(role), self.train
        original = train.recipe == "original"
        preset = {**ORIGINAL_RECIPE["shared"], **ORIGINAL_RECIPE[role]} if original else \
            {**FAIR_RECIPE, "init": FAIR_INIT[role], **{k: getattr(train, k) for k in BUDGET_KEYS},
             "augment": stage.augment}
        def first_set(*values):  # the role's own, then train's (shared switches), then the recipe's
            return next((v for v in values if v is not None), None)

        out = {"augment": preset["augment"]}
        for key in SHARED_SWITCHES:  # a role section may carry one too (init), which then wins for that role
            out[key] = first_set(getattr(stage, key, None), getattr(train, key), preset[key])
        for key in ROLE_SWITCHES:
            out[key] = first_set(getattr(stage, key), preset[key])
        return out

    def interpolation(self) -> str:
        """prepare's resize: `data.interpolation`, or the recipe's when null (fair: bilinear, original: nearest)."""
        if self.data.interpolation is not None:
            return self.data.interpolation
        return ORIGINAL_RECIPE["shared"]["interpolation"] if self.train.recipe == "original" else \
            FAIR_RECIPE["interpolation"]


def _check_recipe(params: Params) -> None:
    """Checks across sections: keys that `train.recipe: original` would silently replace, and each role's resolved
    budget (min_epochs <= epochs)."""
    train = params.train
    if train.recipe == "original":
        defaults = TrainConfig()
        for key in BUDGET_KEYS:
            if getattr(train, key) != getattr(defaults, key):
                raise ConfigError(
                    f"train.{key}: {getattr(train, key)!r} has no effect with train.recipe: original, whose "
                    f"per-role budget replaces it (" + ", ".join(f"{r} {ORIGINAL_RECIPE[r][key]}" for r in ROLES)
                    + f"); set train_<role>.{key} instead (e.g. train_{ROLES[0]}.{key}), or train.recipe: fair")
        for role in ROLES:
            value, preset = params.model_stage(role).augment, ORIGINAL_RECIPE[role]["augment"]
            if value != ModelStageConfig().augment and value != preset:
                raise ConfigError(
                    f"train_{role}.augment: {str(value).lower()} has no effect with train.recipe: original, which "
                    f"augments as the notebook did (" + ", ".join(f"{r} {str(ORIGINAL_RECIPE[r]['augment']).lower()}"
                                                         for r in ROLES) + "); use train.recipe: fair to choose")
    for role in ROLES:
        resolved, stage = params.role_recipe(role), params.model_stage(role)
        if resolved["min_epochs"] > resolved["epochs"]:
            source = f"train_{role}" if stage.min_epochs is not None else (
                "train" if train.recipe == "fair" else "train.recipe: original")
            raise ConfigError(
                f"train_{role}.min_epochs: {resolved['min_epochs']} (from {source}) is out of range; accepted: an "
                f"integer from 0 to the role's epochs ({resolved['epochs']}); set train_{role}.min_epochs")


def _check_ranges(obj: Any, prefix: str) -> None:
    """Value checks that types cannot express."""

    def fail(name: str, value: Any, accepted: str) -> None:
        raise ConfigError(f"{prefix}.{name}: {value!r} is out of range; accepted: {accepted}")

    if isinstance(obj, DataConfig) and not 16 <= obj.image_size <= 1024:
        fail("image_size", obj.image_size, "an integer from 16 to 1024 (the ResNet stem needs at least 16 px)")
    if isinstance(obj, FilterConfig) and obj.min_images_per_class < 1:
        fail("min_images_per_class", obj.min_images_per_class, "an integer >= 1")
    if isinstance(obj, FilterConfig) and obj.min_image_size < 1:
        fail("min_image_size", obj.min_image_size, "an integer >= 1 (px)")
    if isinstance(obj, SplitConfig):
        if not 0 < obj.val_fraction < 1:
            fail("val_fraction", obj.val_fraction, "a number strictly between 0 and 1")
        if not 0 < obj.test_fraction < 1:
            fail("test_fraction", obj.test_fraction, "a number strictly between 0 and 1")
        if obj.test_per_class is None and obj.val_fraction + obj.test_fraction >= 1:
            fail("val_fraction", obj.val_fraction, "val_fraction + test_fraction < 1 (something must be left to train)")
        if obj.test_per_class is not None and obj.test_per_class < 1:
            fail("test_per_class", obj.test_per_class, "null or an integer >= 1")
    if isinstance(obj, AugmentConfig):
        if not 0 <= obj.magnitude <= MAX_MAGNITUDE:
            fail("magnitude", obj.magnitude, f"a number from 0 (off) to {MAX_MAGNITUDE:g} (1 = the study's ranges)")
        for name in AUGMENT_RANGES:
            if getattr(obj, name) < 0:
                fail(name, getattr(obj, name), "a number >= 0")
    if isinstance(obj, TrainConfig):
        for name in ("epochs", "batch_size"):
            if getattr(obj, name) < 1:
                fail(name, getattr(obj, name), "an integer >= 1")
        if obj.patience < 0:
            fail("patience", obj.patience, "an integer >= 0 (0 = no early stopping)")
        if not obj.lr > 0:
            fail("lr", obj.lr, "a number > 0")
        if obj.num_threads < 0:
            fail("num_threads", obj.num_threads, "0 (auto) or a positive integer")
        ms = list(obj.lr_milestones)
        if ms != sorted(set(ms)) or any(not 1 <= m < obj.epochs for m in ms):
            fail("lr_milestones", ms, f"increasing epochs from 1 to train.epochs - 1 ({obj.epochs - 1}), e.g. "
                                      f"[{max(1, round(0.8 * obj.epochs))}], or [] for a constant rate")
        if not 0 < obj.lr_gamma <= 1:
            fail("lr_gamma", obj.lr_gamma, "a number in (0, 1]")
        if not 0 <= obj.min_epochs <= obj.epochs:
            fail("min_epochs", obj.min_epochs, f"an integer from 0 to train.epochs ({obj.epochs})")
    if isinstance(obj, ReplicatesConfig):
        if not obj.seeds:
            fail("seeds", list(obj.seeds), "a non-empty list of integer seeds, e.g. [1, 2, 3]")
        if len(set(obj.seeds)) != len(obj.seeds):
            fail("seeds", list(obj.seeds), "distinct seeds (a repeated seed would train the same model twice)")
        if any(s < 0 for s in obj.seeds):
            fail("seeds", list(obj.seeds), "seeds >= 0")
        if obj.jobs < 1:
            fail("jobs", obj.jobs, "an integer >= 1 (1: one training stage at a time, as plain dvc repro)")
    if isinstance(obj, ModelStageConfig) and obj.lr is not None and not obj.lr > 0:
        fail("lr", obj.lr, "null (use train.lr) or a number > 0")
    if isinstance(obj, ModelStageConfig):
        if obj.epochs is not None and obj.epochs < 1:
            fail("epochs", obj.epochs, "null (the recipe's) or an integer >= 1")
        for name in ("patience", "min_epochs"):
            if getattr(obj, name) is not None and getattr(obj, name) < 0:
                fail(name, getattr(obj, name), "null (the recipe's) or an integer >= 0")
    if isinstance(obj, TrainConfig):
        if obj.adam_eps is not None and not obj.adam_eps > 0:
            fail("adam_eps", obj.adam_eps, "null (the recipe's) or a number > 0, e.g. 1e-8 (PyTorch) or 1e-7 (Keras)")
        if obj.bn_momentum is not None and not 0 <= obj.bn_momentum <= 1:
            fail("bn_momentum", obj.bn_momentum, "null (the recipe's) or a number from 0 to 1 in PyTorch's "
                                                 "convention, e.g. 0.1 (PyTorch) or 0.01 (Keras' momentum=0.99)")
        if obj.bn_eps is not None and not obj.bn_eps > 0:
            fail("bn_eps", obj.bn_eps, "null (the recipe's) or a number > 0, e.g. 1e-5 (PyTorch) or 1e-3 (Keras)")
    if isinstance(obj, Params):
        _check_recipe(obj)
    if isinstance(obj, ModelStageConfig) and obj.augment_magnitude is not None \
            and not 0 <= obj.augment_magnitude <= MAX_MAGNITUDE:
        fail("augment_magnitude", obj.augment_magnitude,
             f"null (use augment.magnitude) or a number from 0 (off) to {MAX_MAGNITUDE:g} (1 = the study's ranges)")
    if isinstance(obj, EvaluateConfig):
        if obj.n_bootstrap < 100:
            fail("n_bootstrap", obj.n_bootstrap, "an integer >= 100")
        if not 0.5 <= obj.confidence < 1:
            fail("confidence", obj.confidence, "a number in [0.5, 1)")
    if isinstance(obj, TuneConfig):
        try:
            named = obj.study_name.format(role=ROLES[0]).strip()
        except (KeyError, IndexError, ValueError):
            named = ""
        if not named:
            fail("study_name", obj.study_name, "a non-empty name, in which `{role}` stands for the tuned role")
        for name in ("n_trials", "heartbeat_interval"):
            if getattr(obj, name) < 1:
                fail(name, getattr(obj, name), "an integer >= 1")
        if obj.epochs is not None and obj.epochs < 1:
            fail("epochs", obj.epochs, "null (train.epochs, the pipeline's budget) or an integer >= 1")
        for role, dims in obj.search_space.items():
            if role not in ROLES:
                raise ConfigError(f"{prefix}.search_space.{role}: unknown model role; valid roles: "
                                  f"{', '.join(ROLES)} (each maps its dimensions, e.g. train_{ROLES[0]}.lr)")
            if not isinstance(dims, dict):
                raise ConfigError(f"{prefix}.search_space.{role}: expected a mapping of dimensions, e.g. "
                                  f"{{train_{role}.lr: [0.0003, 0.003]}}, got {dims!r}")
        for name in ("sampler_startup_trials", "pruner_startup_trials", "pruner_warmup_epochs", "max_retry"):
            if getattr(obj, name) < 0:
                fail(name, getattr(obj, name), "an integer >= 0")
        if not 0 < obj.pruner_percentile < 100:
            fail("pruner_percentile", obj.pruner_percentile, "a number strictly between 0 and 100")
        if obj.grace_period is not None and obj.grace_period < obj.heartbeat_interval:
            fail("grace_period", obj.grace_period, f"null or an integer >= heartbeat_interval "
                                                   f"({obj.heartbeat_interval})")
