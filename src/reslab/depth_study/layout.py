"""Where the depth study's inputs and outputs live (studies/depth/dvc.yaml declares the same paths), and how a
stage that DVC runs in studies/depth finds the project root."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..layout import Layout

STUDY_DIR = Path("studies") / "depth"  # a DVC project of its own (its .dvc/ there), run from that folder
REPRO = "make depth-study"  # what error messages tell a user to run (the split, then `dvc repro` in STUDY_DIR)


def find_root(start: Path) -> Path:
    """The project root: `start` or the nearest folder above it that holds studies/depth/dvc.yaml (DVC runs the
    study's stages with studies/depth as the working directory)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / STUDY_DIR / "dvc.yaml").is_file():
            return folder
    raise ConfigError(f"no {STUDY_DIR / 'dvc.yaml'} in {start} or above it; run from the project or pass --root")


def cell_name(family: str, depth: int, seed: int) -> str:
    """File stem of a cell's outputs: plain_d20_s1 (DVC's stage instance is train@plain-20-1)."""
    return f"{family}_d{depth}_s{seed}"


@dataclass(frozen=True)
class StudyLayout:
    root: Path

    @property
    def main(self) -> Layout:
        return Layout(self.root)

    @property
    def dir(self) -> Path:
        return self.root / STUDY_DIR

    @property
    def params(self) -> Path:
        return self.dir / "params.yaml"

    @property
    def profiles(self) -> Path:
        return self.dir / "profiles"

    @property
    def prepared(self) -> Path:
        return self.dir / "prepared"

    @property
    def models(self) -> Path:
        return self.dir / "models"

    @property
    def cells(self) -> Path:
        return self.dir / "cells"

    @property
    def curves(self) -> Path:
        return self.dir / "curves"

    @property
    def reports(self) -> Path:
        return self.dir / "reports"

    @property
    def figures(self) -> Path:
        return self.reports / "figures"

    @property
    def report(self) -> Path:
        return self.reports / "depth_study.md"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.main.checkpoints / "depth_study"  # resume state, outside DVC's outputs

    def cell_model(self, family: str, depth: int, seed: int) -> Path:
        return self.models / f"{cell_name(family, depth, seed)}.pt"

    def cell_summary(self, family: str, depth: int, seed: int) -> Path:
        return self.cells / f"{cell_name(family, depth, seed)}.json"

    def cell_curve(self, family: str, depth: int, seed: int) -> Path:
        return self.curves / f"{cell_name(family, depth, seed)}.csv"

    def cell_checkpoint(self, family: str, depth: int, seed: int) -> Path:
        return self.checkpoints / f"{cell_name(family, depth, seed)}.pt"
