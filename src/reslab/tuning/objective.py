"""The objective (draw a configuration, train it as the training stage would, report every epoch, return the val
accuracy at the epoch the stage keeps) and the trial loop of one worker process."""
from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from typing import Any, Callable, Protocol, Sequence

import optuna
import torch
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ..config import Params, TrainingConfig, TuneConfig, resolve, with_overrides
from ..data.prepared import ImageArrays
from ..training import DivergedError, FitResult, Precision, train_classifier
from .space import Dimension, suggest, trial_overrides
from .storage import StaleTrialRetry
from .study import TrialCounts, count_trials, make_sampler, trial_base_params

RUN_ID_ATTR = "mlflow_run_id"  # trial user attr: the trial's MLflow run (reslab.tracking.sweep closes it)
CATCH = (DivergedError, torch.cuda.OutOfMemoryError)  # fail the trial, not the study
MAX_FAILURES_IN_A_ROW = 5  # then something is wrong with every trial, not with one configuration


class TrialTracker(Protocol):
    """Where a trial's run goes (reslab.tracking.sweep.MlflowTrialTracker; None switches tracking off)."""

    def start_trial(self, number: int, sampled: dict[str, Any], overrides: dict[str, Any],
                    retry_of: int | None = None) -> str: ...

    def log_epoch(self, row: dict[str, float]) -> None: ...

    def end_trial(self, state: str, metrics: dict[str, float], *, interrupted: bool = False,
                  failure: str | None = None) -> None: ...


def selected_row(history: Sequence[dict[str, float]]) -> dict[str, float]:
    """The epoch the training stage would keep so far, during training: the lowest val loss, the first of equals
    (`fit`'s rule; once training ends, `FitResult.best_epoch` says it)."""
    return min(history, key=lambda row: row["val_loss"])


def kept_row(result: FitResult) -> dict[str, float]:
    """The epoch whose weights `fit` restored (the one the training stage keeps and evaluates)."""
    return next(row for row in result.history if row["epoch"] == result.best_epoch)


def trial_metrics(result: FitResult) -> dict[str, float]:
    """A trial's figures for its MLflow run, named as the training stage's metrics/train_<role>.json."""
    best = kept_row(result)
    return {"best_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"], "best_val_loss": best["val_loss"],
            "epochs_trained": len(result.history), "stopped_early": float(result.stopped_early),
            "train_time_s": sum(r["epoch_time_s"] for r in result.history)}


def train_trial(config: TrainingConfig, train: ImageArrays, val: ImageArrays, *, precision: Precision,
                should_stop: Callable[[int, dict[str, float]], bool] | None = None,
                on_epoch_end: Callable[[dict[str, float]], None] | None = None, progress: bool = False) -> FitResult:
    """Train one trial's model as the stage would (same seed, loaders, augmentation, early stopping), without a
    checkpoint.

    Args:
        config: the trial's training config (`config.resolve` of the trial's params).
        train: the train split.
        val: the validation split.
        precision: device, autocast and memory-format plan.
        should_stop: called after every epoch; True ends training (pruning).
        on_epoch_end: called with every epoch's row (logging).
        progress: show progress bars.
    """
    _, result = train_classifier(config, train, val, precision=precision, checkpoint=None,
                                 should_stop=should_stop, on_epoch_end=on_epoch_end, progress=progress)
    return result


