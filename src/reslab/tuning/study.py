"""The study: the pipeline budget its trials train with, its sampler and pruner from `tune:`, its signature, and
how many trials are where."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from ..config import ConfigError, Params, TuneConfig, with_overrides

SIGNATURE_ATTR = "reslab_signature"  # study user attr: what defines the objective (checked on reload)
OBJECTIVE = "val_accuracy at the best-val-loss epoch"  # what the training stage keeps; not the max over epochs


def trial_base_params(params: Params, cfg: TuneConfig) -> Params:
    """The params every trial of the study starts from: params.yaml's, so a trial trains as the training stage
    would (its cap, early stopping, best weights restored), with train.epochs = tune.epochs when that was set
    smaller or larger (train.min_epochs capped to it, as config requires).

    Args:
        params: the loaded params.
        cfg: the tune config of `tune_config` (epochs resolved).
    """
    if cfg.epochs is None or cfg.epochs == params.train.epochs:
        return params
    return with_overrides(params, {"train.epochs": cfg.epochs,
                                   "train.min_epochs": min(params.train.min_epochs, cfg.epochs)})


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


def study_signature(params: Params, cfg: TuneConfig, role: str) -> dict[str, Any]:
    """What defines the objective: a study reloaded with a different one would mix incomparable trials."""
    train = trial_base_params(params, cfg).train
    return {"role": role, "objective": OBJECTIVE, "search_space": cfg.search_space.get(role),
            "model": params.model_stage(role).model, "image_size": params.data.image_size,
            "epochs": train.epochs, "min_epochs": train.min_epochs, "patience": train.patience,
            "batch_size": train.batch_size}


def open_study(storage: BaseStorage, params: Params, cfg: TuneConfig, role: str, *,
               create: bool = True) -> optuna.Study:
    """Create the study or load it (load_if_exists); a reloaded study must have the same signature.

    Args:
        storage: the Optuna storage.
        params: the loaded params.
        cfg: the tune config of `tune_config` (names the role's study).
        role: the model tuned.
        create: False only loads (KeyError when the study does not exist).
    """
    if create:
        study = optuna.create_study(storage=storage, study_name=cfg.study_name, direction="maximize",
                                    load_if_exists=True, sampler=make_sampler(cfg, 0), pruner=make_pruner(cfg))
    else:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=make_sampler(cfg, 0),
                                  pruner=make_pruner(cfg))
    signature = json.loads(json.dumps(study_signature(params, cfg, role)))
    recorded = study.user_attrs.get(SIGNATURE_ATTR)
    if recorded is None and create:
        study.set_user_attr(SIGNATURE_ATTR, signature)
    elif recorded is not None and recorded != signature:
        changed = ", ".join(k for k in signature if recorded.get(k) != signature.get(k))
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


def epochs_trained(study: optuna.Study) -> int:
    """Epochs reported by all trials together (each reports its val accuracy once per epoch)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))
