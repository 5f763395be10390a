"""What a run records: flat params, per-epoch metrics at step=epoch, split manifests as dataset inputs, figures,
the served model, and metrics added to a finished run. (Named `records`, not `logging`, so as not to shadow the
standard library's module inside this package.)"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

EPOCH_METRICS = ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s")


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
    a local path is meant as a local file source.

    Args:
        df: the manifest (a `label` column is the target).
        source: the manifest's file.
        name: the dataset's name in the run (train, val, test).
        context: MLflow's input context (training, validation, testing).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways", category=UserWarning)
        dataset = mlflow.data.from_pandas(df, source=str(source), name=name, targets="label")
        mlflow.log_input(dataset, context=context)


def log_test_dataset(split_dir: Path) -> None:
    """Record the test split's manifest as the evaluation run's dataset input (context "testing"): holdout's
    test.csv, or kfold's images.csv (every image is tested once per repeat)."""
    import pandas as pd

    path = split_dir / "images.csv"  # kfold's: its test.csv is replicate 0's fold only
    if not path.is_file():
        path = split_dir / "test.csv"
    log_dataset(pd.read_csv(path), path, name="test", context="testing")


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure into the active run and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_model(model_file: Path, name: str = "model") -> str:
    """Log the served model (`reslab.serving`): a pyfunc logged from code (`serving.MODEL_CODE`, no pickle) whose
    one artifact is the weights-only `model_file`, and whose config holds that file's SHA-256 (checked when the model
    loads); encoded images in, class names and probabilities out, with that signature and a real PNG as input
    example. Returns the model URI.

    The model carries the reslab code it runs (`served_code`, MLflow's `code_paths`), and its requirements name
    everything else it imports, so it loads in an environment built from its own requirements.txt alone (MLflow's
    default env manager, `mlflow models build-docker`), with no reslab installed there.

    Args:
        model_file: the weights file the training stage saved.
        name: the logged model's name in the run.
    """
    import tempfile
    from importlib.metadata import version

    from .. import serving
    from ..models.serialization import model_file_sha256

    # Explicit requirements skip MLflow's slow inference; MLflow adds its own pin.
    requirements = [f"{dist}=={version(dist).split('+')[0]}" for dist in ("torch", "pillow", "numpy", "pandas")]
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / serving.MODEL_CODE_FILE
        code.write_text(serving.MODEL_CODE)
        package = served_code(serving.__name__, Path(tmp) / "code")
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code), artifacts={serving.MODEL_FILE: str(model_file)},
            code_paths=[str(package)], signature=serving.SIGNATURE, input_example=serving.input_example(),
            pip_requirements=requirements, model_config={serving.WEIGHTS_SHA256: model_file_sha256(model_file)},
        )
    return info.model_uri


def served_code(module: str, dest: Path) -> Path:
    """Copy a module's source and that of every module of its package that it imports, transitively, into `dest` as
    a package tree (dest/reslab/serving.py, dest/reslab/data/images.py, ...): the code a logged model carries.

    The imports are read from the sources (those inside functions too), not run, so what the model carries follows
    the code as it changes; parent packages come along, as Python runs their `__init__` first.

    Args:
        module: the module's dotted name (`reslab.serving`).
        dest: the folder to copy into (created).

    Returns:
        The package's folder in `dest` (dest/reslab), to pass to MLflow's `code_paths`.
    """
    import ast
    import importlib.util
    import shutil

    top = module.partition(".")[0]
    root = Path(importlib.util.find_spec(top).origin).parent.parent  # the folder that holds the package

    def source(name: str) -> Path | None:
        base = root.joinpath(*name.split("."))
        return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)

    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found or name.partition(".")[0] != top or (path := source(name)) is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
                target = ".".join(filter(None, [base, node.module]))
                todo += [target] + [f"{target}.{alias.name}" for alias in node.names]  # a name may be a module
    for path in found.values():
        copy = dest / path.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    return dest / top


def log_metrics_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to a (possibly finished) run, e.g. test metrics into each training run; a metric the run already
    holds with the same value is not logged again (a rerun after a kill adds no duplicate points).

    Args:
        run_id: the run to add to.
        metrics: {name: value}.
    """
    client = MlflowClient()
    held = client.get_run(run_id).data.metrics
    for k, v in metrics.items():
        if held.get(k) != float(v):
            client.log_metric(run_id, k, float(v))
