"""The MLflow run of a training stage: started or resumed so that a killed stage continues its own run, its inputs
(params, datasets, the augmented-examples figure) logged once, each epoch logged once at step=epoch, and the result
(summary metrics, learning curves, the model) at the end. It trains nothing: the stage passes `log_epoch` to the
training loop as its `on_epoch_end`."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

import mlflow
from mlflow.tracking import MlflowClient

from ..layout import file_lock
from ..models.serialization import model_file_sha256
from .ledger import start_stage_run
from .lineage import run_label, standard_tags
from .records import log_dataset, log_epoch, log_figure, log_model, log_params_flat, logged_epochs
from .store import setup, store_root

INPUTS_TAG = "inputs_logged"  # set once params, datasets and the examples figure are in the run
# MLflow's system metrics (system/cpu_utilization_percentage, memory, disk, GPU when present) every few seconds: a
# 1-minute replicate gets a dozen points. MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, when a user sets it, wins.
SYSTEM_METRICS_INTERVAL_S = 5
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # not two INFO lines per replicate
RESULT_TAG = "result_model_uri"  # set once the summary, curves and model are in the run: the logged model's URI
# the SHA-256 of the weights file the run produced: how evaluate (or anyone holding a model file, e.g. after
# `dvc pull`) finds the run again, since DVC-tracked outputs carry no run ids (a rerun must reproduce them bit for bit)
WEIGHTS_TAG = "weights_sha256"


class TrainingRun:
    """An active training run; created by `training_run`.

    Args:
        run: the active MLflow run.
        resumed: True when an earlier, killed attempt of the same configuration created it.
    """

    def __init__(self, run: mlflow.ActiveRun, resumed: bool):
        self.run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id
        self.resumed = resumed
        # epochs already in a resumed run: a replicate killed after its run ended but before its resume checkpoint
        # was removed retrains from scratch into it (deterministically), and must not log those epochs again
        self._logged = logged_epochs(self.run_id) if resumed else set()

    @property
    def inputs_logged(self) -> bool:
        """Whether `log_inputs` already completed in this run (before a kill)."""
        return MlflowClient().get_run(self.run_id).data.tags.get(INPUTS_TAG) == "true"

    def log_inputs(self, params: dict[str, Any], datasets: dict[str, tuple[pd.DataFrame, Path, str]],
                   examples: tuple[np.ndarray, list[str]], title: str) -> None:
        """Params, the split manifests as dataset inputs, and a grid of training images as the model sees them.

        Args:
            params: flat {dotted key: value}.
            datasets: {name: (manifest, its file, MLflow context)}.
            examples: images (N, 3, H, W) float in [0, 1] and their class names.
            title: the figure's title.
        """
        from .. import plots

        log_params_flat(params)
        for name, (df, source, context) in datasets.items():
            log_dataset(df, source, name=name, context=context)
        images, names = examples
        log_figure(plots.image_grid(images, names, title=title), "figures/augmented_examples.png")
        mlflow.set_tag(INPUTS_TAG, "true")

    def catch_up(self, history: list[dict[str, float]]) -> None:
        """Log the epochs of a resume checkpoint that a kill kept out of the run; epochs already there are not
        logged again."""
        for row in history:
            self.log_epoch(row)

    def log_epoch(self, row: dict[str, float]) -> None:
        """One finished epoch at step=epoch (the training loop's `on_epoch_end`), unless the run already has it."""
        if int(row["epoch"]) not in self._logged:
            log_epoch(row)
            self._logged.add(int(row["epoch"]))

    def log_result(self, summary: dict[str, float], history: list[dict[str, float]], *, model_file: Path,
                   title: str) -> str:
        """Summary metrics, the learning curves and the served model (`records.log_model`: a pyfunc built from the
        weights file `model_file`, which it carries as its artifact, so what is served is exactly what was saved);
        returns the logged model's URI."""
        from .. import plots

        done = MlflowClient().get_run(self.run_id).data.tags.get(RESULT_TAG)
        if done:  # logged before a kill that came after the run ended: the same result, already there
            return done
        mlflow.log_metrics({k: float(v) for k, v in summary.items()})
        log_figure(plots.learning_curves(history, title=title), "figures/learning_curves.png")
        uri = log_model(model_file)
        mlflow.set_tag(WEIGHTS_TAG, model_file_sha256(model_file))
        mlflow.set_tag(RESULT_TAG, uri)
        return uri


FAMILY_TAG = "family"  # the recipe + data fingerprint that a role's replicates share (their seed aside)


def family_run(experiment_id: str, stage: str, family: str, tags: dict[str, str],
               run_name: str | None = None) -> str:
    """The parent run that groups a role's replicates (one child run per seed), created FINISHED on first use.

    Replicates of the same recipe on the same data share it, so a seed added later joins its siblings; a changed
    recipe starts a new family. Returns its run id.
    """
    client = MlflowClient()
    found = client.search_runs([experiment_id], f"tags.{FAMILY_TAG} = '{family}' and tags.kind = 'family'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name or f"{stage} (replicates)",
                            tags={**tags, FAMILY_TAG: family, "kind": "family", "stage": stage})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def store_lock(root: Path):
    """Serialise, between the processes of this project, the first touches of the MLflow store: creating the SQLite
    file's schema, the experiment and a family's parent run. Replicates started at once by `reslab repro` would
    otherwise race (two schema migrations, two parents of one family). Processes on other machines sharing a
    tracking server are not covered: start one replicate first there."""
    return file_lock(store_root(root) / ".reslab" / "mlflow-store.lock")


@contextmanager
def training_run(root: Path, experiment_name: str, *, stage: str, seed: int, ledger: Path, fingerprint: str,
                 family: str, tags: dict[str, str], run_name: str | None = None,
                 family_name: str | None = None, parent: str | None = None) -> Iterator[TrainingRun]:
    """The replicate's MLflow run, resumed when an earlier attempt of the same configuration was killed (see
    `ledger.start_stage_run`); FINISHED when the block ends, FAILED when it raises. It is a child of the role's
    family run (`family_run`). The caller deletes `ledger` with the stage's resume checkpoint once its outputs are
    written.

    Args:
        root: project root (the store's default location).
        experiment_name: MLflow experiment.
        stage: the stage's name (train_baseline | train_resnet).
        seed: the replicate's training seed.
        ledger: the replicate's run ledger file.
        fingerprint: the training configuration's fingerprint, as in the checkpoint.
        family: the fingerprint without the seed (groups the replicates).
        tags: tags beside the standard ones (git commit, data version, seed).
        run_name: the replicate run's name; default `train_<role> seed <s> (<experiment or commit>)`.
        family_name: the parent run's name when it is created; default `<stage> (replicates)`.
        parent: the family run's id when a coordinator created it (`reslab repro --executor ray`: replicates on
            several machines, which `store_lock` does not serialise); None: found or created here.
    """
    all_tags = standard_tags(root, stage=stage, seed=str(seed), **tags)
    if parent is not None:
        experiment_id = setup(root, experiment_name)
    else:
        with store_lock(root):  # replicates starting at once (reslab repro): one store, one experiment, one family
            experiment_id = setup(root, experiment_name)
            parent = family_run(experiment_id, stage, family, {k: v for k, v in all_tags.items() if k != "seed"},
                                run_name=family_name)
    if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    active, resumed = start_stage_run(ledger, experiment_id=experiment_id, system_metrics=True,
                                      run_name=run_name or run_label(stage, root, seed),
                                      fingerprint=fingerprint,
                                      tags={**all_tags, FAMILY_TAG: family, "mlflow.parentRunId": parent})
    with active:
        yield TrainingRun(active, resumed)


def find_training_run(experiment_id: str, stage: str, model_file: Path) -> tuple[str, str] | None:
    """The FINISHED training run of `stage` that produced `model_file` (by its `weights_sha256` tag; the newest when
    a forced rerun reproduced the same weights), as (run id, logged model URI); None when this store has none (e.g.
    models pulled from a DVC remote into a project with another store). The store is the one `setup` pointed at.

    Args:
        experiment_id: the experiment (`setup`'s).
        stage: train_baseline | train_resnet.
        model_file: the weights file the stage wrote.
    """
    found = MlflowClient().search_runs(
        [experiment_id], f"tags.{WEIGHTS_TAG} = '{model_file_sha256(model_file)}' and tags.stage = '{stage}' "
                         f"and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=1)
    if not found or RESULT_TAG not in found[0].data.tags:
        return None
    return found[0].info.run_id, found[0].data.tags[RESULT_TAG]
