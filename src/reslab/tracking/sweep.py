"""MLflow runs of a sweep: one parent run per Optuna study (one study per model role), one child run per trial,
all tagged with the role, and their closing.

Every worker and every later `reslab tune` attaches to the parent run whose id the study records. A child run is
closed by its trial, or, when the trial's worker died (killed, machine lost), by whichever worker fails the trial
as stale, and by the next `reslab tune` of the study: no run stays RUNNING for a trial that is not running.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from ..config import TuneConfig, flatten, to_dict
from .lineage import standard_tags
from .records import log_epoch

PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attr: the parent run every worker attaches to
MLFLOW_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
WORKER_DIED = "worker stopped sending heartbeats (killed?) before the trial ended"


class MlflowTrialTracker:
    """One MLflow child run per trial, nested under the study's parent run (created once by `ensure_parent_run`).

    Args:
        root: project root (for the standard tags).
        experiment_id: the MLflow experiment.
        parent_run_id: the study's run.
        study_name: the Optuna study.
        role: the model tuned (baseline | resnet).
    """

    def __init__(self, root: Path, experiment_id: str, parent_run_id: str, study_name: str, role: str):
        self.experiment_id, self.parent_run_id, self.study_name = experiment_id, parent_run_id, study_name
        self.client = MlflowClient()
        self._base_tags = standard_tags(root, stage="tune", study_name=study_name, role=role)

    def start_trial(self, number: int, sampled: dict[str, Any], overrides: dict[str, Any],
                    retry_of: int | None = None) -> str:
        """Create and activate trial `number`'s run; log what it draws and the params keys that follow."""
        tags = {**self._base_tags, "mlflow.parentRunId": self.parent_run_id, "trial_number": str(number),
                "state": "RUNNING", "worker": f"{socket.gethostname()}:{os.getpid()}"}
        if retry_of is not None:
            tags["retry_of_trial"] = str(retry_of)
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{self.study_name}-trial-{number}")
        params = [Param(k, str(v)[:6000]) for k, v in {**sampled, **overrides}.items()]  # MLflow's value cap
        self.client.log_batch(run.info.run_id, params=params)
        mlflow.start_run(run_id=run.info.run_id)  # the trial's epochs are logged into the active run
        return run.info.run_id

    def log_epoch(self, row: dict[str, float]) -> None:
        log_epoch(row)

    def end_trial(self, state: str, metrics: dict[str, float], *, interrupted: bool = False,
                  failure: str | None = None) -> None:
        """Close the active trial run: `state` is the Optuna state's name (COMPLETE, PRUNED, FAIL)."""
        tags = {"state": state, **({"interrupted": "true"} if interrupted else {})}
        if failure is not None:
            tags["failure"] = failure[:5000]
        mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
        mlflow.end_run(status="KILLED" if interrupted else MLFLOW_STATUS[state])

    def fail_stale(self, number: int, run_id: str | None = None) -> list[str]:
        """Close the runs of trial `number`, whose worker died: its recorded run and any RUNNING run tagged with
        the trial (a worker killed between creating the run and recording its id leaves only the tag)."""
        runs = set(self._running_children(number)) | ({run_id} if run_id else set())
        for rid in sorted(runs):
            self._close_dead(rid)
        return sorted(runs)

    def close_orphans(self, study: optuna.Study) -> list[str]:
        """Close every RUNNING child run whose trial is not running (its worker died and the trial was failed, or
        the trial does not exist); returns their ids."""
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        closed = []
        for rid, number in self._running_children().items():
            if states.get(number) != TrialState.RUNNING:
                self._close_dead(rid)
                closed.append(rid)
        return closed

    def _running_children(self, number: int | None = None) -> dict[str, int]:
        """{run id: trial number} of this study's RUNNING child runs (of trial `number` only, when given)."""
        query = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' AND attributes.status = 'RUNNING'"
        if number is not None:
            query += f" AND tags.trial_number = '{number}'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=1000)
        return {r.info.run_id: int(r.data.tags.get("trial_number", -1)) for r in runs}

    def _close_dead(self, run_id: str) -> None:
        self.client.set_tag(run_id, "state", "FAIL")
        self.client.set_tag(run_id, "failure", WORKER_DIED)
        self.client.set_terminated(run_id, "FAILED")


