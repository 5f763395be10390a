"""`reslab tune`: open the study and its MLflow parent run, run the workers, record the best trial; `--apply`."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import optuna

from .. import tracking
from ..config import ConfigError, TuneConfig, load_params, write_params
from ..layout import Layout
from ..tracking.sweep import MlflowTrialTracker, ensure_parent_run, log_study_summary, study_figures
from .results import best_params_file, best_record, write_best_params
from .space import check_models, tune_config
from .storage import default_storage_path, open_storage, storage_name
from .study import SIGNATURE_ATTR, count_trials, epochs_trained, open_study
from .workers import WorkerSpec, quiet_optuna, run_processes, tuning_splits, worker_main


def main(root: Path, params_file: Path, *, role: str = "resnet", n_trials: int | None = None,
         study_name: str | None = None, workers: int = 1, storage: str | None = None, apply: bool = False,
         progress: bool = True) -> int:
    """`reslab tune --role ROLE`: run the role's study of params.yaml's `tune:` section to `tune.n_trials` finished
    trials. Both roles' studies share the budget (n_trials, epochs, pruner) and the objective (the training stage's
    val accuracy at its best-val-loss epoch).

    Args:
        root: project root.
        params_file: params.yaml.
        role: the model tuned (baseline | resnet): its study, search space and params section.
        n_trials: overrides tune.n_trials.
        study_name: overrides tune.study_name.
        workers: processes on this machine sharing the study.
        storage: None (the journal file tuning/optuna-journal.log), a journal file path or an RDB URL.
        apply: write the best trial's params into the role's section of params.yaml instead of tuning.
        progress: progress bars (shown with one worker only).

    Returns:
        the exit status: 0, 130 (interrupted; the study continues on the next run) or 1 (failed).
    """
    quiet_optuna()
    params = load_params(params_file)
    cfg, space = tune_config(params, role, n_trials=n_trials, study_name=study_name)
    params = dataclasses.replace(params, tune=cfg)
    if workers < 1:
        raise ConfigError(f"--workers {workers}: accepted: an integer >= 1")
    if apply:
        return apply_best(root, params_file, cfg, role, storage)
    layout = Layout(root)
    tracking.check_store(root)  # a tracking server that is down, or refuses the login, fails now, before the data
    tuning_splits(layout, params)  # fail before any process starts; the test split (or fold) is never opened
    check_models(params, role, space)

    experiment_id = tracking.setup(root, params.mlflow.experiment_name)
    study = open_study(open_storage(storage, root, cfg), params, cfg, role)
    where = storage_name(storage, root)
    parent_run_id = ensure_parent_run(study, root, experiment_id, cfg, role, where)
    orphans = MlflowTrialTracker(root, experiment_id, parent_run_id, cfg.study_name, role).close_orphans(study)
    if orphans:
        print(f"reslab tune: closed {len(orphans)} MLflow run(s) of trials whose worker died: "
              f"{', '.join(orphans)}", file=sys.stderr)
    spec = WorkerSpec(root, params, cfg, role, tuple(space), storage, experiment_id, parent_run_id,
                      tracking.tracking_uri(root), workers, progress=progress and workers == 1)
    counts = count_trials(study)
    print(f"reslab tune: study {cfg.study_name!r} of the {role} model in {where}: {counts.finished} of "
          f"{cfg.n_trials} trials finished, {cfg.epochs} epochs each at most; {workers} worker(s); MLflow parent "
          f"run {parent_run_id}")
    status = "FINISHED"
    try:
        if workers == 1:
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
    record = best_record(study, role)
    best_file = layout.tuning / best_params_file(role)
    if record is not None:
        write_best_params(best_file, record)
    counts = count_trials(study)
    log_study_summary(parent_run_id, step=counts.finished,
                      metrics={"n_complete": counts.complete, "n_pruned": counts.pruned, "n_failed": counts.failed,
                               "epochs_trained": epochs_trained(study)},
                      record=record, best_params_file=best_file, figures=study_figures(study), status=status)
    print(f"reslab tune: {counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed trials")
    if record is not None:
        print(f"best val_accuracy {record['val_accuracy']:.4f} at the best-val-loss epoch (trial "
              f"{record['trial_number']}): {record['optuna_params']}\nwrote {best_file}; `reslab tune --role {role} "
              f"--apply` writes it into train_{role} of params.yaml (or: {record['dvc_exp_run']})")
    print(f"inspect (after `source .venv/bin/activate`): optuna trials --study-name {cfg.study_name} --storage "
          f"{where}   |   optuna-dashboard {where} --host 127.0.0.1")
    return {"FINISHED": 0, "KILLED": 130, "FAILED": 1}[status]


def apply_best(root: Path, params_file: Path, cfg: TuneConfig, role: str, url: str | None) -> int:
    """`reslab tune --role ROLE --apply`: the role's best trial -> tuning/best_params_<role>.yaml and the role's
    section of params.yaml (nothing else in it changes).

    Args:
        root: project root.
        params_file: params.yaml (rewritten with its comments kept).
        cfg: the tune config of `tune_config` (names the role's study).
        role: the model whose study is applied.
        url: the storage, as `main`'s `storage`.
    """
    if url is None and not default_storage_path(root).is_file():
        raise ConfigError(f"{default_storage_path(root)}: no study journal; run `reslab tune --role {role}` first")
    storage = open_storage(url, root)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        raise ConfigError(f"tune.study_name: no study {cfg.study_name!r} in {storage_name(url, root)}; run "
                          f"`reslab tune --role {role}` first") from None
    tuned_role = (study.user_attrs.get(SIGNATURE_ATTR) or {}).get("role")
    if tuned_role != role:  # e.g. a study from before studies had roles, whose params reach outside train_<role>
        what = f"the {tuned_role} model" if tuned_role else "no model role (an older study)"
        raise ConfigError(f"study {cfg.study_name!r} tuned {what}, not the {role} model; run `reslab tune --role "
                          f"{role}` (with a new --study-name if needed) and apply that")
    record = best_record(study, role)
    if record is None:
        raise ConfigError(f"study {cfg.study_name!r} has no completed trial yet; run `reslab tune --role {role}`")
    best_file = Layout(root).tuning / best_params_file(role)
    write_best_params(best_file, record)
    write_params(params_file, record["params"])
    print(f"reslab tune: wrote trial {record['trial_number']} of the {role} model (val_accuracy "
          f"{record['val_accuracy']:.4f}) into train_{role} of {params_file}:")
    for key, value in record["params"].items():
        print(f"  {key}: {json.dumps(value)}")
    print(f"`dvc repro` now retrains train_{role} with them; the same as an experiment, without editing "
          f"params.yaml (after `source .venv/bin/activate`):\n  {record['dvc_exp_run']}")
    return 0
