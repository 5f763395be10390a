"""studies/depth/params.yaml, typed and strict. What the study shares with the main pipeline is the main config's
sections (config.sections: `data`, `train`, `augment`, `mlflow`), limited to the keys a cell reads and with the
study's defaults; its own keys (depths, seeds, model.widths, report) sit beside them. Loaded with
`config.from_dict`, so every section checks its own bounds, and an error names the key."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..config import (AugmentConfig, ConfigError, DataConfig, MlflowConfig, Section, TrainConfig, from_dict,
                      read_params_file)
from ..config.sections import INTERPOLATIONS, Violation
from ..models.cifar import blocks_per_stage

# The two families of He et al. 2016 by the registry name of their net; a cell is (family, depth, seed).
FAMILIES = {"plain": "cifar_plain", "residual": "cifar_resnet"}

# The keys of the main sections that the study reads (its cells' budget, dvc.yaml's train params). Any other key of
# these sections is rejected as unknown: the study would ignore it (e.g. train.patience: cells never stop early).
READS: dict[str, tuple[str, ...]] = {
    "data": ("image_size", "interpolation"),
    "train": ("epochs", "batch_size", "lr", "precision", "device", "num_threads"),
    "augment": tuple(f.name for f in dataclasses.fields(AugmentConfig)),
    "mlflow": ("experiment_name",),
}


@dataclass(frozen=True)
class StudyModel(Section):
    widths: tuple[int, ...] = (16, 32, 64)  # channels of the three stages (He et al. 2016)

    def violations(self) -> Iterator[Violation]:
        widths = list(self.widths)
        if not widths or any(w < 1 for w in widths) or widths != sorted(widths):
            yield "widths", widths, "positive, non-decreasing channels per stage, e.g. [16, 32, 64]"


@dataclass(frozen=True)
class StudyReport(Section):
    confidence: float = 0.95  # two-sided coverage of every t-interval across seeds

    def violations(self) -> Iterator[Violation]:
        if not 0.5 <= self.confidence < 1:
            yield "confidence", self.confidence, "a number in [0.5, 1)"


@dataclass(frozen=True)
class StudyParams(Section):
    depths: tuple[int, ...] = (8, 20, 32, 56)
    seeds: tuple[int, ...] = (1, 2, 3)
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=32, interpolation="bilinear"))
    model: StudyModel = field(default_factory=StudyModel)
    # the budget of every cell: a fixed number of epochs, no early stopping, the last epoch's weights; Adam at a
    # constant rate (the main pipeline's optimizer)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=14, batch_size=64, lr=1e-3, patience=0,
                                                                   min_epochs=0))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    report: StudyReport = field(default_factory=StudyReport)
    mlflow: MlflowConfig = field(default_factory=lambda: MlflowConfig(experiment_name="reslab-depth-study"))

    def violations(self) -> Iterator[Violation]:
        for name in ("depths", "seeds"):
            values = list(getattr(self, name))
            if not values or len(set(values)) != len(values):
                yield name, values, "a non-empty list of distinct integers"
        if any(s < 0 for s in self.seeds):
            yield "seeds", list(self.seeds), "seeds >= 0"
        if self.data.interpolation is None:  # the main pipeline's null means "the recipe's"; the study has none
            yield "data.interpolation", None, " | ".join(INTERPOLATIONS)
        if not self.mlflow.experiment_name.strip():
            yield "mlflow.experiment_name", self.mlflow.experiment_name, "a non-empty name"

    def check(self, prefix: str) -> None:
        for depth in self.depths:
            try:
                blocks_per_stage(depth, len(self.model.widths))
            except ValueError as e:
                raise ConfigError(f"depths: {e}") from None
        for name, value, accepted in self.violations():  # top-level keys: no section prefix
            raise ConfigError(f"{name}: {value!r} is out of range; accepted: {accepted}")


def _with_study_defaults(raw: dict) -> dict:
    """`raw` with each shared section filled in from the study's defaults (a section read alone would take the main
    pipeline's); ConfigError naming a key of those sections that the study does not read."""
    defaults, out = StudyParams(), dict(raw)
    for section, keys in READS.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            continue  # from_dict names the section and what it expected
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ConfigError(f"unknown key {', '.join(f'{section}.{k}' for k in unknown)}; valid keys of {section}: "
                              f"{', '.join(keys)}")
        out[section] = {**dataclasses.asdict(getattr(defaults, section)), **given}
    return out


def load_study_params(path: Path) -> StudyParams:
    """Read and validate the study's params file; ConfigError naming the file and the key."""
    raw = read_params_file(path)
    try:
        return from_dict(StudyParams, _with_study_defaults(raw))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def budget_params(p: StudyParams) -> dict[str, Any]:
    """The params a cell's training reads (and dvc.yaml's train stage declares): everything but depths, seeds and
    the report, so adding a depth or a seed creates new cells and retrains none."""
    read = {section: {k: getattr(getattr(p, section), k) for k in keys} for section, keys in READS.items()}
    return {"data": read["data"], "model": dataclasses.asdict(p.model), "train": read["train"],
            "augment": read["augment"], "mlflow": read["mlflow"]}


def cells(p: StudyParams) -> list[tuple[str, int, int]]:
    """Every (family, depth, seed) of the study, in dvc.yaml's matrix order."""
    return [(f, d, s) for f in FAMILIES for d in p.depths for s in p.seeds]
