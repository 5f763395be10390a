"""Where every input and output of the pipeline lives, relative to the project root (see docs/architecture.md)."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROLES = ("baseline", "resnet")  # the two training stages: train_baseline, train_resnet


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "artifacts" / "filter" / "manifest.csv"

    @property
    def split_dir(self) -> Path:
        return self.root / "artifacts" / "split"

    @property
    def replicate_splits(self) -> Path:
        return self.root / "artifacts" / "replicates"  # seed_<seed>.csv: each replicate's train/val/test rows

    @property
    def prepared_dir(self) -> Path:
        return self.root / "artifacts" / "prepared"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def figures(self) -> Path:
        return self.root / "reports" / "figures"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def checkpoints(self) -> Path:
        return self.root / ".reslab" / "checkpoints"  # resume state, deliberately not a DVC output

    @property
    def tuning(self) -> Path:
        return self.root / "tuning"

    # One model per (role, training seed): the replicated study (params `replicates.seeds`).

    def replicate_model(self, role: str, seed: int) -> Path:
        return self.models / role / f"seed_{seed}.pt"

    def replicate_metrics(self, role: str, seed: int) -> Path:
        return self.metrics / f"train_{role}" / f"seed_{seed}.json"

    def replicate_history(self, role: str, seed: int) -> Path:
        return self.plots / f"train_{role}" / f"seed_{seed}.csv"

    def replicate_checkpoint(self, role: str, seed: int) -> Path:
        return self.checkpoints / f"train_{role}" / f"seed_{seed}.pt"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, between the processes of one machine, held while the block runs (flock on `path`, created
    with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
