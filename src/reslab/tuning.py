"""`reslab tune`: an Optuna study over the ResNet's depth and width, augmentation and learning rate.

Each trial trains `train_resnet`'s model on the train split for `tune.epochs` epochs and returns its best
validation accuracy; the test split is never opened. Unpromising trials are pruned after any epoch. The study
lives in an Optuna storage (by default a journal file, tuning/optuna-journal.log), so `reslab tune` run again
continues it, `--workers N` processes share it, and several machines share an RDB storage. MLflow gets one parent
run per study and one child run per trial; the best trial's params go to tuning/best_params.yaml and, with
`--apply`, into params.yaml for `dvc repro`.

Layers, from pure to I/O: `TuneConfig` / `parse_search_space` (params -> search space), `suggest` and
`trial_overrides` (trial -> params.yaml keys), `train_trial` (one training run), `Objective` (the three glued,
with a pluggable tracker), `run_worker` (the trial loop of one process), `main` (storage, MLflow, processes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import optuna
import torch
import yaml
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from . import tracking
from .config import ConfigError, Params, flatten, from_dict, load_params, set_dotted, to_dict
from .data.prepared import ImageArrays, load_prepared
from .layout import Layout
from .models import create_model
from .stages.train import train_model
from .training import (DivergedError, FitResult, Precision, default_threads, oversubscription, resolve_device,
                       resolve_precision)

JOURNAL_FILE = "optuna-journal.log"  # under tuning/
BEST_PARAMS_FILE = "best_params.yaml"  # under tuning/
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attr: the parent run every worker attaches to
SIGNATURE_ATTR = "reslab_signature"  # study user attr: what defines the objective (checked on reload)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TuneConfig:
    """The `tune:` section of params.yaml (see the comments there)."""

    study_name: str = "reslab-resnet"
    n_trials: int = 20
    epochs: int = 6
    sampler_seed: int = 42
    sampler_startup_trials: int = 5
    pruner: Literal["median", "percentile", "hyperband", "none"] = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 0
    pruner_percentile: float = 25.0
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int = 2
    search_space: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed, when low == high) parameter.

    Args:
        name: the search-space key, also the Optuna parameter name.
        kind: "int", "float" or "bool".
        low: smallest value (bools: unused).
        high: largest value.
        step: int step.
        log: sample floats log-uniformly.
    """

    name: str
    kind: Literal["int", "float", "bool"]
    low: Any
    high: Any
    step: int = 1
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


AUGMENT_RANGES = ("rotation", "shift", "shear", "zoom", "brightness")
ARCHITECTURE = ("depth", "stages", "width")
# key -> (kind, log, smallest accepted value, largest accepted value)
SEARCH_KEYS: dict[str, tuple[str, bool, float | None, float | None]] = {
    "depth": ("int", False, 1, None),
    "stages": ("int", False, 1, None),
    "width": ("int", False, 1, None),
    "magnitude": ("float", False, 0.0, 3.0),
    "lr": ("float", True, None, None),  # > 0, checked below
    **{name: ("float", False, 0.0, None) for name in AUGMENT_RANGES},
    "hflip": ("bool", False, None, None),
}


