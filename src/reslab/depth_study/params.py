"""studies/depth/params.yaml, typed and strict: one dataclass per section, loaded with `config.from_dict` (unknown
keys and wrong types fail with the key's name); the checks that types cannot express are here, once."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..config import INTERPOLATIONS, PRECISIONS, AugmentConfig, ConfigError, from_dict, read_params_file
from ..models.cifar import blocks_per_stage

# The two families of He et al. 2016 by the registry name of their net; a cell is (family, depth, seed).
FAMILIES = {"plain": "cifar_plain", "residual": "cifar_resnet"}


@dataclass(frozen=True)
class StudyData:
    image_size: int = 32  # px, square; the study's own resize of the main pipeline's split
    interpolation: Literal[INTERPOLATIONS] = "bilinear"


@dataclass(frozen=True)
class StudyModel:
    widths: tuple[int, ...] = (16, 32, 64)  # channels of the three stages (He et al. 2016)


@dataclass(frozen=True)
class StudyTrain:
    """The budget of every cell: a fixed number of epochs, no early stopping, the last epoch's weights."""

    epochs: int = 14
    batch_size: int = 64
    lr: float = 1e-3  # Adam at a constant rate: the main pipeline's optimizer, the same for every cell
    precision: Literal[PRECISIONS] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 0  # torch threads; 0 = all cores


@dataclass(frozen=True)
class StudyReport:
    confidence: float = 0.95  # two-sided coverage of every t-interval across seeds


@dataclass(frozen=True)
class StudyMlflow:
    experiment_name: str = "reslab-depth-study"


@dataclass(frozen=True)
class StudyParams:
    depths: tuple[int, ...] = (8, 20, 32, 56)
    seeds: tuple[int, ...] = (1, 2, 3)
    data: StudyData = field(default_factory=StudyData)
    model: StudyModel = field(default_factory=StudyModel)
    train: StudyTrain = field(default_factory=StudyTrain)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    report: StudyReport = field(default_factory=StudyReport)
    mlflow: StudyMlflow = field(default_factory=StudyMlflow)


def _fail(key: str, value, accepted: str) -> None:
    raise ConfigError(f"{key}: {value!r} is out of range; accepted: {accepted}")


def check_study_params(p: StudyParams) -> StudyParams:
    """The checks types cannot express; ConfigError naming the key."""
    for name in ("depths", "seeds"):
        values = list(getattr(p, name))
        if not values or len(set(values)) != len(values):
            _fail(name, values, "a non-empty list of distinct integers")
    for depth in p.depths:
        try:
            blocks_per_stage(depth, len(p.model.widths))
        except ValueError as e:
            raise ConfigError(f"depths: {e}") from None
    if any(s < 0 for s in p.seeds):
        _fail("seeds", list(p.seeds), "seeds >= 0")
    if not 8 <= p.data.image_size <= 1024:
        _fail("data.image_size", p.data.image_size, "an integer from 8 to 1024")
    widths = list(p.model.widths)
    if not widths or any(w < 1 for w in widths) or widths != sorted(widths):
        _fail("model.widths", widths, "positive, non-decreasing channels per stage, e.g. [16, 32, 64]")
    for name in ("epochs", "batch_size"):
        if getattr(p.train, name) < 1:
            _fail(f"train.{name}", getattr(p.train, name), "an integer >= 1")
    if not p.train.lr > 0:
        _fail("train.lr", p.train.lr, "a number > 0")
    if p.train.num_threads < 0:
        _fail("train.num_threads", p.train.num_threads, "0 (all cores) or a positive integer")
    if not 0.5 <= p.report.confidence < 1:
        _fail("report.confidence", p.report.confidence, "a number in [0.5, 1)")
    if not p.mlflow.experiment_name.strip():
        _fail("mlflow.experiment_name", p.mlflow.experiment_name, "a non-empty name")
    return p


def load_study_params(path: Path) -> StudyParams:
    """Read and validate the study's params file; ConfigError naming the file and the key."""
    raw = read_params_file(path)
    try:
        return check_study_params(from_dict(StudyParams, raw))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def budget_params(p: StudyParams) -> dict:
    """The params a cell's training reads (and dvc.yaml's train stage declares): everything but depths, seeds and
    the report, so adding a depth or a seed creates new cells and retrains none."""
    return {"data": asdict(p.data), "model": asdict(p.model), "train": asdict(p.train),
            "augment": asdict(p.augment), "mlflow": asdict(p.mlflow)}


def cells(p: StudyParams) -> list[tuple[str, int, int]]:
    """Every (family, depth, seed) of the study, in dvc.yaml's matrix order."""
    return [(f, d, s) for f in FAMILIES for d in p.depths for s in p.seeds]
