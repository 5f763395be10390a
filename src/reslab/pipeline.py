"""The DVC pipeline as `reslab repro` drives it, whichever executor runs the training replicates (`repro.py`:
local processes; `cluster.py`: Ray tasks): the `dvc` command line, the stage every replicate reads from, the
training stages `dvc status` reports stale, and the order of their outs in the folders' .gitignore."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .config import ConfigError
from .layout import ROLES

UPSTREAM = "prepare"  # the stage every training replicate reads from (dvc.yaml)
TRAINING_GROUPS = tuple(f"train_{role}" for role in ROLES)  # dvc.yaml's foreach stages, in their order


def dvc(*args: str) -> list[str]:
    """A `dvc` command line run by this interpreter (the venv's DVC, whatever PATH says)."""
    return [sys.executable, "-m", "dvc", *args]


def stale_training_stages(root: Path) -> list[str]:
    """The training stage instances (train_baseline@1, ...) whose deps, params or outs changed, in dvc.yaml's
    order."""
    out = subprocess.run(dvc("status", "--json", *TRAINING_GROUPS), cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError(f"dvc status failed in {root}:\n{out.stderr.strip()}")
    stale = json.loads(out.stdout or "{}")
    listed = subprocess.run(dvc("stage", "list", "--name-only", *TRAINING_GROUPS), cwd=root, capture_output=True,
                            text=True, check=True).stdout.split()
    return [name for name in listed if name in stale]


def pin_gitignore_order(root: Path, stages: list[str]) -> None:
    """List the outs of `stages` in their folders' .gitignore now, in dvc.yaml's order.

    DVC adds a stage's cached outs to their folder's .gitignore as it records the stage, and that file is part of
    the folder's hash (models/<role> is a dep of evaluate): stages finishing in any order would write it in any
    order. Listed first, in order, it is the file plain `dvc repro` writes, however the stages are scheduled."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import NoSCM

    with Repo(str(root)) as repo:
        if isinstance(repo.scm, NoSCM):
            return
        for name in stages:
            for out in repo.stage.collect(name)[0].outs:
                Path(out.fs_path).parent.mkdir(parents=True, exist_ok=True)  # DVC would make it for the stage
                try:
                    out.ignore()
                except DvcException:  # tracked by git: the stage itself will say so
                    pass