def _number(value: Any, kind: str, key: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: {value!r} is not a number")
    if kind == "int" and not isinstance(value, int):
        raise ConfigError(f"{key}: {value!r} is not an integer")
    return value if kind == "int" else float(value)


def _dimension(name: str, raw: Any) -> Dimension:
    """Parse one search-space entry: [low, high], [low, high, step] (ints) or one value (fixed)."""
    key = f"tune.search_space.{name}"
    kind, log, lo_ok, hi_ok = SEARCH_KEYS[name]
    if kind == "bool":
        if isinstance(raw, bool):
            return Dimension(name, "bool", raw, raw)
        if isinstance(raw, list) and raw and all(isinstance(v, bool) for v in raw) and len(set(raw)) == len(raw):
            return Dimension(name, "bool", False, True) if len(raw) == 2 else Dimension(name, "bool", raw[0], raw[0])
        raise ConfigError(f"{key}: {raw!r}; accepted: true, false or [true, false]")
    if isinstance(raw, list):
        if not (len(raw) == 2 or (kind == "int" and len(raw) == 3)):
            shape = "[low, high] or [low, high, step]" if kind == "int" else "[low, high]"
            raise ConfigError(f"{key}: {raw!r}; accepted: one value or {shape}")
        low, high = _number(raw[0], kind, key), _number(raw[1], kind, key)
        step = _number(raw[2], kind, key) if len(raw) == 3 else 1
        if low > high:
            raise ConfigError(f"{key}: {raw!r}; low must not exceed high")
        if kind == "int" and (step < 1 or (high - low) % step):
            raise ConfigError(f"{key}: {raw!r}; the step must be >= 1 and divide high - low")
    else:
        low = high = _number(raw, kind, key)
        step = 1
    for value in (low, high):
        if (lo_ok is not None and value < lo_ok) or (hi_ok is not None and value > hi_ok) or (log and value <= 0):
            accepted = "> 0" if log else f">= {lo_ok}" + (f" and <= {hi_ok}" if hi_ok is not None else "")
            raise ConfigError(f"{key}: {value!r} is out of range; accepted: values {accepted}")
    return Dimension(name, kind, low, high, step, log)  # type: ignore[arg-type]


def parse_search_space(raw: dict[str, Any]) -> tuple[Dimension, ...]:
    """`tune.search_space` -> dimensions in a fixed order (sampling order is part of a seeded study).

    Args:
        raw: the mapping from params.yaml.
    """
    unknown = sorted(set(raw) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {', '.join('tune.search_space.' + str(k) for k in unknown)}; valid keys "
                          f"of tune.search_space: {', '.join(SEARCH_KEYS)}")
    given = [k for k in ARCHITECTURE if k in raw]
    if given and len(given) < len(ARCHITECTURE):
        missing = ", ".join(f"tune.search_space.{k}" for k in ARCHITECTURE if k not in raw)
        raise ConfigError(f"{missing}: missing; the architecture is tuned as depth x stages x width together "
                          f"(give a single value to fix one)")
    if not raw:
        raise ConfigError("tune.search_space: empty; give at least one of " + ", ".join(SEARCH_KEYS))
    return tuple(_dimension(name, raw[name]) for name in SEARCH_KEYS if name in raw)


def tune_config(params: Params, n_trials: int | None = None,
                study_name: str | None = None) -> tuple[TuneConfig, tuple[Dimension, ...]]:
    """Validate params.tune (strictly: unknown keys fail naming the key) and its search space.

    Args:
        params: the loaded params.
        n_trials: command-line override of tune.n_trials.
        study_name: command-line override of tune.study_name.
    """
    cfg = from_dict(TuneConfig, params.tune, "tune")
    cfg = dataclasses.replace(cfg, n_trials=cfg.n_trials if n_trials is None else n_trials,
                              study_name=cfg.study_name if study_name is None else study_name)

    def fail(name: str, accepted: str) -> None:
        raise ConfigError(f"tune.{name}: {getattr(cfg, name)!r} is out of range; accepted: {accepted}")

    if not cfg.study_name.strip():
        fail("study_name", "a non-empty name")
    for name in ("n_trials", "epochs", "heartbeat_interval"):
        if getattr(cfg, name) < 1:
            fail(name, "an integer >= 1")
    for name in ("sampler_startup_trials", "pruner_startup_trials", "pruner_warmup_epochs", "max_retry"):
        if getattr(cfg, name) < 0:
            fail(name, "an integer >= 0")
    if not 0 < cfg.pruner_percentile < 100:
        fail("pruner_percentile", "a number strictly between 0 and 100")
    if cfg.grace_period is not None and cfg.grace_period < cfg.heartbeat_interval:
        fail("grace_period", f"null or an integer >= heartbeat_interval ({cfg.heartbeat_interval})")
    space = parse_search_space(cfg.search_space)
    tuned_augment = [d.name for d in space if d.name == "magnitude" or d.name in AUGMENT_RANGES + ("hflip",)]
    if tuned_augment and not params.train_resnet.augment:
        raise ConfigError(f"tune.search_space.{tuned_augment[0]}: train_resnet.augment is false, so augmentation "
                          f"is off and cannot be tuned; set it to true or drop the augment keys")
    return cfg, space


# ----------------------------------------------------------------------------- trial -> params (pure)


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """Draw one configuration; fixed dimensions are returned without asking Optuna.

    Args:
        trial: the Optuna trial (a FixedTrial works too).
        space: the parsed search space.
    """
    out: dict[str, Any] = {}
    for d in space:
        if d.fixed:
            out[d.name] = d.low
        elif d.kind == "int":
            out[d.name] = trial.suggest_int(d.name, d.low, d.high, step=d.step)
        elif d.kind == "float":
            out[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
        else:
            out[d.name] = trial.suggest_categorical(d.name, [True, False])
    return out


def trial_overrides(sampled: dict[str, Any]) -> dict[str, Any]:
    """A sampled configuration as dotted params.yaml keys: what `--apply` writes and what the trial trains with.

    Stage i has `depth` units of width * 2**i channels (the study's network doubles 32 -> 64).

    Args:
        sampled: output of `suggest`.
    """
    out: dict[str, Any] = {}
    if "stages" in sampled:
        stages, depth, width = sampled["stages"], sampled["depth"], sampled["width"]
        out["train_resnet.model_args.depths"] = [depth] * stages
        out["train_resnet.model_args.widths"] = [width * 2**i for i in range(stages)]
    for name in ("magnitude", *AUGMENT_RANGES, "hflip"):
        if name in sampled:
            out[f"augment.{name}"] = sampled[name]
    if "lr" in sampled:
        out["train_resnet.lr"] = sampled["lr"]
    return out


def with_overrides(params: Params, overrides: dict[str, Any]) -> Params:
    """`params` with dotted-key overrides applied and validated again.

    Args:
        params: the base params.
        overrides: output of `trial_overrides`.
    """
    raw = to_dict(params)
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return from_dict(Params, raw)


def check_architectures(params: Params, space: Sequence[Dimension]) -> None:
    """Fail early when the deepest configuration cannot be built at data.image_size."""
    by_name = {d.name: d for d in space}
    if "stages" not in by_name:
        return
    stages, depth, width = by_name["stages"].high, by_name["depth"].low, by_name["width"].low
    try:
        create_model(params.train_resnet.model, num_classes=2, image_size=params.data.image_size,
                     **{**params.train_resnet.model_args, "depths": [depth] * stages, "widths": [width] * stages})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"tune.search_space.stages: {stages} stages of train_resnet.model "
                          f"{params.train_resnet.model!r} cannot be built: {e}") from None


# ----------------------------------------------------------------------------- one trial's training


def train_trial(params: Params, train: ImageArrays, val: ImageArrays, *, epochs: int, precision: Precision,
                should_stop: Callable[[int, dict[str, float]], bool] | None = None,
                on_epoch_end: Callable[[dict[str, float]], None] | None = None, progress: bool = False) -> FitResult:
    """Train train_resnet's model as the stage would (same seed, loaders, augmentation), without early stopping.

    Args:
        params: the trial's params (base params with the trial's overrides).
        train: the train split.
        val: the validation split.
        epochs: epochs to train unless `should_stop` ends sooner.
        precision: autocast / memory-format plan.
        should_stop: called after every epoch; True ends training (pruning).
        on_epoch_end: called with every epoch's row (logging).
        progress: show progress bars.
    """
    _, result = train_model(params, "resnet", train, val, precision=precision, checkpoint=None, epochs=epochs,
                            patience=0, should_stop=should_stop, on_epoch_end=on_epoch_end, progress=progress)
    return result


# ----------------------------------------------------------------------------- MLflow: parent and child runs


MLFLOW_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class MlflowTrialTracker:
    """One MLflow child run per trial, nested under the study's parent run (created once by `ensure_parent_run`).

    Args:
        root: project root (for the standard tags).
        experiment_id: the MLflow experiment.
        parent_run_id: the study's run.
        study_name: the Optuna study.
    """

    def __init__(self, root: Path, experiment_id: str, parent_run_id: str, study_name: str):
        self.root, self.experiment_id, self.parent_run_id, self.study_name = root, experiment_id, parent_run_id, \
            study_name
        self.client = tracking.MlflowClient()
        self._base_tags = tracking.standard_tags(root, stage="tune", study_name=study_name)

    def start_trial(self, trial: optuna.Trial, sampled: dict[str, Any], overrides: dict[str, Any]) -> str:
        tags = {**self._base_tags, "mlflow.parentRunId": self.parent_run_id, "trial_number": str(trial.number),
                "state": "RUNNING", "worker": f"{socket.gethostname()}:{os.getpid()}"}
        retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        if retry_of is not None:
            tags["retry_of_trial"] = str(retry_of)
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{self.study_name}-trial-{trial.number}")
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        tracking.mlflow.start_run(run_id=run.info.run_id)
        tracking.log_params_flat({**sampled, **{f"params.{k}": v for k, v in overrides.items()}})
        return run.info.run_id

    def log_epoch(self, row: dict[str, float]) -> None:
        tracking.log_epoch(row)

    def end_trial(self, state: str, metrics: dict[str, float], interrupted: bool = False) -> None:
        tracking.mlflow.set_tags({"state": state, **({"interrupted": "true"} if interrupted else {})})
        if metrics:
            tracking.mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
        tracking.mlflow.end_run(status="KILLED" if interrupted else MLFLOW_STATUS[state])

    def fail_stale(self, trial: FrozenTrial) -> None:
        """Close the run of a trial whose worker died (called by the heartbeat check in whichever worker sees it)."""
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            self.client.set_tag(run_id, "state", "FAIL")
            self.client.set_tag(run_id, "failure", "worker stopped sending heartbeats")
            self.client.set_terminated(run_id, "FAILED")


def ensure_parent_run(study: optuna.Study, root: Path, experiment_id: str, cfg: TuneConfig,
                      storage_name: str) -> str:
    """The study's MLflow run: created by the first `reslab tune` and recorded in the study's user attrs, so every
    worker and every later run attaches to it by id instead of racing to create one.

    Args:
        study: the loaded study.
        root: project root.
        experiment_id: the MLflow experiment.
        cfg: the tune config (logged as params when the run is created).
        storage_name: where the study lives (a tag).
    """
    client = tracking.MlflowClient()
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        try:
            run = client.get_run(run_id)
            if run.info.lifecycle_stage != "deleted":
                client.update_run(run_id, status="RUNNING")
                return run_id
        except tracking.mlflow.exceptions.MlflowException:
            pass  # the run is gone (another tracking store?): make a new one
    tags = tracking.standard_tags(root, stage="tune", study_name=cfg.study_name, optuna_storage=storage_name)
    run = client.create_run(experiment_id, tags=tags, run_name=cfg.study_name)
    ours = run.info.run_id
    for key, value in flatten({"tune": {k: v for k, v in to_dict(cfg).items() if k != "n_trials"}}).items():
        client.log_param(ours, key, str(value)[:6000])
    study.set_user_attr(PARENT_RUN_ATTR, ours)
    # Two machines starting the same new study within moments could both get here; whoever wrote last wins, and
    # a loser that reads back the winner's id uses it (this narrows that window; it cannot close it).
    winner = study.user_attrs[PARENT_RUN_ATTR]
    if winner != ours:
        client.delete_run(ours)
    return winner


# ----------------------------------------------------------------------------- storage: journal with heartbeats


HEARTBEAT_ATTR = "reslab:heartbeat"  # trial system attr: wall-clock time of the last heartbeat


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A JournalStorage with Optuna's heartbeat, which optuna 5.0 implements only for RDBStorage.

    A heartbeat is a trial system attr holding the worker's clock; a RUNNING trial whose latest heartbeat (or
    start, for a retried trial that inherited an old one) is older than `grace_period` is stale, and Optuna's own
    `fail_stale_trials` fails it and calls `heartbeat_stale_trial_callback` (the retry).

    Args:
        backend: the journal backend (a JournalFileBackend).
        heartbeat_interval: seconds between heartbeats of a running trial.
        grace_period: seconds without a heartbeat before a trial is stale (None = 2 x heartbeat_interval).
        heartbeat_stale_trial_callback: called with each trial failed as stale.
    """

    def __init__(self, backend: JournalFileBackend, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass  # failed as stale by another worker meanwhile; the trial's own writes report it

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.heartbeat_interval is None:
            return []
        grace = self.grace_period or 2 * self.heartbeat_interval
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else 0.0  # naive local time
            if now - max(float(t.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started) > grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


class StaleTrialRetry:
    """Heartbeat-stale callback: Optuna's RetryHeartbeatStaleTrialCallback (the trial is queued again as WAITING
    with the same params) plus `on_stale`, e.g. closing the dead trial's MLflow run.

    Args:
        max_retry: retries per original trial.
        on_stale: called with the stale trial after it is failed.
    """

    def __init__(self, max_retry: int, on_stale: Callable[[FrozenTrial], None] | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.on_stale = on_stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        print(f"reslab tune: trial {trial.number} stopped sending heartbeats (worker killed?): marked FAIL, "
              f"queued again", file=sys.stderr)
        self.retry(study, trial)
        if self.on_stale is not None:
            self.on_stale(trial)


def default_storage_path(root: Path) -> Path:
    return Layout(root).tuning / JOURNAL_FILE


def storage_name(url: str | None, root: Path) -> str:
    """What to pass to `--storage` of optuna's CLI / optuna-dashboard for this study (a password is masked: the
    name is printed and tagged in MLflow)."""
    if url is None:
        path = default_storage_path(root)
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands; opening it reports the problem
        return url.split("@")[-1]


def open_storage(url: str | None, root: Path, cfg: TuneConfig | None = None,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> BaseStorage:
    """The study's storage, with heartbeats when `cfg` is given.

    Args:
        url: None (the journal file tuning/optuna-journal.log), a journal file path, or an Optuna RDB URL
            (sqlite:///..., postgresql://..., mysql://...).
        root: project root.
        cfg: heartbeat settings; None opens without heartbeats (reading, --apply).
        on_stale: heartbeat-stale trial callback.
    """
    interval = cfg.heartbeat_interval if cfg else None
    grace = (cfg.grace_period or 2 * cfg.heartbeat_interval) if cfg else None
    if url is None or "://" not in url:
        path = default_storage_path(root) if url is None else Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat_interval=interval,
                                       grace_period=grace, heartbeat_stale_trial_callback=on_stale)
    shown = storage_name(url, root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=interval, grace_period=grace,
                              heartbeat_stale_trial_callback=on_stale if cfg else None)
    except ImportError as e:
        raise ConfigError(f"--storage {shown}: the database driver is not installed ({e}); for PostgreSQL: "
                          f"pip install 'reslab[postgres]'") from None
    except Exception as e:  # sqlalchemy's errors for a bad URL or an unreachable server
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        password = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        raise ConfigError(f"--storage {shown}: cannot open the Optuna storage: "
                          f"{message.replace(password, '***') if password else message}") from None


# ----------------------------------------------------------------------------- sampler, pruner, study


def make_sampler(cfg: TuneConfig, n_trials_so_far: int, worker_token: str = "") -> optuna.samplers.TPESampler:
    """A TPE sampler seeded from (sampler_seed, trials so far, worker): a resumed study draws what an uninterrupted
    one would have drawn, and concurrent workers (distinct tokens) do not draw the same random trial.

    Args:
        cfg: the tune config.
        n_trials_so_far: trials in the study before this one.
        worker_token: empty for a lone sequential worker, else unique per process.
    """
    digest = hashlib.sha256(f"{cfg.sampler_seed}:{n_trials_so_far}:{worker_token}".encode()).digest()
    return optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "little"),
                                      n_startup_trials=cfg.sampler_startup_trials, constant_liar=True)


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    """The pruner named by tune.pruner. Steps are epochs, counted from 1 as in MLflow, so a trial can first be
    pruned at epoch pruner_warmup_epochs + 1 (Optuna prunes at steps >= n_warmup_steps).

    Args:
        cfg: the tune config.
    """
    first_prunable = cfg.pruner_warmup_epochs + 1
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=first_prunable)
    if cfg.pruner == "percentile":
        return optuna.pruners.PercentilePruner(cfg.pruner_percentile, n_startup_trials=cfg.pruner_startup_trials,
                                               n_warmup_steps=first_prunable)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first_prunable, max_resource=cfg.epochs)
    return optuna.pruners.NopPruner()


def study_signature(params: Params, cfg: TuneConfig) -> dict[str, Any]:
    """What defines the objective: a study reloaded with a different one would mix incomparable trials."""
    return {"search_space": cfg.search_space, "epochs": cfg.epochs, "model": params.train_resnet.model,
            "image_size": params.data.image_size}


def open_study(storage: BaseStorage, params: Params, cfg: TuneConfig, *, create: bool = True) -> optuna.Study:
    """Create the study or load it (load_if_exists); a reloaded study must have the same signature.

    Args:
        storage: the Optuna storage.
        params: the loaded params.
        cfg: the tune config.
        create: False only loads (KeyError when the study does not exist).
    """
    if create:
        study = optuna.create_study(storage=storage, study_name=cfg.study_name, direction="maximize",
                                    load_if_exists=True, sampler=make_sampler(cfg, 0), pruner=make_pruner(cfg))
    else:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=make_sampler(cfg, 0),
                                  pruner=make_pruner(cfg))
    signature = json.loads(json.dumps(study_signature(params, cfg)))
    recorded = study.user_attrs.get(SIGNATURE_ATTR)
    if recorded is None and create:
        study.set_user_attr(SIGNATURE_ATTR, signature)
    elif recorded is not None and recorded != signature:
        changed = ", ".join(k for k in signature if recorded.get(k) != signature[k])
        raise ConfigError(f"tune.study_name: study {cfg.study_name!r} was run with other settings ({changed} "
                          f"differ: {recorded} now {signature}); set a new tune.study_name (or --study-name) to "
                          f"start another study, or restore the settings to continue this one")
    return study


@dataclass(frozen=True)
class TrialCounts:
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def count_trials(study: optuna.Study) -> TrialCounts:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return TrialCounts(*(states.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                    TrialState.RUNNING, TrialState.WAITING)))


# ----------------------------------------------------------------------------- the objective


class Objective:
    """Sample a configuration, train it, report val accuracy every epoch (pruning), return the best.

    Args:
        params: the base params.
        cfg: the tune config.
        space: the parsed search space.
        train: the train split.
        val: the validation split (the test split never reaches this object).
        precision: autocast / memory-format plan.
        tracker: MLflow child runs, or None (benchmarks, tests).
        progress: show progress bars.
    """

    def __init__(self, params: Params, cfg: TuneConfig, space: Sequence[Dimension], train: ImageArrays,
                 val: ImageArrays, *, precision: Precision, tracker: MlflowTrialTracker | None = None,
                 progress: bool = False):
        self.params, self.cfg, self.space = params, cfg, tuple(space)
        self.train, self.val, self.precision, self.tracker, self.progress = train, val, precision, tracker, progress
        self.last_trial_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial_number = trial.number
        sampled = suggest(trial, self.space)
        overrides = trial_overrides(sampled)
        trial.set_user_attr("overrides", overrides)  # the params.yaml keys `--apply` writes
        trial_params = with_overrides(self.params, overrides)
        if self.tracker:
            self.tracker.start_trial(trial, sampled, overrides)
        pruned = False

        def should_stop(epoch: int, row: dict[str, float]) -> bool:
            nonlocal pruned
            trial.report(row["val_accuracy"], epoch)
            pruned = trial.should_prune()
            return pruned

        try:
            result = train_trial(trial_params, self.train, self.val, epochs=self.cfg.epochs,
                                 precision=self.precision, should_stop=should_stop,
                                 on_epoch_end=self.tracker.log_epoch if self.tracker else None,
                                 progress=self.progress)
        except KeyboardInterrupt:
            if self.tracker:
                self.tracker.end_trial("FAIL", {}, interrupted=True)
            raise
        except BaseException as e:
            if self.tracker:
                tracking.mlflow.set_tag("failure", repr(e)[:5000])
                self.tracker.end_trial("FAIL", {})
            raise
        best = max(r["val_accuracy"] for r in result.history)
        metrics = {"best_val_accuracy": best, "epochs_trained": len(result.history),
                   "train_time_s": sum(r["epoch_time_s"] for r in result.history)}
        if pruned:
            if self.tracker:
                self.tracker.end_trial("PRUNED", metrics)
            raise optuna.TrialPruned(f"val_accuracy {result.history[-1]['val_accuracy']:.4f} after epoch "
                                     f"{len(result.history)} of {self.cfg.epochs}")
        if self.tracker:
            self.tracker.end_trial("COMPLETE", metrics)
        return best


# ----------------------------------------------------------------------------- one worker's trial loop


CATCH = (DivergedError, torch.OutOfMemoryError)  # fail the trial, not the study
MAX_FAILURES_IN_A_ROW = 5  # then something is wrong with every trial, not with one configuration


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


# ----------------------------------------------------------------------------- summary, best params, --apply


def best_record(study: optuna.Study) -> dict[str, Any] | None:
    """The best trial as the contents of tuning/best_params.yaml (None before any trial completes)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    overrides = best.user_attrs.get("overrides") or trial_overrides(best.params)
    return {"study_name": study.study_name, "trial_number": best.number, "val_accuracy": best.value,
            "optuna_params": dict(best.params), "params": overrides,
            "dvc_exp_run": dvc_exp_run_command(overrides)}


def dvc_exp_run_command(overrides: dict[str, Any]) -> str:
    """The `dvc exp run -S` equivalent of `--apply` (`++` adds keys that params.yaml lacks, e.g. under
    model_args: {})."""
    return "dvc exp run " + " ".join(f"-S '++{k}={json.dumps(v)}'" for k, v in overrides.items())


def write_best_params(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Best trial of Optuna study {record['study_name']!r}, written by `reslab tune`.\n"
              f"# `reslab tune --apply` writes `params` into params.yaml; `dvc exp run -S ...` below does the same\n"
              f"# as an experiment.\n")
    path.write_text(header + yaml.safe_dump(record, sort_keys=False, width=4096))


def write_params_yaml(params_file: Path, overrides: dict[str, Any]) -> None:
    """Set dotted keys in params.yaml, keeping its comments and layout (ruamel.yaml round trip); the result is
    validated before it replaces the file.

    Args:
        params_file: params.yaml.
        overrides: dotted key -> value.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(params_file.read_text())
    for key, value in overrides.items():
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = CommentedMap()
            node = node[part]
        if isinstance(value, list):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        node[parts[-1]] = value
    tmp = params_file.with_name(f".{params_file.name}.tmp")
    with tmp.open("w") as f:
        rt.dump(doc, f)
    try:
        load_params(tmp)
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(params_file)


def log_study_summary(study: optuna.Study, parent_run_id: str, record: dict[str, Any] | None,
                      best_params_file: Path, status: str) -> None:
    """Best value/params, counts and Optuna's plots into the parent run; set its status."""
    client = tracking.MlflowClient()
    counts = count_trials(study)
    step = counts.finished
    epochs = sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))
    for key, value in {"n_complete": counts.complete, "n_pruned": counts.pruned, "n_failed": counts.failed,
                       "epochs_trained": epochs}.items():
        client.log_metric(parent_run_id, key, value, step=step)
    if record is not None:
        client.log_metric(parent_run_id, "best_val_accuracy", record["val_accuracy"], step=step)
        client.set_tag(parent_run_id, "best_trial", str(record["trial_number"]))
        for key, value in record["optuna_params"].items():
            client.set_tag(parent_run_id, f"best.{key}", str(value))
        client.log_artifact(parent_run_id, str(best_params_file))
    for name, figure in study_figures(study).items():
        client.log_figure(parent_run_id, figure, f"figures/{name}.png")
        import matplotlib.pyplot as plt

        plt.close(figure)
    client.set_terminated(parent_run_id, status)


