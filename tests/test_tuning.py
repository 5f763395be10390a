"""`reslab tune --role baseline|resnet` without training: config validation (per-role search spaces), the trial ->
params mapping, the objective (the pipeline's val accuracy at its best-val-loss epoch), heartbeats and Optuna's
private API, and closing the MLflow runs of dead workers. The tiny real studies are in test_tuning_studies.py.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
from optuna.trial import TrialState

from conftest import REPO
from reslab import tracking
from reslab.config import (ConfigError, Params, from_dict, load_params, read_params_file, resolve, set_dotted,
                           with_overrides)
from reslab.models import create_model
from reslab.tracking import sweep
from reslab.training import FitResult
from reslab.tuning import _optuna_compat, objective, results, space, storage, study as studies
from tuning_project import EXPERIMENT, runs_by_trial


def repo_params(search_space: dict | None = None, role: str = "resnet", **overrides) -> Params:
    """The repository's params with dotted-key overrides; `search_space` entries replace or add
    tune.search_space.<role> keys (themselves dotted, so not reachable as overrides)."""
    raw = read_params_file(REPO / "params.yaml")
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    if search_space:
        raw["tune"]["search_space"].setdefault(role, {}).update(search_space)
    return from_dict(Params, raw)


# ----------------------------------------------------------------------------- config and pure functions


def test_repo_tune_section_is_valid():
    params = load_params(REPO / "params.yaml")
    dims = {role: space.tune_config(params, role)[1] for role in ("baseline", "resnet")}
    assert [d.name for d in dims["resnet"]] == ["depth", "stages", "width", "train_resnet.augment_magnitude",
                                                "train_resnet.lr"]
    assert [d.name for d in dims["baseline"]] == ["train_baseline.augment_magnitude", "train_baseline.lr"]
    for role, role_dims in dims.items():
        assert not any(d.fixed for d in role_dims)
        assert [d.name for d in role_dims if d.log] == [f"train_{role}.lr"]
        space.check_models(params, role, role_dims)
    # Both models get the same budget and the pipeline's epochs by default.
    baseline_cfg, resnet_cfg = (space.tune_config(params, role)[0] for role in ("baseline", "resnet"))
    assert params.tune.epochs is None and baseline_cfg.epochs == resnet_cfg.epochs == params.train.epochs
    assert dataclasses.replace(baseline_cfg, study_name="") == dataclasses.replace(resnet_cfg, study_name="")


def test_one_study_per_role():
    params = repo_params()
    assert [space.tune_config(params, role)[0].study_name for role in ("baseline", "resnet")] == \
        ["reslab-baseline", "reslab-resnet"]
    assert space.tune_config(params, "baseline", study_name="mine-{role}")[0].study_name == "mine-baseline"
    assert space.tune_config(params, "baseline", study_name="mine")[0].study_name == "mine"
    cfg, _ = space.tune_config(params, "resnet")
    signatures = [studies.study_signature(params, cfg, role) for role in ("baseline", "resnet")]
    assert [s["role"] for s in signatures] == ["baseline", "resnet"] and signatures[0] != signatures[1]
    assert signatures[0]["objective"] == "val_accuracy at the best-val-loss epoch"


@pytest.mark.parametrize("overrides, search_space, key", [
    ({"tune.n_trail": 3}, {}, "tune.n_trail"),
    ({"tune.pruner": "asha"}, {}, "tune.pruner"),
    ({"tune.epochs": 0}, {}, "tune.epochs"),
    ({"tune.study_name": "reslab-{model}"}, {}, "tune.study_name"),
    ({"tune.grace_period": 10, "tune.heartbeat_interval": 60}, {}, "tune.grace_period"),
    ({"tune.search_space.cnn": {"train_baseline.lr": [0.001, 0.01]}}, {}, "tune.search_space.cnn"),
    ({"tune.search_space.resnet": [1, 2]}, {}, "tune.search_space.resnet"),
    ({"train_resnet.augment_magnitude": 4.0}, {}, "train_resnet.augment_magnitude"),
    ({}, {"dpeth": [1, 2]}, "tune.search_space.resnet.dpeth"),
    ({}, {"lr": [0.001, 0.01]}, "tune.search_space.resnet.lr"),  # the old, undotted name
    ({}, {"train_resnet.lr": [0.01, 0.001]}, "tune.search_space.resnet.train_resnet.lr"),
    ({}, {"train_resnet.lr": [0.0, 0.1]}, "tune.search_space.resnet.train_resnet.lr"),  # config: lr > 0
    ({}, {"width": [16, 40, 16]}, "tune.search_space.resnet.width"),
    ({}, {"depth": [1.5, 3]}, "tune.search_space.resnet.depth"),
    ({}, {"train_resnet.augment_magnitude": [0.0, 5.0]}, "tune.search_space.resnet.train_resnet.augment_magnitude"),
    ({}, {"train_resnet.augment": "yes"}, "tune.search_space.resnet.train_resnet.augment"),
    ({}, {"train_resnet.model": ["resnet", "resnet_deep"]}, "tune.search_space.resnet.train_resnet.model"),
    ({}, {"train_resnet.model_args": [1, 2]}, "tune.search_space.resnet.train_resnet.model_args"),  # a mapping
    ({}, {"train_resnet.model_args.depths": [1, 2]}, "tune.search_space.resnet.train_resnet.model_args.depths"),
    ({}, {"train_resnet.model_args.dropout": [0.5, 0.1]}, "tune.search_space.resnet.train_resnet.model_args.drop"),
    ({}, {"augment.magnitude": [0.0, 1.0]}, "tune.search_space.resnet.augment.magnitude"),  # shared by both
    ({}, {"train.batch_size": [16, 64]}, "tune.search_space.resnet.train.batch_size"),  # the shared budget
    ({}, {"data.image_size": [32, 64]}, "tune.search_space.resnet.data.image_size"),  # not a training section
    ({}, {"train_baseline.lr": [0.001, 0.01]}, "tune.search_space.resnet.train_baseline.lr"),  # the other role
    ({"tune.search_space.resnet": {"depth": [1, 2], "width": [16, 32], "train_resnet.lr": [0.001, 0.01]}}, {},
     "tune.search_space.resnet.stages"),
    ({"tune.search_space.resnet": {}}, {}, "tune.search_space.resnet"),
    ({"train_resnet.augment": False}, {}, "tune.search_space.resnet.train_resnet.augment_magnitude"),
])
def test_tune_config_errors_name_the_key(overrides, search_space, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("{", r"\{")):
        space.tune_config(repo_params(search_space, **overrides), "resnet")


@pytest.mark.parametrize("role, key, says", [
    ("resnet", "train_baseline.lr", r"belongs to the baseline model: tune it with `reslab tune --role baseline`"),
    ("baseline", "train_resnet.augment_magnitude", r"belongs to the resnet model: tune it with `reslab tune --role "
                                                   r"resnet`"),
    ("baseline", "augment.magnitude", r"read by both models: tune train_baseline\.augment_magnitude"),
    ("baseline", "train.lr", r"the budget both models share"),
])
def test_a_key_of_another_section_is_rejected(role, key, says):
    with pytest.raises(ConfigError, match=rf"tune\.search_space\.{role}\.{key.replace('.', r'[.]')}: .*{says}"):
        space.tune_config(repo_params({key: [0.001, 0.01]}, role=role), role)


def test_architecture_dimensions_are_for_the_resnet_only():
    params = repo_params({"depth": [1, 2], "stages": 2, "width": 16}, role="baseline")
    with pytest.raises(ConfigError, match=r"tune\.search_space\.baseline\.depth: .*resnet model only"):
        space.tune_config(params, "baseline")


def test_out_of_range_bounds_give_configs_message():
    with pytest.raises(ConfigError, match=r"augment_magnitude: 5\.0 is out of range; accepted: null \(use augment"
                                          r"\.magnitude\) or a number from 0 \(off\) to 3"):
        space.tune_config(repo_params({"train_resnet.augment_magnitude": [0.0, 5.0]}), "resnet")


def test_command_line_overrides_tune_config():
    cfg, _ = space.tune_config(repo_params(), "resnet", n_trials=7, study_name="other")
    assert (cfg.n_trials, cfg.study_name) == (7, "other")
    with pytest.raises(ConfigError, match=r"tune\.n_trials: 0 is out of range"):
        space.tune_config(repo_params(), "resnet", n_trials=0)
    with pytest.raises(ConfigError, match=r"unknown model role 'cnn'"):
        space.tune_config(repo_params(), "cnn")


def test_trial_params_become_the_stage_params():
    params = repo_params({"train_resnet.augment": [True, False], "stages": 3}, **{"data.image_size": 32})
    cfg, dims = space.tune_config(params, "resnet")
    # Sampling order is params.yaml's order, not the order the keys are written in.
    assert [d.name for d in dims] == ["depth", "stages", "width", "train_resnet.augment",
                                      "train_resnet.augment_magnitude", "train_resnet.lr"]
    trial = optuna.trial.FixedTrial({"depth": 2, "width": 16, "train_resnet.augment_magnitude": 0.5,
                                     "train_resnet.lr": 1e-3, "train_resnet.augment": True})  # stages is fixed
    sampled = space.suggest(trial, dims)
    overrides = space.trial_overrides(sampled, "resnet")
    assert overrides == {"train_resnet.model_args.depths": [2, 2, 2], "train_resnet.model_args.widths": [16, 32, 64],
                         "train_resnet.augment": True, "train_resnet.augment_magnitude": 0.5, "train_resnet.lr": 1e-3}
    trial_params = with_overrides(params, overrides)
    assert trial_params.train_resnet == dataclasses.replace(
        params.train_resnet, model_args={"depths": [2, 2, 2], "widths": [16, 32, 64]}, augment_magnitude=0.5,
        lr=1e-3)
    # Only the tuned role's section changes: the other model, the shared augment and budget do not.
    assert (trial_params.train_baseline, trial_params.augment, trial_params.train, trial_params.seed) == \
        (params.train_baseline, params.augment, params.train, params.seed)
    # The trial trains with the training stage's recipe of those params (tune.epochs null: the pipeline's cap and
    # early stopping).
    obj = objective.Objective(params, cfg, "resnet", dims, None, None, precision=None)
    assert obj.config(overrides) == resolve(trial_params, "resnet")
    assert (obj.config(overrides).epochs, obj.config(overrides).patience) == \
        (params.train.epochs, params.train.patience)
    create_model(obj.config(overrides).model, num_classes=3, image_size=32, **obj.config(overrides).model_args)


def test_a_smaller_tune_epochs_caps_the_pipelines_budget():
    params = repo_params(**{"tune.epochs": 4, "train.epochs": 15, "train.min_epochs": 10, "train.patience": 3})
    cfg, dims = space.tune_config(params, "baseline")
    base = studies.trial_base_params(params, cfg)
    assert (base.train.epochs, base.train.min_epochs, base.train.patience) == (4, 4, 3)
    assert dataclasses.replace(base, train=params.train) == params  # nothing else changes
    obj = objective.Objective(params, cfg, "baseline", dims, None, None, precision=None)
    assert obj.config({}).epochs == 4


def test_a_roles_augment_magnitude_reaches_its_recipe_only():
    params = with_overrides(repo_params(), {"train_baseline.augment_magnitude": 0.25})
    assert resolve(params, "baseline").augment.magnitude == 0.25
    assert resolve(params, "resnet").augment == params.augment


def test_model_args_keys_are_searched_and_checked_by_building_the_model():
    params = repo_params({"train_baseline.model_args.dropout": [0.0, 0.5], "train_baseline.model_args.hidden":
                          [32, 128, 32]}, role="baseline", **{"data.image_size": 32})
    cfg, dims = space.tune_config(params, "baseline")
    kinds = {d.name: (d.kind, d.low, d.high) for d in dims}
    assert kinds["train_baseline.model_args.dropout"] == ("float", 0.0, 0.5)
    assert kinds["train_baseline.model_args.hidden"] == ("int", 32, 128)
    space.check_models(params, "baseline", dims)
    overrides = space.trial_overrides({"train_baseline.model_args.dropout": 0.2}, "baseline")
    assert with_overrides(params, overrides).train_baseline.model_args == {"dropout": 0.2}
    bad = repo_params({"train_baseline.model_args.depth": [1, 2]}, role="baseline")
    _, bad_dims = space.tune_config(bad, "baseline")
    with pytest.raises(ConfigError, match=r"tune\.search_space\.baseline\.train_baseline\.model_args\.depth: "
                                          r"train_baseline\.model 'baseline' cannot be built"):
        space.check_models(bad, "baseline", bad_dims)


def test_a_trial_outside_params_yaml_ranges_fails_like_params_yaml():
    # A value no search space can give, checked the same way: the overridden Params are validated as params.yaml.
    with pytest.raises(ConfigError, match=r"train_baseline\.augment_magnitude: 4\.0 is out of range"):
        with_overrides(repo_params(), {"train_baseline.augment_magnitude": 4.0})


def test_too_many_stages_for_the_image_size_fail_before_tuning():
    params = repo_params({"stages": [2, 4]}, **{"data.image_size": 16})
    _, dims = space.tune_config(params, "resnet")
    with pytest.raises(ConfigError, match=r"tune\.search_space\.resnet\.stages"):
        space.check_models(params, "resnet", dims)


class ScriptedTraining:
    """train_trial that replays a fixed history through `should_stop` (as `fit` does) and returns `fit`'s result."""

    def __init__(self, rows: list[tuple[float, float]], best_epoch: int):
        self.history = [{"epoch": i, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": loss, "val_accuracy": acc,
                         "epoch_time_s": 0.1} for i, (loss, acc) in enumerate(rows, 1)]
        self.best_epoch = best_epoch

    def __call__(self, recipe, train, val, *, precision, should_stop=None, on_epoch_end=None, progress=False):
        done = []
        for row in self.history:
            done.append(row)
            if should_stop(row["epoch"], row):
                break
        return FitResult(done, self.best_epoch, min(r["val_loss"] for r in done), False, 0)


