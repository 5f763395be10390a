"""`reslab tune --role baseline|resnet`: one Optuna study per model over its own training section.

Both roles get the same budget (tune.n_trials, tune.pruner, tune.epochs) and the pipeline's objective: a trial
trains exactly as the training stage would (`config.resolve` of the trial's params: the same epoch cap, early
stopping and restored best weights) and scores the validation accuracy at the epoch the stage keeps (the lowest
val loss), not the maximum over epochs; the test split is never opened. A trial reports that same quantity so far
after every epoch, and unpromising trials are pruned. Each study lives in an Optuna storage (by default a journal
file, tuning/optuna-journal.log), so `reslab tune` run again continues it, `--workers N` processes share it, and
several machines share an RDB storage. MLflow gets one parent run per study and one child run per trial, tagged
with the role (reslab.tracking.sweep); the best trial's params go to tuning/best_params_<role>.yaml and, with
`--apply`, into train_<role> of params.yaml (reslab.config.write_params) for `dvc repro`.

Modules, from pure to I/O:
    space      `tune.search_space.<role>` (train_<role> keys; depth/stages/width for the resnet) -> dimensions ->
               a trial's params keys
    study      the trials' base params (tune.epochs), sampler, pruner, signature, trial counts
    storage    journal file or RDB, heartbeats, the retry of stale trials (_optuna_compat: the private Optuna part)
    objective  one trial's training (`train_trial`), `Objective`, one worker's trial loop (`run_worker`)
    workers    worker processes
    results    the best trial -> tuning/best_params_<role>.yaml and its `dvc exp run -S` command
    command    `main` (the `reslab tune` command) and `apply_best` (`--apply`)
"""
from .command import apply_best, main

__all__ = ["apply_best", "main"]
