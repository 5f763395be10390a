"""A project to tune in, for the tuning tests: the repository's params.yaml shrunk for a study, a tiny prepared
data set written straight into artifacts/prepared (three colour-coded classes, 32 px; no pipeline run), and the
helpers that run `reslab tune` on it and read back its study and MLflow runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
from mlflow.tracking import MlflowClient

from conftest import write_params
from reslab import cli
from reslab.tuning import storage

EXPERIMENT = "tune-test"

# Shrinks the real params.yaml for a study (conftest's TINY_PARAMS shrink the pipeline): 32 px, one thread, 2-epoch,
# 4-trial studies (over small networks for the resnet).
TINY_STUDY = {
    "data.image_size": 32,
    "train.batch_size": 16,
    "train.num_threads": 1,
    "mlflow.experiment_name": EXPERIMENT,
    "tune.n_trials": 4,
    "tune.epochs": 2,
    "tune.sampler_startup_trials": 2,
    "tune.pruner_startup_trials": 1,
    "tune.pruner_warmup_epochs": 0,
    "tune.heartbeat_interval": 1,
    "tune.search_space.resnet.depth": [1, 2],
    "tune.search_space.resnet.width": [8, 16, 8],
    "replicates.design": "holdout",  # write_prepared's per-split arrays (tests/test_kfold.py tunes on a kfold split)
}


def write_prepared(prepared: Path, sizes: dict[str, int], image_size: int = 32, seed: int = 0) -> None:
    """A prepared data set in the prepare stage's format: a coloured square per class on noise."""
    prepared.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], np.float64)
    lo, hi = image_size // 4, 3 * image_size // 4
    for name, n in sizes.items():
        labels = np.arange(n) % len(colours)
        images = rng.normal(120, 50, (n, image_size, image_size, 3))
        images[:, lo:hi, lo:hi] = 0.6 * colours[labels][:, None, None] + 0.4 * images[:, lo:hi, lo:hi]
        np.save(prepared / f"{name}_images.npy", np.clip(images, 0, 255).astype(np.uint8))
        np.save(prepared / f"{name}_labels.npy", labels.astype(np.int64))
    (prepared / "classes.json").write_text(json.dumps(["red", "green", "blue"]))


def make_study_project(root: Path, data: bool = True, **overrides) -> Path:
    """A project to tune in: params.yaml shrunk by TINY_STUDY and `overrides`, and (with `data`) the prepared
    arrays written straight into artifacts/prepared, with no pipeline run (conftest's make_project runs one)."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root / "params.yaml", {**TINY_STUDY, **overrides})
    if data:
        write_prepared(root / "artifacts" / "prepared", {"train": 60, "val": 30, "test": 30})
    return root


def tune(root: Path, *argv: str) -> int:
    """`reslab tune` in this process."""
    return cli.main(["tune", "--root", str(root), "--no-progress", *argv])


def load_study(root: Path, name: str = "reslab-resnet") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.open_storage(None, root))


def runs_by_trial(root: Path) -> tuple[list, dict[int, list]]:
    """(parent runs, {trial number: child runs}) of the test experiment in this test's store (explicitly: an earlier
    in-process `reslab tune` left MLflow's process-wide tracking URI pointing at its own store)."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children: dict[int, list] = {}
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            children.setdefault(int(r.data.tags["trial_number"]), []).append(r)
    return parents, children


def run_reslab(root: Path, *argv: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reslab.cli", "tune", "--no-progress", *argv], cwd=root,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)
