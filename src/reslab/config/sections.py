"""The sections of params.yaml, one frozen dataclass each; every section checks its own bounds (`violations`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from ..layout import ROLES
from .presets import RECIPES

PARAMS_FILE = "params.yaml"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train.precision; see training.resolve_precision
AUGMENT_RANGES = ("rotation", "shift", "shear", "zoom", "brightness")  # AugmentConfig's ranges, scaled by magnitude
MAX_MAGNITUDE = 3.0  # augment.magnitude: 1 = the study's ranges
PRUNERS = ("median", "percentile", "hyperband", "none")
INITS = ("torch", "keras")  # train.init: PyTorch's layer defaults, or Keras' (glorot_uniform kernels, zero biases)
INTERPOLATIONS = ("bilinear", "nearest")  # data.interpolation: prepare's resize
DESIGNS = ("kfold", "holdout")  # replicates.design: repeated k-fold (split varies with the replicate) or one test split

Violation = tuple[str, Any, str]  # (key within the section, its value, what would be accepted)


class ConfigError(ValueError):
    """A params file or override that cannot be accepted; the message names the key at fault."""


class Section:
    """A params section: `violations` yields the values its types allow but its bounds do not; `check` raises the
    first as a ConfigError naming the dotted key (`config.from_dict` calls it for every section it builds)."""

    def violations(self) -> Iterator[Violation]:
        return iter(())

    def check(self, prefix: str) -> None:
        for name, value, accepted in self.violations():
            raise ConfigError(f"{prefix}.{name}: {value!r} is out of range; accepted: {accepted}")


@dataclass(frozen=True)
class DataConfig(Section):
    image_size: int = 32  # px, square; 128 reproduces the study
    interpolation: Literal[INTERPOLATIONS] | None = None  # prepare's resize; None = the recipe's (fair: bilinear)

    def violations(self) -> Iterator[Violation]:
        if not 16 <= self.image_size <= 1024:
            yield "image_size", self.image_size, "an integer from 16 to 1024 (the ResNet stem needs at least 16 px)"


@dataclass(frozen=True)
class FilterConfig(Section):
    min_images_per_class: int = 100  # the study kept classes with more than 100 images
    min_image_size: int = 8  # px; an image narrower or shorter than this is skipped as carrying no information

    def violations(self) -> Iterator[Violation]:
        if self.min_images_per_class < 1:
            yield "min_images_per_class", self.min_images_per_class, "an integer >= 1"
        if self.min_image_size < 1:
            yield "min_image_size", self.min_image_size, "an integer >= 1 (px)"


@dataclass(frozen=True)
class SplitConfig(Section):
    val_fraction: float = 0.2
    test_fraction: float = 0.15
    test_per_class: int | None = None  # e.g. 50 as in the study; overrides test_fraction when set
    # near-identical images (dHash bits that differ, at most) join a duplicate group, which a split keeps whole;
    # -1: pixel-identical images only
    near_duplicate_distance: int = 2

    def violations(self) -> Iterator[Violation]:
        if not 0 < self.val_fraction < 1:
            yield "val_fraction", self.val_fraction, "a number strictly between 0 and 1"
        if not 0 < self.test_fraction < 1:
            yield "test_fraction", self.test_fraction, "a number strictly between 0 and 1"
        if self.test_per_class is None and self.val_fraction + self.test_fraction >= 1:
            yield "val_fraction", self.val_fraction, "val_fraction + test_fraction < 1 (something must be left to train)"
        if self.test_per_class is not None and self.test_per_class < 1:
            yield "test_per_class", self.test_per_class, "null or an integer >= 1"
        if not -1 <= self.near_duplicate_distance <= 64:
            yield "near_duplicate_distance", self.near_duplicate_distance, \
                "an integer from -1 (pixel-identical images only) to 64 (bits of the dHash)"


@dataclass(frozen=True)
class AugmentConfig(Section):
    """The study's Keras ImageDataGenerator ranges, all scaled by `magnitude` (0 = off, 1 = the study)."""

    magnitude: float = 1.0
    rotation: float = 40.0  # degrees, +/-
    shift: float = 0.2  # fraction of width / height, +/-
    shear: float = 0.2  # degrees, +/- (Keras' shear_range is an angle in degrees)
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom] per axis
    brightness: float = 0.2  # factor in [1 - b, 1 + b]; the study's 0.8-1.2
    hflip: bool = True

    def violations(self) -> Iterator[Violation]:
        if not 0 <= self.magnitude <= MAX_MAGNITUDE:
            yield "magnitude", self.magnitude, f"a number from 0 (off) to {MAX_MAGNITUDE:g} (1 = the study's ranges)"
        for name in AUGMENT_RANGES:
            if getattr(self, name) < 0:
                yield name, getattr(self, name), "a number >= 0"


