"""Worker processes: each opens its own storage connection, data, torch threads and MLflow client, then runs the
trial loop; `--workers N` spawns N of them on one study."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from optuna.exceptions import ExperimentalWarning

from .. import tracking
from ..config import Params, TuneConfig, resolve_runtime
from ..data.prepared import ImageArrays, load_train_val
from ..layout import Layout
from ..tracking.sweep import MlflowTrialTracker
from ..training import setup_runtime
from .objective import RUN_ID_ATTR, Objective, run_worker
from .space import Dimension
from .storage import StaleTrialRetry, open_storage
from .study import TrialCounts, open_study


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable for the spawn start method)."""

    root: Path
    params: Params
    cfg: TuneConfig
    role: str
    space: tuple[Dimension, ...]
    storage_url: str | None
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    workers: int
    progress: bool


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial failed by Ctrl-C with the full traceback; the one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is KeyboardInterrupt:
            record.exc_info, record.exc_text = None, None
        return True


def quiet_optuna() -> None:
    """No ExperimentalWarning (heartbeat, retry and plots are "experimental"); no traceback for Ctrl-C."""
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoInterruptTraceback) for f in handler.filters):
            handler.addFilter(_NoInterruptTraceback())


def tuning_splits(layout: Layout, params: Params) -> tuple[ImageArrays, ImageArrays]:
    """What tuning reads: the train and val splits of replicate 0 (kfold: fold 0 of repeat 0; holdout: the shared
    split), never a test split or fold."""
    return load_train_val(layout.prepared_dir, layout.replicate_splits, params.replicates.design,
                          params.replicates.seeds[0])


def worker_main(spec: WorkerSpec) -> TrialCounts:
    """One worker: its own storage connection, data, torch threads and MLflow client, then the trial loop."""
    quiet_optuna()
    precision = setup_runtime(resolve_runtime(spec.params), workers=spec.workers, who="reslab tune")
    layout = Layout(spec.root)
    train, val = tuning_splits(layout, spec.params)
    tracking.mlflow.set_tracking_uri(spec.tracking_uri)
    tracker = MlflowTrialTracker(spec.root, spec.experiment_id, spec.parent_run_id, spec.cfg.study_name, spec.role)
    retry = StaleTrialRetry(spec.cfg.max_retry,
                            on_stale=lambda trial: tracker.fail_stale(trial.number, trial.user_attrs.get(RUN_ID_ATTR)))
    storage = open_storage(spec.storage_url, spec.root, spec.cfg, retry)
    study = open_study(storage, spec.params, spec.cfg, spec.role, create=False)
    objective = Objective(spec.params, spec.cfg, spec.role, spec.space, train, val, precision=precision,
                          tracker=tracker, progress=spec.progress)
    return run_worker(study, objective, spec.cfg, concurrent=spec.workers > 1)


def _spawned_worker(spec: WorkerSpec) -> None:
    try:
        worker_main(spec)
    except KeyboardInterrupt:
        sys.exit(130)  # the parent prints how to resume


def run_processes(spec: WorkerSpec) -> None:
    """`--workers N`: N spawned processes on the study; Ctrl-C stops them all (each fails and requeues its trial)."""
    ctx = multiprocessing.get_context("spawn")  # no forked torch/MLflow/SQLAlchemy state
    procs = [ctx.Process(target=_spawned_worker, args=(spec,), name=f"reslab-tune-{i}") for i in range(spec.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reached them too; a `kill -INT` of the parent did not
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
        raise
    failed = [f"{p.name} exited {p.exitcode}" for p in procs if p.exitcode]
    if failed:
        raise RuntimeError("worker processes failed: " + ", ".join(failed))