def test_the_objective_is_the_val_accuracy_at_the_best_val_loss_epoch(monkeypatch):
    # Val loss is lowest at epoch 2, while val accuracy keeps rising: the pipeline keeps epoch 2's weights.
    rows = [(0.9, 0.60), (0.5, 0.80), (0.7, 0.85), (0.8, 0.95)]
    monkeypatch.setattr(objective, "train_trial", ScriptedTraining(rows, best_epoch=2))
    params = repo_params(**{"data.image_size": 32})
    cfg, dims = space.tune_config(params, "baseline")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective.Objective(params, cfg, "baseline", dims, None, None, precision=None), n_trials=1)
    trial = study.trials[0]
    assert trial.value == 0.80 != max(acc for _, acc in rows)
    # Every epoch reports the same quantity so far: the val accuracy of the lowest val loss up to then.
    assert trial.intermediate_values == {1: 0.60, 2: 0.80, 3: 0.80, 4: 0.80}


@pytest.mark.parametrize("name, cls", [("median", optuna.pruners.MedianPruner),
                                       ("percentile", optuna.pruners.PercentilePruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("none", optuna.pruners.NopPruner)])
def test_pruner_is_chosen_in_params(name, cls):
    cfg, _ = space.tune_config(repo_params(**{"tune.pruner": name}), "resnet")
    assert isinstance(studies.make_pruner(cfg), cls)


def test_median_pruner_stops_a_trial_below_the_median():
    cfg, _ = space.tune_config(repo_params(**{"tune.pruner_startup_trials": 2, "tune.pruner_warmup_epochs": 1}),
                               "resnet")
    study = optuna.create_study(direction="maximize", pruner=studies.make_pruner(cfg))
    for value in (0.8, 0.9):
        study.add_trial(optuna.create_trial(value=value, intermediate_values={1: value, 2: value}))
    trial = study.ask()
    trial.report(0.3, 1)
    assert not trial.should_prune()  # warm-up epoch
    trial.report(0.3, 2)
    assert trial.should_prune()


def test_dvc_exp_run_command_adds_missing_keys():
    cmd = results.dvc_exp_run_command({"train_resnet.model_args.depths": [2, 2], "train_resnet.lr": 0.001})
    assert cmd == "dvc exp run -S '++train_resnet.model_args.depths=[2, 2]' -S '++train_resnet.lr=0.001'"


# ---------------------------------------------------------------- storage, heartbeats, Optuna's private API


def test_optuna_private_api_is_as_expected():
    """Fails, saying what changed, on an Optuna whose private heartbeat API differs from what
    reslab/tuning/_optuna_compat.py was written for; then fix that module and pyproject's optuna range."""
    _optuna_compat.check()
    probe = _optuna_compat.HeartbeatJournalStorage(
        optuna.storages.journal.JournalFileBackend(os.devnull), heartbeat_interval=1)
    assert optuna.storages._heartbeat.is_heartbeat_enabled(probe)


def test_an_incompatible_optuna_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(_optuna_compat, "EXPECTED_ABSTRACT", _optuna_compat.EXPECTED_ABSTRACT | {"renamed"})
    with pytest.raises(_optuna_compat.OptunaIncompatible, match=r"abstract methods .*optuna>=4\.9,<6"):
        storage.open_storage(None, tmp_path, repo_params().tune)


def test_journal_heartbeat_fails_and_requeues_a_silent_trial(tmp_path):
    retry = storage.StaleTrialRetry(max_retry=1)
    journal = storage.HeartbeatJournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")),
                                              heartbeat_interval=1, grace_period=1,
                                              heartbeat_stale_trial_callback=retry)
    study = optuna.create_study(storage=journal, study_name="s", direction="maximize")
    alive, dead = study.ask(), study.ask()
    for t in (alive, dead):
        t.suggest_int("depth", 1, 3)
    deadline = time.time() + 2.5
    while time.time() < deadline:  # only `alive` keeps beating
        journal.record_heartbeat(alive._trial_id)
        time.sleep(0.3)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == dead.number
    # The retry inherits the dead trial's old heartbeat; once it runs, its fresh start counts, so it is not stale.
    popped = study.ask()
    assert popped.number == 2 and popped._trial_id not in journal._get_stale_trial_ids(study._study_id)