@dataclass(frozen=True)
class TrainConfig(Section):
    """The shared budget: both models get exactly this (each replicate with its own seed). Null switches take the
    value of `recipe`'s preset (config.presets), resolved by `config.resolve`."""

    epochs: int = 40  # cap
    batch_size: int = 32
    lr: float = 1e-3  # Adam, as in the study (the rate of the first epochs)
    lr_milestones: tuple[int, ...] = ()  # epochs after which lr is multiplied by lr_gamma; () = constant (the study)
    lr_gamma: float = 0.1
    patience: int = 10  # epochs without val_loss improvement before stopping (0 = never stop early)
    min_epochs: int = 20  # early stopping never ends training before this epoch (the first epochs are noisy)
    precision: Literal[PRECISIONS] = "auto"  # auto = the recipe's (original: fp32), else the hardware's
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 1  # torch intra-op threads, fixed so results never depend on the core count; 0 = all cores
    compile: bool = False  # torch.compile the training forward + backward (fuses BN/ReLU/adds; costs a compile)
    recipe: Literal[RECIPES] = "fair"  # fair = reslab's; original = the study's notebook (config.presets)
    init: Literal[INITS] | None = None  # both roles (a train_<role>.init wins); None = the recipe's (fair: per role)
    adam_eps: float | None = None  # None = the recipe's (fair: 1e-8, PyTorch's; original: 1e-7, Keras')
    bn_momentum: float | None = None  # PyTorch convention (weight of the new batch); None = the recipe's
    bn_eps: float | None = None  # None = the recipe's (fair: the model's own, PyTorch's 1e-5; original: 1e-3)

    def violations(self) -> Iterator[Violation]:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                yield name, getattr(self, name), "an integer >= 1"
        if self.patience < 0:
            yield "patience", self.patience, "an integer >= 0 (0 = no early stopping)"
        if not self.lr > 0:
            yield "lr", self.lr, "a number > 0"
        if self.num_threads < 0:
            yield "num_threads", self.num_threads, "0 (auto) or a positive integer"
        ms = list(self.lr_milestones)
        if ms != sorted(set(ms)) or any(not 1 <= m < self.epochs for m in ms):
            yield "lr_milestones", ms, (f"increasing epochs from 1 to train.epochs - 1 ({self.epochs - 1}), e.g. "
                                        f"[{max(1, round(0.8 * self.epochs))}], or [] for a constant rate")
        if not 0 < self.lr_gamma <= 1:
            yield "lr_gamma", self.lr_gamma, "a number in (0, 1]"
        if not 0 <= self.min_epochs <= self.epochs:
            yield "min_epochs", self.min_epochs, f"an integer from 0 to train.epochs ({self.epochs})"
        if self.adam_eps is not None and not self.adam_eps > 0:
            yield "adam_eps", self.adam_eps, "null (the recipe's) or a number > 0, e.g. 1e-8 (PyTorch) or 1e-7 (Keras)"
        if self.bn_momentum is not None and not 0 <= self.bn_momentum <= 1:
            yield "bn_momentum", self.bn_momentum, ("null (the recipe's) or a number from 0 to 1 in PyTorch's "
                                                    "convention, e.g. 0.1 (PyTorch) or 0.01 (Keras' momentum=0.99)")
        if self.bn_eps is not None and not self.bn_eps > 0:
            yield "bn_eps", self.bn_eps, "null (the recipe's) or a number > 0, e.g. 1e-5 (PyTorch) or 1e-3 (Keras)"


