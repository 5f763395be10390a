"""What a run came from: the code (git commit, dirty state), the data (data.dvc's md5), the DVC experiment and
the library versions, as the tags every run carries, and a run name a user can tell apart in the MLflow UI."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml


def _git(root: Path, *args: str) -> str | None:
    """`git ARGS` in `root`; None when git is missing, fails or hangs."""
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(root: Path) -> str:
    """The checked-out commit ('unknown' outside a git repository)."""
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: Path) -> str:
    """'true' when tracked files differ from the commit (the run's code is not exactly git_commit's)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def data_version(root: Path) -> str:
    """The md5 that data.dvc records for data/ ('untracked' when the data set is not under DVC)."""
    path = root / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text()).get("outs", [])
        return str(outs[0].get("md5", "unknown"))
    except (OSError, AttributeError, IndexError, yaml.YAMLError):
        return "untracked"


def project_tags(root: Path) -> dict[str, str]:
    """The tags read from the project itself: code (git commit, dirty state), data (data.dvc's md5), the DVC
    experiment (`dvc exp run` sets DVC_EXP_NAME). A Ray task, which runs in a scratch folder, gets them from its
    coordinator (`cluster.py`)."""
    tags = {"git_commit": git_commit(root), "git_dirty": git_dirty(root), "data_dvc_md5": data_version(root)}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def standard_tags(root: Path, **extra: str) -> dict[str, str]:
    """What a user filters runs on: code (git commit, dirty state), data (data.dvc's md5), the DVC experiment
    (`dvc exp run` sets DVC_EXP_NAME), library versions; plus the caller's tags (stage, role, seed, device, ...).

    Args:
        root: project root (the git repository and data.dvc).
        **extra: the caller's tags; they win over the standard ones.
    """
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        reslab_version = version("reslab")
    except PackageNotFoundError:
        reslab_version = "unknown"
    return {**project_tags(root), "torch_version": torch.__version__, "torch_threads": str(torch.get_num_threads()),
            "reslab_version": reslab_version, **extra}


def run_label(stage: str, root: Path, seed: int | None = None) -> str:
    """A run name a user can tell apart in the MLflow UI: the stage, the seed, and the DVC experiment (under
    `dvc exp run`) or else the short git commit.

    Args:
        stage: the stage's name (train_resnet, evaluate, ...).
        root: project root (for the commit).
        seed: the replicate's seed, if the run has one.
    """
    where = os.environ.get("DVC_EXP_NAME") or git_commit(root)[:7]
    return f"{stage}{f' seed {seed}' if seed is not None else ''} ({where})"
