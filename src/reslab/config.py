"""Typed, strict view of params.yaml: one dataclass per section.

Unknown keys and wrong types fail at load time with the dotted key, the offending value and what would be
accepted (nanoGPT-style strictness), so a typo in params.yaml never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A params file or override that cannot be accepted; the message names the key at fault."""


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 64  # px, square; 128 reproduces the study


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
    epochs: int = 15  # cap; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # Adam, as in the study
    patience: int = 3  # epochs without val_loss improvement before stopping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 0  # torch intra-op threads; 0 = all cores (divided between sweep workers)
    compile: bool = False  # torch.compile the training forward + backward (fuses BN/ReLU/adds; costs a compile)


@dataclass(frozen=True)
class ModelStageConfig:
    """One training stage (train_baseline / train_resnet): which model and which of the shared settings."""

    model: str = "baseline"
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the registered preset
    augment: bool = True  # False reproduces the study, where the plain CNN trained without augmentation
    lr: float | None = None  # None = train.lr


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
class Params:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    train_baseline: ModelStageConfig = field(default_factory=lambda: ModelStageConfig(model="baseline"))
    train_resnet: ModelStageConfig = field(default_factory=lambda: ModelStageConfig(model="resnet"))
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: dict[str, Any] = field(default_factory=dict)  # validated by reslab.tuning.TuneConfig

    def model_stage(self, role: str) -> ModelStageConfig:
        """The training section of a role: `baseline` -> train_baseline, `resnet` -> train_resnet."""
        stages = {"baseline": self.train_baseline, "resnet": self.train_resnet}
        if role not in stages:
            raise ConfigError(f"unknown model role {role!r}; valid roles: {', '.join(stages)}")
        return stages[role]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`; return it (ints widen to float). Raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {_type_name(tp)}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in this module, not user input


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = prefix or "params"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(f"unknown key {dotted}; valid keys{' of ' + prefix if prefix else ''}: {', '.join(fields)}")
    values = {name: _coerce(raw[name], hints[name], f"{prefix}.{name}" if prefix else name) for name in raw}
    obj = cls(**values)
    _check_ranges(obj, prefix)
    return obj


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
        if not 0 <= obj.magnitude <= 3:
            fail("magnitude", obj.magnitude, "a number from 0 (off) to 3 (1 = the study's ranges)")
        for name in ("rotation", "shift", "shear", "zoom", "brightness"):
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
    if isinstance(obj, ModelStageConfig) and obj.lr is not None and not obj.lr > 0:
        fail("lr", obj.lr, "null (use train.lr) or a number > 0")
    if isinstance(obj, EvaluateConfig):
        if obj.n_bootstrap < 100:
            fail("n_bootstrap", obj.n_bootstrap, "an integer >= 100")
        if not 0.5 <= obj.confidence < 1:
            fail("confidence", obj.confidence, "a number in [0.5, 1)")


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a `key.sub=value` override (value in YAML syntax, as `dvc exp run -S`)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=2")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate mappings."""
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def read_params_file(path: str | Path = PARAMS_FILE) -> dict:
    """Read params.yaml into a dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def load_params(path: str | Path = PARAMS_FILE, overrides: list[str] | None = None) -> Params:
    """Load and validate params.yaml, applying `key=value` overrides first."""
    raw = read_params_file(path)
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    try:
        return from_dict(Params, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (for logging)."""
    return dataclasses.asdict(obj)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b': v} (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