@dataclass(frozen=True)
class ReplicatesConfig(Section):
    """The replicated study: one training run per seed and model; replicate j of both models shares seeds[j].

    kfold (the default): replicate j is fold j % folds of repeat j // folds (repeated stratified k-fold), so the
    split varies with the replicate as well as the seed; holdout: every replicate shares one fixed test split.
    """

    seeds: tuple[int, ...] = (1, 2, 3)
    design: Literal[DESIGNS] = "kfold"
    folds: int = 3  # k of the k-fold design; seeds come in repeats of k
    # training stages `reslab repro` (make run) runs at once: scheduling only, read by no stage (dvc.yaml), so it
    # changes no number and reruns nothing
    jobs: int = 2

    def violations(self) -> Iterator[Violation]:
        seeds = list(self.seeds)
        if not seeds:
            yield "seeds", seeds, "a non-empty list of integer seeds, e.g. [1, 2, 3]"
        if len(set(seeds)) != len(seeds):
            yield "seeds", seeds, "distinct seeds (a repeated seed would train the same model twice)"
        if any(s < 0 for s in seeds):
            yield "seeds", seeds, "seeds >= 0"
        if self.folds < 2:
            yield "folds", self.folds, "an integer >= 2 (the k of k-fold)"
        elif self.design == "kfold" and seeds and len(seeds) % self.folds:
            k = self.folds
            n = f"{len(seeds)} seed" + ("" if len(seeds) == 1 else "s")
            yield "seeds", seeds, (f"{n}, but the kfold design needs a multiple of replicates.folds "
                                   f"({k}): {k}, {2 * k}, {3 * k} ... (one seed per fold and repeat)")
        if self.jobs < 1:
            yield "jobs", self.jobs, "an integer >= 1 (1: one training stage at a time, as plain dvc repro)"

    @property
    def repeats(self) -> int:
        """kfold: the repeats of the k-fold; holdout: 1."""
        return len(self.seeds) // self.folds if self.design == "kfold" else 1


@dataclass(frozen=True)
class ClusterConfig(Section):
    """`reslab repro --executor ray` (docs/cluster.md): what each training replicate reserves on a Ray cluster.
    Scheduling only, like replicates.jobs: no stage reads it, so it changes no number and reruns nothing (a
    replicate's torch threads are train.num_threads wherever it runs)."""

    address: str | None = None  # the cluster (`ray start`'s HOST:PORT, ray://HOST:10001); None: Ray's rule
    #                             (RAY_ADDRESS, else a `ray start` cluster on this machine, else one for the run)
    cpus_per_replicate: float = 1.0
    gpus_per_replicate: float = 0.0  # a fraction packs several replicates on one GPU (0.25: four)
    max_retries: int = 3  # a replicate whose worker or node dies is retried, resuming from its checkpoint

    def violations(self) -> Iterator[Violation]:
        if self.cpus_per_replicate <= 0:
            yield "cpus_per_replicate", self.cpus_per_replicate, "a number > 0 (Ray CPUs one replicate reserves)"
        gpus = self.gpus_per_replicate
        if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
            yield "gpus_per_replicate", gpus, ("0 (CPU), a fraction in (0, 1] (replicates sharing one GPU: 0.25 "
                                               "packs four) or a whole number of GPUs")
        if self.max_retries < 0:
            yield "max_retries", self.max_retries, "an integer >= 0 (0: a lost worker fails its replicate)"


