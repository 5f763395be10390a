"""The depth study's runs in MLflow (studies/depth/dvc.yaml, run by stages/depth_train.py and depth_report.py):
one parent run per study (the family run of `tracking.training_run`, keyed by the budget's fingerprint), a child
run per cell with its per-epoch metrics, summary and curve figure, and the report's aggregate, files and figures on
the parent. No model is logged or registered, and no alias is touched."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import MlflowClient, log_figure, log_metrics_to_run, mlflow, run_label
from .training_run import TrainingRun, training_run

STAGE = "depth_study"  # the stage tag of the study's runs, parent and children


def study_run_name(image_size: int, epochs: int, lr: float) -> str:
    """The parent run's name: what the budget is, so two studies read apart in the run list."""
    return f"depth study ({image_size} px, {epochs} epochs, lr {lr:g})"


@contextmanager
def cell_run(root: Path, experiment_name: str, *, family: str, depth: int, seed: int, ledger: Path,
             fingerprint: str, study: str, study_name: str, tags: dict[str, str]) -> Iterator[TrainingRun]:
    """The cell's child run `depth <family>-<depth> seed <s> (<experiment or commit>)` under the study's parent run,
    resumed when a killed attempt of the same configuration left it (`tracking.training_run`).

    Args:
        root: project root.
        experiment_name: the study's MLflow experiment.
        family, depth, seed: the cell.
        ledger: the cell's run ledger, removed by the caller with its checkpoint.
        fingerprint: the cell's configuration fingerprint (as in its checkpoint).
        study: the budget's fingerprint: the parent run of every cell trained with it.
        study_name: the parent run's name when this cell creates it.
        tags: further tags of the cell's run (device, precision).
    """
    with training_run(root, experiment_name, stage=STAGE, seed=seed, ledger=ledger, fingerprint=fingerprint,
                      family=study, tags=tags, run_name=run_label(f"depth {family}-{depth}", root, seed),
                      family_name=study_name) as run:
        # set on the child only: training_run copies its `tags` onto the parent it creates ("family" there is the
        # study's fingerprint, so the net's family is the `network` tag)
        mlflow.set_tags({"network": family, "depth": str(depth)})
        yield run


def parent_of(run_id: str) -> str:
    """The parent run id of a child run."""
    return MlflowClient().get_run(run_id).data.tags["mlflow.parentRunId"]


def log_cell_result(summary: dict, history: list[dict], title: str) -> None:
    """The cell's summary metrics and its learning curves into the active run (no model: cells stay fast)."""
    from .. import plots

    mlflow.log_metrics({k: float(v) for k, v in summary.items() if k not in ("depth", "seed")  # tags already
                        and isinstance(v, (int, float)) and not isinstance(v, bool)})
    log_figure(plots.learning_curves(history, title=title), "figures/learning_curves.png")


def log_study_result(parent_ids: set[str], params: dict[str, object], metrics: dict[str, float],
                     tags: dict[str, str], files: list[Path], figures: list[Path],
                     cell_metrics: dict[str, dict[str, float]]) -> None:
    """The report onto the study's (finished) parent run, and each cell's test metrics onto its own run; values
    already there are not logged again, so a rerun adds no duplicate points.

    Args:
        parent_ids: the parent run(s) of the reported cells (one, unless the budget changed between cells).
        params: the budget as flat params (the same for every cell of a parent, as the parent is the budget's).
        metrics: the flat aggregate (`depth_study.analysis.flat_metrics`).
        tags: e.g. the verdict per depth.
        files: the report and metrics.json (artifacts at the run's top level).
        figures: PNG files (under figures/).
        cell_metrics: {child run id: its test metrics}.
    """
    client = MlflowClient()
    for run_id in sorted(parent_ids):
        held = client.get_run(run_id).data.params
        for key, value in params.items():
            if key not in held:  # MLflow params are immutable; the parent's budget never changes
                client.log_param(run_id, key, str(value)[:6000])
        log_metrics_to_run(run_id, metrics)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        for path in files:
            client.log_artifact(run_id, str(path))
        for path in figures:
            client.log_artifact(run_id, str(path), artifact_path="figures")
    for run_id, values in cell_metrics.items():
        log_metrics_to_run(run_id, values)