def study_figures(study: optuna.Study) -> dict[str, Any]:
    """Optuna's matplotlib plots that the study's trials allow (importances need two completed trials with
    varied params; a plot that cannot be drawn is skipped with a notice)."""
    from . import plots  # noqa: F401  (selects the headless matplotlib backend)
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


def apply_best(root: Path, params_file: Path, cfg: TuneConfig, params: Params, url: str | None) -> int:
    """`reslab tune --apply`: the study's best trial -> tuning/best_params.yaml and params.yaml."""
    if url is None and not default_storage_path(root).is_file():
        raise ConfigError(f"{default_storage_path(root)}: no study journal; run `reslab tune` first")
    storage = open_storage(url, root)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        raise ConfigError(f"tune.study_name: no study {cfg.study_name!r} in {storage_name(url, root)}; run "
                          f"`reslab tune` first") from None
    record = best_record(study)
    if record is None:
        raise ConfigError(f"study {cfg.study_name!r} has no completed trial yet; run `reslab tune`")
    best_file = Layout(root).tuning / BEST_PARAMS_FILE
    write_best_params(best_file, record)
    write_params_yaml(params_file, record["params"])
    print(f"reslab tune: wrote trial {record['trial_number']} (val_accuracy {record['val_accuracy']:.4f}) into "
          f"{params_file}:")
    for key, value in record["params"].items():
        print(f"  {key}: {json.dumps(value)}")
    print(f"`dvc repro` now retrains train_resnet with them; the same as an experiment, without editing "
          f"params.yaml:\n  {record['dvc_exp_run']}")
    return 0


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable for the spawn start method)."""

    root: Path
    params: Params
    cfg: TuneConfig
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


def _quiet_optuna() -> None:
    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # heartbeat, retry and plots are "experimental"
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoInterruptTraceback) for f in handler.filters):
            handler.addFilter(_NoInterruptTraceback())


def worker_main(spec: WorkerSpec) -> TrialCounts:
    """One worker: its own storage connection, data, torch threads and MLflow client, then the trial loop."""
    _quiet_optuna()
    params = spec.params
    torch.set_num_threads(params.train.num_threads or default_threads(spec.workers))
    device = resolve_device(params.train.device)
    precision = resolve_precision(params.train.precision, device)
    layout = Layout(spec.root)
    train, val = load_prepared(layout.prepared_dir, "train"), load_prepared(layout.prepared_dir, "val")
    tracking.mlflow.set_tracking_uri(spec.tracking_uri)
    retry = StaleTrialRetry(spec.cfg.max_retry)
    storage = open_storage(spec.storage_url, spec.root, spec.cfg, retry)
    study = open_study(storage, params, spec.cfg, create=False)
    tracker = MlflowTrialTracker(spec.root, spec.experiment_id, spec.parent_run_id, spec.cfg.study_name)
    retry.on_stale = tracker.fail_stale
    objective = Objective(params, spec.cfg, spec.space, train, val, precision=precision, tracker=tracker,
                          progress=spec.progress)
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


def main(root: Path, args) -> int:
    """`reslab tune` (argparse namespace from reslab.cli: params, storage, workers, n_trials, study_name, apply,
    no_progress)."""
    _quiet_optuna()
    params_file = args.params if args.params.is_absolute() else root / args.params
    params = load_params(params_file)
    cfg, space = tune_config(params, n_trials=args.n_trials, study_name=args.study_name)
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: accepted: an integer >= 1")
    if args.apply:
        return apply_best(root, params_file, cfg, params, args.storage)
    layout = Layout(root)
    for split in ("train", "val"):  # fail before any process starts; the test split is never opened
        load_prepared(layout.prepared_dir, split)
    check_architectures(params, space)

    experiment_id = tracking.setup(root, params.mlflow.experiment_name)
    storage = open_storage(args.storage, root, cfg)
    study = open_study(storage, params, cfg)
    where = storage_name(args.storage, root)
    parent_run_id = ensure_parent_run(study, root, experiment_id, cfg, where)
    spec = WorkerSpec(root, params, cfg, tuple(space), args.storage, experiment_id, parent_run_id,
                      tracking.tracking_uri(root), args.workers, progress=not args.no_progress and args.workers == 1)
    counts = count_trials(study)
    warning = oversubscription(params.train.num_threads, args.workers)
    if warning:
        print(f"reslab tune: warning: {warning}", file=sys.stderr)
    print(f"reslab tune: study {cfg.study_name!r} in {where}: {counts.finished} of {cfg.n_trials} trials finished; "
          f"{args.workers} worker(s); MLflow parent run {parent_run_id}")
    status = "FINISHED"
    try:
        if args.workers == 1:
            worker_main(spec)
        else:
            run_processes(spec)
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"reslab tune: interrupted; the study is intact ({count_trials(study).finished} of {cfg.n_trials} "
              f"trials finished, interrupted trials are queued again). Run the same `reslab tune` to continue.",
              file=sys.stderr)
    except RuntimeError as e:  # every trial failing, or a worker process dying: report, keep what finished
        status = "FAILED"
        print(f"reslab tune: error: {e}", file=sys.stderr)
    record = best_record(study)
    best_file = layout.tuning / BEST_PARAMS_FILE
    if record is not None:
        write_best_params(best_file, record)
    log_study_summary(study, parent_run_id, record, best_file, status)
    counts = count_trials(study)
    print(f"reslab tune: {counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed trials")
    if record is not None:
        print(f"best val_accuracy {record['val_accuracy']:.4f} (trial {record['trial_number']}): "
              f"{record['optuna_params']}\nwrote {best_file}; `reslab tune --apply` writes it into params.yaml "
              f"(or: {record['dvc_exp_run']})")
    print(f"inspect: optuna trials --study-name {cfg.study_name} --storage {where}   |   "
          f"optuna-dashboard {where}")
    return {"FINISHED": 0, "KILLED": 130, "FAILED": 1}[status]