def in_another_worker(start_trial, trial) -> str:
    """`start_trial` for `trial` in a thread standing for another worker: the real run is created and activated
    there and stays RUNNING in the store, as a worker's run does until the worker ends it or dies (MLflow's active
    run is per thread, so this thread's own stays free); returns the run id."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(start_trial, trial.number, trial.params, {}).result()


def test_dead_workers_leave_no_running_mlflow_runs(study_project):
    """Issue 11 point 6: a worker killed after creating its trial's MLflow run leaves the run RUNNING; the stale
    check closes it even when the kill came before the run id was recorded in the trial, and the next
    `reslab tune` closes the runs of trials that were failed without closing theirs."""
    params = load_params(study_project / "params.yaml")
    cfg = dataclasses.replace(space.tune_config(params, "resnet")[0], heartbeat_interval=1, grace_period=1)
    experiment_id = tracking.setup(study_project, EXPERIMENT)
    journal = storage.open_storage(None, study_project, cfg)
    study = studies.open_study(journal, params, cfg, "resnet")
    parent = sweep.ensure_parent_run(study, study_project, experiment_id, cfg, "resnet", "journal")
    tracker = sweep.MlflowTrialTracker(study_project, experiment_id, parent, cfg.study_name, "resnet")
    journal.heartbeat_stale_trial_callback = storage.StaleTrialRetry(
        cfg.max_retry, on_stale=lambda t: tracker.fail_stale(t.number, t.user_attrs.get(objective.RUN_ID_ATTR)))

    killed = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    in_another_worker(tracker.start_trial, killed)  # killed now: no run id in the trial, no heartbeat
    time.sleep(2.2)  # > grace_period
    alive = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    alive_run = in_another_worker(tracker.start_trial, alive)  # asked after the sleep: not stale
    failed_elsewhere = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    in_another_worker(tracker.start_trial, failed_elsewhere)
    study.tell(failed_elsewhere, state=TrialState.FAIL)

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    assert study.trials[killed.number].state == TrialState.FAIL
    _, children = runs_by_trial(study_project)
    (run,) = children[killed.number]
    assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL" and "heartbeats" in run.data.tags["failure"]
    assert children[failed_elsewhere.number][0].info.status == "RUNNING"  # not stale: its trial is not RUNNING

    assert len(tracker.close_orphans(study)) == 1
    _, children = runs_by_trial(study_project)
    assert children[failed_elsewhere.number][0].info.status == "FAILED"
    (run,) = children[alive.number]
    assert run.info.run_id == alive_run and run.info.status == "RUNNING"  # a live trial's run is left alone
