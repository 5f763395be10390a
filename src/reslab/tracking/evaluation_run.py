"""The MLflow run of the `evaluate` stage: a new run each time (a killed one is marked KILLED by the next start,
see `ledger.start_stage_run`), holding its inputs (the settings it read, the test split as dataset input) and its
result (the aggregate metrics, the report and figures). Through the same handle, after the run, the stage adds each
replicate's test metrics to its training run and moves the registered model's `@champion` alias. It computes
nothing: the stage compares, this records."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow

from .ledger import start_stage_run
from .lineage import run_label, standard_tags
from .records import log_metrics_to_run, log_params_flat, log_test_dataset
from .registry import set_champion
from .store import setup

STAGE = "evaluate"


class EvaluationRun:
    """The evaluation's handle into tracking; created by `evaluation_run`.

    `log_inputs` and `log_result` write into the active run (inside the `with` block); `log_replicate_metrics`
    and `promote` touch other runs and the registry, and are called after the block, once the run is FINISHED.

    Args:
        run: the active MLflow run.
    """

    def __init__(self, run: mlflow.ActiveRun):
        self.run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id

    def log_inputs(self, params: dict[str, Any], split_dir: Path) -> None:
        """The settings the evaluation read, and the test split's manifest as the run's dataset input.

        Args:
            params: flat {dotted key: value}.
            split_dir: the split stage's folder (holds test.csv).
        """
        log_params_flat(params)
        log_test_dataset(split_dir)

    def log_result(self, metrics: dict[str, float], files: list[Path], figures: list[Path]) -> None:
        """The aggregate metrics, the files at the run's artifact root and the figures under `figures/`.

        Args:
            metrics: {name: value}, logged as given.
            files: e.g. the report and the metrics file.
            figures: image files, logged under `figures/`.
        """
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path))
        for path in figures:
            mlflow.log_artifact(str(path), artifact_path="figures")

    def log_replicate_metrics(self, metrics: dict[str, dict[str, float]]) -> None:
        """Each replicate's test metrics into its own (finished) training run; a rerun adds no duplicate points.

        Args:
            metrics: {training run id: {metric: value}}.
        """
        for run_id, values in metrics.items():
            log_metrics_to_run(run_id, values)

    def promote(self, model_uri: str, registered_name: str, source_run_id: str) -> str:
        """Register the champion's model as a new version and point `@champion` at it; returns the version.

        Args:
            model_uri: the champion's logged model.
            registered_name: the registered model (params.yaml's mlflow.registered_model_name).
            source_run_id: the champion's training run.
        """
        return set_champion(model_uri, registered_name, source_run_id)


@contextmanager
def evaluation_run(root: Path, experiment_name: str, *, ledger: Path,
                   tags: dict[str, str]) -> Iterator[EvaluationRun]:
    """A new evaluation run, named `evaluate (<experiment or commit>)` and tagged stage=evaluate beside the standard
    tags; FINISHED when the block ends, FAILED when it raises. `ledger` records the attempt while the run is open
    (a kill leaves it for the next start, which marks the run KILLED) and is deleted when the block ends normally.

    Args:
        root: project root (the store's default location).
        experiment_name: MLflow experiment.
        ledger: the stage's run ledger file.
        tags: tags beside the standard ones (the champion, the verdict).
    """
    experiment_id = setup(root, experiment_name)
    active, _ = start_stage_run(ledger, experiment_id=experiment_id, run_name=run_label(STAGE, root),
                                resume=False, tags=standard_tags(root, stage=STAGE, **tags))
    with active:
        yield EvaluationRun(active)
    ledger.unlink(missing_ok=True)
