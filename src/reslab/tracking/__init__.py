"""MLflow glue: where runs go, what every run carries. Training and evaluation code call this; it trains nothing."""
from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import yaml

# No telemetry and no network from a library import: set before mlflow is imported anywhere in this process.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s")


def tracking_uri(root: Path) -> str:
    """An explicit MLFLOW_TRACKING_URI wins; else an absolute sqlite:///<root>/mlflow.db (MLflow 3's default store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "postgresql", "mysql", "mssql")) or "://" not in uri


def setup(root: Path, experiment_name: str) -> str:
    """Point MLflow at the project's store and return the experiment id (created on first use).

    Artifacts of a local store go to <root>/mlartifacts; a tracking server keeps its own artifact root.
    """
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment_name)
    if exp is not None:
        return exp.experiment_id
    location = (root / "mlartifacts").resolve().as_uri() if _is_local(uri) else None
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it first
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_version(root: Path) -> str:
    """The md5 that data.dvc records for data/ ('untracked' when the data set is not under DVC)."""
    path = root / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text()).get("outs", [])
        return str(outs[0].get("md5", "unknown"))
    except (OSError, AttributeError, IndexError, yaml.YAMLError):
        return "untracked"


def standard_tags(root: Path, **extra: str) -> dict[str, str]:
    return {"git_commit": git_commit(root), "data_dvc_md5": data_version(root), **extra}


def log_params_flat(params: dict[str, Any]) -> None:
    """Log a flat {key: value} dict; MLflow caps values at 6000 chars, so long values are truncated."""
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def logged_epochs(run_id: str, metric: str = "val_loss") -> set[int]:
    """Steps already logged for `metric` in a run (to resume without duplicating epochs)."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, metric)}


def log_epoch(row: dict[str, float], prefix: str = "") -> None:
    """Log one epoch's metrics at step=epoch into the active run."""
    mlflow.log_metrics({f"{prefix}{k}": float(row[k]) for k in EPOCH_METRICS if k in row}, step=int(row["epoch"]))


def log_dataset(df, source: Path, name: str, context: str) -> None:
    """Record a split manifest as an MLflow dataset input.

    Two MLflow hints are silenced here, as they do not apply: the integer `label` column has no missing values, and
    a local path is meant as a local file source."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways", category=UserWarning)
        dataset = mlflow.data.from_pandas(df, source=str(source), name=name, targets="label")
        mlflow.log_input(dataset, context=context)


def log_model(model, image_size: int, num_classes: int, name: str = "model") -> str:
    """Log the network in MLflow's default "pt2" format (torch.export: a traced graph, no pickle), with an
    input/output signature and a batch-of-2 example so the batch dimension stays dynamic; returns the model URI."""
    import numpy as np
    import torch
    import torchvision
    from mlflow.models import infer_signature

    model = model.float().to("cpu", memory_format=torch.contiguous_format).eval()
    example = np.zeros((2, 3, image_size, image_size), np.float32)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        model, name=name, signature=infer_signature(example, output), input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                          f"torchvision=={torchvision.__version__.split('+')[0]}"],  # skips slow inference
    )
    return info.model_uri


def log_metrics_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to a (possibly finished) run, e.g. test metrics into each training run."""
    client = MlflowClient()
    for k, v in metrics.items():
        client.log_metric(run_id, k, float(v))


def set_champion(model_uri: str, registered_name: str, run_id: str, alias: str = "champion") -> str:
    """Register `model_uri` as a new version of `registered_name` and point `alias` at it; returns the version."""
    client = MlflowClient()
    try:
        client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(registered_name, description="reslab: best model on the held-out test split")
    version = mlflow.register_model(model_uri, registered_name, tags={"source_run_id": run_id})
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)


def champion_run_id(registered_name: str, alias: str = "champion") -> str:
    """The training run behind the model version that `alias` points at."""
    mv = MlflowClient().get_model_version_by_alias(registered_name, alias)
    return (mv.tags or {}).get("source_run_id") or mv.run_id


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure into the active run and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)