class Objective:
    """Draw a configuration of one role's section, train it as the training stage would, report after every
    epoch the val accuracy of the epoch the stage would keep so far (pruning), and return it at the end: the val
    accuracy at the best-val-loss epoch (FitResult.best_epoch), not the maximum over epochs.

    Args:
        params: the base params.
        cfg: the tune config of `tune_config` (epochs resolved).
        role: the model tuned (baseline | resnet).
        space: the role's parsed search space.
        train: the train split.
        val: the validation split (the test split never reaches this object).
        precision: device, autocast and memory-format plan.
        tracker: MLflow child runs, or None (benchmarks, tests).
        progress: show progress bars.
    """

    def __init__(self, params: Params, cfg: TuneConfig, role: str, space: Sequence[Dimension], train: ImageArrays,
                 val: ImageArrays, *, precision: Precision, tracker: TrialTracker | None = None,
                 progress: bool = False):
        self.params, self.cfg, self.role, self.space = trial_base_params(params, cfg), cfg, role, tuple(space)
        self.train, self.val, self.precision, self.tracker, self.progress = train, val, precision, tracker, progress
        self.last_trial_number: int | None = None

    def config(self, overrides: dict[str, Any]) -> TrainingConfig:
        """The training config the training stage would resolve from the trial's params."""
        return resolve(with_overrides(self.params, overrides), self.role)

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial_number = trial.number
        sampled = suggest(trial, self.space)
        overrides = trial_overrides(sampled, self.role)
        trial.set_user_attr("overrides", overrides)  # the params keys `--apply` writes
        config = self.config(overrides)
        if self.tracker:
            frozen = trial.study.get_trials(deepcopy=False)[trial.number]
            retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
            trial.set_user_attr(RUN_ID_ATTR, self.tracker.start_trial(trial.number, sampled, overrides, retry_of))
        history: list[dict[str, float]] = []
        pruned = False

        def should_stop(epoch: int, row: dict[str, float]) -> bool:
            nonlocal pruned
            history.append(row)
            trial.report(selected_row(history)["val_accuracy"], epoch)
            pruned = trial.should_prune()
            return pruned

        try:
            result = train_trial(config, self.train, self.val, precision=self.precision, should_stop=should_stop,
                                 on_epoch_end=self.tracker.log_epoch if self.tracker else None,
                                 progress=self.progress)
        except KeyboardInterrupt:
            if self.tracker:
                self.tracker.end_trial("FAIL", {}, interrupted=True)
            raise
        except BaseException as e:
            if self.tracker:
                self.tracker.end_trial("FAIL", {}, failure=repr(e))
            raise
        metrics = trial_metrics(result)
        if pruned:
            if self.tracker:
                self.tracker.end_trial("PRUNED", metrics)
            raise optuna.TrialPruned(f"val_accuracy {metrics['best_val_accuracy']:.4f} at epoch "
                                     f"{metrics['best_epoch']:.0f} (the lowest val loss) after epoch "
                                     f"{len(result.history)} of {config.epochs}")
        if self.tracker:
            self.tracker.end_trial("COMPLETE", metrics)
        return metrics["best_val_accuracy"]


def run_worker(study: optuna.Study, objective: Objective, cfg: TuneConfig, *, concurrent: bool = False,
               notify: Callable[[str], None] = print) -> TrialCounts:
    """Run trials until the study has `cfg.n_trials` finished (complete + pruned) trials.

    Before every trial, stale trials of dead workers are failed (and queued again), and the worker stops when the
    finished plus running trials already fill the budget, so several workers end at n_trials instead of each
    starting one more (two workers checking at the same instant can still overshoot by one). A trial interrupted
    by Ctrl-C is FAIL and queued again, so the next `reslab tune` reruns it first.

    Args:
        study: the study (its storage shared with the other workers).
        objective: the objective.
        cfg: the tune config.
        concurrent: other workers may run at the same time (decorrelates their sampler seeds).
        notify: where one-line notices go.
    """
    token = f"{socket.gethostname()}:{os.getpid()}"
    failures_in_a_row = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        counts = count_trials(study)
        if counts.finished >= cfg.n_trials:
            return counts
        if counts.finished + counts.running >= cfg.n_trials and counts.waiting == 0:
            notify(f"reslab tune: the remaining {counts.running} trial(s) are running in other workers")
            return counts
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise RuntimeError(f"study {cfg.study_name!r}: the last {failures_in_a_row} trials of this worker "
                               f"failed; see the errors above (their MLflow runs carry a 'failure' tag)")
        n_so_far = sum(dataclasses.astuple(counts))
        study.sampler = make_sampler(cfg, n_so_far, token if (concurrent or counts.running) else "")
        try:
            study.optimize(objective, n_trials=1, catch=CATCH, gc_after_trial=True)
            last = study.get_trials(deepcopy=False)[objective.last_trial_number]
            failures_in_a_row = failures_in_a_row + 1 if last.state == TrialState.FAIL else 0
        except KeyboardInterrupt:
            _requeue_interrupted(study, objective.last_trial_number, cfg.max_retry)
            raise
        except UpdateFinishedTrialError as e:  # this worker stalled and its trial was failed as stale meanwhile
            notify(f"reslab tune: {e}; the trial was already failed and queued again by another worker")


def _requeue_interrupted(study: optuna.Study, number: int | None, max_retry: int) -> None:
    if number is None:
        return
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.FAIL and trial.params:
        StaleTrialRetry(max_retry).retry(study, trial)