def ensure_parent_run(study: optuna.Study, root: Path, experiment_id: str, cfg: TuneConfig, role: str,
                      storage_name: str) -> str:
    """The study's MLflow run: created by the first `reslab tune` and recorded in the study's user attrs, so every
    worker and every later run attaches to it by id instead of racing to create one.

    Args:
        study: the loaded study.
        root: project root.
        experiment_id: the MLflow experiment.
        cfg: the tune config (logged as params when the run is created, with the role's search space only).
        role: the model tuned (a tag).
        storage_name: where the study lives (a tag).
    """
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        try:
            run = client.get_run(run_id)
            if run.info.lifecycle_stage != "deleted":
                client.update_run(run_id, status="RUNNING")
                return run_id
        except mlflow.exceptions.MlflowException:
            pass  # the run is gone (another tracking store?): make a new one
    tags = standard_tags(root, stage="tune", study_name=cfg.study_name, role=role, optuna_storage=storage_name)
    run = client.create_run(experiment_id, tags=tags, run_name=cfg.study_name)
    ours = run.info.run_id
    logged = {**{k: v for k, v in to_dict(cfg).items() if k != "n_trials"},
              "search_space": cfg.search_space.get(role) or {}}
    for key, value in flatten({"tune": logged}).items():
        client.log_param(ours, key, str(value)[:6000])
    study.set_user_attr(PARENT_RUN_ATTR, ours)
    # Two machines starting the same new study within moments could both get here; whoever wrote last wins, and
    # a loser that reads back the winner's id uses it (this narrows that window; it cannot close it).
    winner = study.user_attrs[PARENT_RUN_ATTR]
    if winner != ours:
        client.delete_run(ours)
    return winner


def log_study_summary(parent_run_id: str, *, step: int, metrics: dict[str, float], record: dict[str, Any] | None,
                      best_params_file: Path, figures: dict[str, Any], status: str) -> None:
    """Counts, the best value and params, and the study's figures into the parent run; set its status.

    Args:
        parent_run_id: the study's run.
        step: finished trials so far (the metrics' step).
        metrics: e.g. trial counts and epochs trained.
        record: the best trial (tuning/best_params_<role>.yaml's content), or None before any completed.
        best_params_file: logged as an artifact with `record`.
        figures: name -> matplotlib figure (closed here).
        status: FINISHED, KILLED or FAILED.
    """
    import matplotlib.pyplot as plt

    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(parent_run_id, key, value, step=step)
    if record is not None:
        client.log_metric(parent_run_id, "best_val_accuracy", record["val_accuracy"], step=step)
        client.set_tag(parent_run_id, "best_trial", str(record["trial_number"]))
        for key, value in record["optuna_params"].items():
            client.set_tag(parent_run_id, f"best.{key}", str(value))
        client.log_artifact(parent_run_id, str(best_params_file))
    for name, figure in figures.items():
        client.log_figure(parent_run_id, figure, f"figures/{name}.png")
        plt.close(figure)
    client.set_terminated(parent_run_id, status)


def study_figures(study: optuna.Study) -> dict[str, Any]:
    """Optuna's matplotlib plots that the study's trials allow (importances need two completed trials with
    varied params; a plot that cannot be drawn is skipped with a notice)."""
    from .. import plots  # noqa: F401  (selects the headless matplotlib backend)
    from optuna.visualization import matplotlib as vis

    out = {}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    makers = {"optimization_history": vis.plot_optimization_history,
              "param_importances": vis.plot_param_importances,
              "parallel_coordinate": vis.plot_parallel_coordinate,
              "intermediate_values": vis.plot_intermediate_values}
    for name, make in makers.items():
        if not complete or (name == "param_importances" and len(complete) < 2):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make(study)
            first = ax.flat[0] if hasattr(ax, "flat") else ax
            out[name] = first.figure
        except Exception as e:  # e.g. importances of params that never varied
            print(f"reslab tune: skipped the {name} plot: {e}", file=sys.stderr)
    return out