@dataclass(frozen=True)
class ModelStageConfig(Section):
    """One training stage (train_baseline / train_resnet): which model and which of the shared settings."""

    model: str = "baseline"
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the registered preset
    augment: bool = True  # False reproduces the study, where the plain CNN trained without augmentation
    augment_magnitude: float | None = None  # None = augment.magnitude; this model's own scale of augment's ranges
    lr: float | None = None  # None = train.lr
    # None = the recipe's: fair takes train.epochs / patience / min_epochs, restores the best epoch's weights and
    # trains BatchNorm normally; original takes the notebook's per role (config.presets)
    epochs: int | None = None
    patience: int | None = None
    min_epochs: int | None = None
    restore_best: bool | None = None  # False: end with the last epoch's weights
    bn_frozen: bool | None = None  # True: BatchNorm in inference mode while training (the study's ResNet bug)
    init: Literal[INITS] | None = None  # this role's; None = train.init, else the recipe's (fair: per role)

    def violations(self) -> Iterator[Violation]:
        if self.lr is not None and not self.lr > 0:
            yield "lr", self.lr, "null (use train.lr) or a number > 0"
        if self.epochs is not None and self.epochs < 1:
            yield "epochs", self.epochs, "null (the recipe's) or an integer >= 1"
        for name in ("patience", "min_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                yield name, getattr(self, name), "null (the recipe's) or an integer >= 0"
        if self.augment_magnitude is not None and not 0 <= self.augment_magnitude <= MAX_MAGNITUDE:
            yield "augment_magnitude", self.augment_magnitude, (
                f"null (use augment.magnitude) or a number from 0 (off) to {MAX_MAGNITUDE:g} (1 = the study's ranges)")


@dataclass(frozen=True)
class MlflowConfig(Section):
    experiment_name: str = "reslab"
    registered_model_name: str = "reslab-classifier"


@dataclass(frozen=True)
class EvaluateConfig(Section):
    n_bootstrap: int = 10_000
    confidence: float = 0.95
    n_prediction_examples: int = 8  # rows in the study's prediction figure

    def violations(self) -> Iterator[Violation]:
        if self.n_bootstrap < 100:
            yield "n_bootstrap", self.n_bootstrap, "an integer >= 100"
        if not 0.5 <= self.confidence < 1:
            yield "confidence", self.confidence, "a number in [0.5, 1)"


@dataclass(frozen=True)
class TuneConfig(Section):
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

    def violations(self) -> Iterator[Violation]:
        try:
            named = self.study_name.format(role=ROLES[0]).strip()
        except (KeyError, IndexError, ValueError):
            named = ""
        if not named:
            yield "study_name", self.study_name, "a non-empty name, in which `{role}` stands for the tuned role"
        for name in ("n_trials", "heartbeat_interval"):
            if getattr(self, name) < 1:
                yield name, getattr(self, name), "an integer >= 1"
        if self.epochs is not None and self.epochs < 1:
            yield "epochs", self.epochs, "null (train.epochs, the pipeline's budget) or an integer >= 1"
        for name in ("sampler_startup_trials", "pruner_startup_trials", "pruner_warmup_epochs", "max_retry"):
            if getattr(self, name) < 0:
                yield name, getattr(self, name), "an integer >= 0"
        if not 0 < self.pruner_percentile < 100:
            yield "pruner_percentile", self.pruner_percentile, "a number strictly between 0 and 100"
        if self.grace_period is not None and self.grace_period < self.heartbeat_interval:
            yield "grace_period", self.grace_period, f"null or an integer >= heartbeat_interval ({self.heartbeat_interval})"

    def check(self, prefix: str) -> None:
        for role, dims in self.search_space.items():  # the mapping's shape, before any bound (tuning.space parses it)
            if role not in ROLES:
                raise ConfigError(f"{prefix}.search_space.{role}: unknown model role; valid roles: "
                                  f"{', '.join(ROLES)} (each maps its dimensions, e.g. train_{ROLES[0]}.lr)")
            if not isinstance(dims, dict):
                raise ConfigError(f"{prefix}.search_space.{role}: expected a mapping of dimensions, e.g. "
                                  f"{{train_{role}.lr: [0.0003, 0.003]}}, got {dims!r}")
        super().check(prefix)


@dataclass(frozen=True)
class Params(Section):
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    replicates: ReplicatesConfig = field(default_factory=ReplicatesConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
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
