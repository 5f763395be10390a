"""`reslab tune --role baseline|resnet`: config validation (per-role search spaces), the trial -> params mapping,
the objective (the pipeline's val accuracy at its best-val-loss epoch), heartbeats and Optuna's private API, closing
the MLflow runs of dead workers, and tiny real studies of both roles end to end.

The studies run on a tiny prepared data set written straight into artifacts/prepared (three colour-coded classes,
32 px) with the repository's own params.yaml shrunk by overrides, and an MLflow store in the test's tmp dir.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from ruamel.yaml import YAML

from reslab import cli, tracking
from reslab.config import ConfigError, Params, from_dict, load_params, read_params_file, set_dotted, with_overrides
from reslab.models import create_model
from reslab.tracking import sweep
from reslab.training import DivergedError, FitResult, recipe_from_params
from reslab.tuning import _optuna_compat, objective, results, space, storage, study as studies

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "tune-test"

# Shrinks the real params.yaml: 32 px, one thread, 2-epoch, 4-trial studies (over small networks for the resnet).
TINY = {
    "data.image_size": 32,
    "train.batch_size": 16,
    "train.num_threads": 1,
    "mlflow.experiment_name": EXPERIMENT,
    "tune.n_trials": 4,
    "tune.epochs": 2,
    "tune.sampler_startup_trials": 2,
    "tune.pruner_startup_trials": 1,
    "tune.pruner_warmup_epochs": 0,
    "tune.heartbeat_interval": 1,
    "tune.search_space.resnet.depth": [1, 2],
    "tune.search_space.resnet.width": [8, 16, 8],
}


def write_prepared(prepared: Path, sizes: dict[str, int], image_size: int = 32, seed: int = 0) -> None:
    """A prepared data set in the prepare stage's format: a coloured square per class on noise."""
    prepared.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], np.float64)
    lo, hi = image_size // 4, 3 * image_size // 4
    for name, n in sizes.items():
        labels = np.arange(n) % len(colours)
        images = rng.normal(120, 50, (n, image_size, image_size, 3))
        images[:, lo:hi, lo:hi] = 0.6 * colours[labels][:, None, None] + 0.4 * images[:, lo:hi, lo:hi]
        np.save(prepared / f"{name}_images.npy", np.clip(images, 0, 255).astype(np.uint8))
        np.save(prepared / f"{name}_labels.npy", labels.astype(np.int64))
    (prepared / "classes.json").write_text(json.dumps(["red", "green", "blue"]))


def write_params(path: Path, overrides: dict) -> None:
    """The repository's params.yaml with dotted-key overrides, comments kept (round trip)."""
    rt = YAML()
    doc = rt.load((REPO / "params.yaml").read_text())
    for key, value in overrides.items():
        node = doc
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    with path.open("w") as f:
        rt.dump(doc, f)


def make_project(root: Path, data: bool = True, **overrides) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_params(root / "params.yaml", {**TINY, **overrides})
    if data:
        write_prepared(root / "artifacts" / "prepared", {"train": 60, "val": 30, "test": 30})
    return root


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return make_project(tmp_path / "proj")


def tune(root: Path, *argv: str) -> int:
    """`reslab tune` in this process."""
    return cli.main(["tune", "--root", str(root), "--no-progress", *argv])


def load_study(root: Path, name: str = "reslab-resnet") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.open_storage(None, root))


def runs_by_trial(root: Path) -> tuple[list, dict[int, list]]:
    """(parent runs, {trial number: child runs}) of the test experiment in this test's store (explicitly: an earlier
    in-process `reslab tune` left MLflow's process-wide tracking URI pointing at its own store)."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children: dict[int, list] = {}
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            children.setdefault(int(r.data.tags["trial_number"]), []).append(r)
    return parents, children


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
    assert obj.recipe(overrides) == recipe_from_params(trial_params, "resnet")
    assert (obj.recipe(overrides).epochs, obj.recipe(overrides).patience) == \
        (params.train.epochs, params.train.patience)
    create_model(obj.recipe(overrides).model, num_classes=3, image_size=32, **obj.recipe(overrides).model_args)


def test_a_smaller_tune_epochs_caps_the_pipelines_budget():
    params = repo_params(**{"tune.epochs": 4, "train.epochs": 15, "train.min_epochs": 10, "train.patience": 3})
    cfg, dims = space.tune_config(params, "baseline")
    base = studies.trial_base_params(params, cfg)
    assert (base.train.epochs, base.train.min_epochs, base.train.patience) == (4, 4, 3)
    assert dataclasses.replace(base, train=params.train) == params  # nothing else changes
    obj = objective.Objective(params, cfg, "baseline", dims, None, None, precision=None)
    assert obj.recipe({}).epochs == 4


def test_a_roles_augment_magnitude_reaches_its_recipe_only():
    params = with_overrides(repo_params(), {"train_baseline.augment_magnitude": 0.25})
    assert recipe_from_params(params, "baseline").augment.magnitude == 0.25
    assert recipe_from_params(params, "resnet").augment == params.augment


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


def test_dead_workers_leave_no_running_mlflow_runs(project, monkeypatch):
    """Issue 11 point 6: a worker killed after creating its trial's MLflow run leaves the run RUNNING; the stale
    check closes it even when the kill came before the run id was recorded in the trial, and the next
    `reslab tune` closes the runs of trials that were failed without closing theirs."""
    params = load_params(project / "params.yaml")
    cfg = dataclasses.replace(space.tune_config(params, "resnet")[0], heartbeat_interval=1, grace_period=1)
    experiment_id = tracking.setup(project, EXPERIMENT)
    journal = storage.open_storage(None, project, cfg)
    study = studies.open_study(journal, params, cfg, "resnet")
    parent = sweep.ensure_parent_run(study, project, experiment_id, cfg, "resnet", "journal")
    tracker = sweep.MlflowTrialTracker(project, experiment_id, parent, cfg.study_name, "resnet")
    journal.heartbeat_stale_trial_callback = storage.StaleTrialRetry(
        cfg.max_retry, on_stale=lambda t: tracker.fail_stale(t.number, t.user_attrs.get(objective.RUN_ID_ATTR)))
    monkeypatch.setattr(sweep.mlflow, "start_run", lambda **kwargs: None)  # runs are created, never activated here

    killed = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    tracker.start_trial(killed.number, killed.params, {})  # killed now: no run id in the trial, no heartbeat
    time.sleep(2.2)  # > grace_period
    alive = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    alive_run = tracker.start_trial(alive.number, alive.params, {})
    failed_elsewhere = study.ask({"depth": optuna.distributions.IntDistribution(1, 3)})
    tracker.start_trial(failed_elsewhere.number, failed_elsewhere.params, {})
    study.tell(failed_elsewhere, state=TrialState.FAIL)

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    assert study.trials[killed.number].state == TrialState.FAIL
    _, children = runs_by_trial(project)
    (run,) = children[killed.number]
    assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL" and "heartbeats" in run.data.tags["failure"]
    assert children[failed_elsewhere.number][0].info.status == "RUNNING"  # not stale: its trial is not RUNNING

    assert len(tracker.close_orphans(study)) == 1
    _, children = runs_by_trial(project)
    assert children[failed_elsewhere.number][0].info.status == "FAILED"
    (run,) = children[alive.number]
    assert run.info.run_id == alive_run and run.info.status == "RUNNING"  # a live trial's run is left alone


# ----------------------------------------------------------------------------- studies end to end


def test_missing_prepared_data_says_to_run_prepare(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    root = make_project(tmp_path / "proj", data=False)
    assert tune(root) == 2
    assert "dvc repro prepare" in capsys.readouterr().err


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report, so the PRUNED path is exercised deterministically."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


@pytest.fixture
def prepared_opens():
    """Names of the files under artifacts/prepared that this process opens while the fixture is active."""
    opened: list[str] = []
    active = [True]

    def hook(event, args):
        if active[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = Path(os.fsdecode(args[0]))
            if path.parent.name == "prepared":
                opened.append(path.name)

    sys.addaudithook(hook)  # hooks cannot be removed: deactivate instead
    yield opened
    active[0] = False


def test_tiny_study(project, monkeypatch, prepared_opens):
    monkeypatch.setattr(studies, "make_pruner", lambda cfg: PruneTrialOne())
    assert tune(project) == 0
    # The hook sees the splits tuning reads (so it sees opens at all), and never the test split.
    assert {"train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"} <= set(prepared_opens)
    assert [name for name in prepared_opens if name.startswith("test_")] == [], "tuning opened the test split"

    study = load_study(project)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 4 and states[1] == TrialState.PRUNED
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    assert len(study.trials[1].intermediate_values) == 1  # stopped after its first epoch
    assert all(len(t.intermediate_values) == 2 for t in study.trials if t.state == TrialState.COMPLETE)

    parents, children = runs_by_trial(project)
    assert len(parents) == 1
    parent = parents[0]
    assert study.user_attrs[sweep.PARENT_RUN_ATTR] == parent.info.run_id
    assert sorted(children) == [0, 1, 2, 3] and all(len(runs) == 1 for runs in children.values())
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for number, (run,) in children.items():
        trial = study.trials[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["state"] == trial.state.name and run.data.tags["study_name"] == "reslab-resnet"
        assert run.data.tags["role"] == "resnet"
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        assert run.data.params["train_resnet.lr"] == str(trial.params["train_resnet.lr"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == sorted(trial.intermediate_values)  # per-epoch curve, step = epoch
    assert parent.info.status == "FINISHED" and parent.data.tags["role"] == "resnet"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/optimization_history.png", "figures/intermediate_values.png"} <= figures

    best = yaml.safe_load((project / "tuning" / "best_params_resnet.yaml").read_text())
    assert best["trial_number"] == study.best_trial.number and best["val_accuracy"] == study.best_value
    assert best["params"] == study.best_trial.user_attrs["overrides"]

    # Run again: the study is complete, nothing more is trained.
    assert tune(project) == 0
    assert len(load_study(project).trials) == 4 and len(runs_by_trial(project)[0]) == 1

    # --apply: the best trial into train_resnet of params.yaml, comments kept, and the file still valid.
    before = load_params(project / "params.yaml")
    assert tune(project, "--apply") == 0
    params = load_params(project / "params.yaml")
    overrides = study.best_trial.user_attrs["overrides"]
    assert params.train_resnet.model_args == {"depths": overrides["train_resnet.model_args.depths"],
                                              "widths": overrides["train_resnet.model_args.widths"]}
    assert params.train_resnet.lr == overrides["train_resnet.lr"]
    assert params.train_resnet.augment_magnitude == overrides["train_resnet.augment_magnitude"]
    assert dataclasses.replace(params, train_resnet=before.train_resnet) == before  # nothing else changed
    text = (project / "params.yaml").read_text()
    assert "`reslab tune --apply` writes here" in text and "# the study's plain CNN" in text
    assert "lr: null" in text  # train_baseline.lr untouched, still explicit


def test_baseline_study_tunes_and_applies_only_train_baseline(project, capsys):
    assert tune(project, "--role", "baseline", "--n-trials", "2") == 0
    journal = storage.open_storage(None, project)
    assert optuna.get_all_study_names(journal) == ["reslab-baseline"]  # the resnet's study is another one
    study = load_study(project, "reslab-baseline")
    assert len(study.trials) == 2 and {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert study.user_attrs[studies.SIGNATURE_ATTR]["role"] == "baseline"
    for trial in study.trials:
        assert set(trial.params) == {"train_baseline.augment_magnitude", "train_baseline.lr"}
        assert set(trial.user_attrs["overrides"]) == set(trial.params)

    # The value is the val accuracy of the epoch the training stage keeps (its lowest val loss), read back from
    # the trial's logged history: not the maximum over epochs.
    parents, children = runs_by_trial(project)
    assert [p.data.tags["role"] for p in parents] == ["baseline"]
    assert parents[0].info.run_name == "reslab-baseline"
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for trial in study.trials:
        (run,) = children[trial.number]
        assert run.data.tags["role"] == "baseline"
        history = {m: {h.step: h.value for h in client.get_metric_history(run.info.run_id, m)}
                   for m in ("val_loss", "val_accuracy")}
        kept = min(sorted(history["val_loss"]), key=history["val_loss"].get)
        assert run.data.metrics["best_epoch"] == kept
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(history["val_accuracy"][kept])

    before = load_params(project / "params.yaml")
    assert tune(project, "--role", "baseline", "--apply") == 0
    assert "dvc exp run -S '++train_baseline." in capsys.readouterr().out
    params = load_params(project / "params.yaml")
    best = study.best_trial.params
    assert (params.train_baseline.lr, params.train_baseline.augment_magnitude) == \
        (best["train_baseline.lr"], best["train_baseline.augment_magnitude"])
    assert dataclasses.replace(params, train_baseline=before.train_baseline) == before  # only train_baseline
    assert yaml.safe_load((project / "tuning" / "best_params_baseline.yaml").read_text())["role"] == "baseline"
    # The resnet has no study yet: its --apply is independent and says so.
    assert tune(project, "--role", "resnet", "--apply") == 2
    assert "no study 'reslab-resnet'" in capsys.readouterr().err


def test_apply_refuses_a_study_without_the_role(project, capsys):
    """A study from before per-role tuning (its best params reach outside train_resnet) is not applied."""
    study = optuna.create_study(storage=storage.open_storage(None, project), study_name="reslab-resnet",
                                direction="maximize")
    study.add_trial(optuna.create_trial(value=0.9, params={"augment.magnitude": 0.5},
                                        distributions={"augment.magnitude": optuna.distributions.FloatDistribution(
                                            0.0, 1.5)},
                                        user_attrs={"overrides": {"augment.magnitude": 0.5}}))
    before = (project / "params.yaml").read_text()
    assert tune(project, "--apply") == 2
    assert "tuned no model role (an older study), not the resnet model" in capsys.readouterr().err
    assert (project / "params.yaml").read_text() == before


def failing_on_call(n: int, exc: BaseException):
    """train_trial that raises `exc` on its n-th call (1-based) and trains normally otherwise."""
    real = objective.train_trial
    calls = [0]

    def train_trial(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return real(*args, **kwargs)

    return train_trial


def test_diverged_trial_fails_alone(project, monkeypatch):
    monkeypatch.setattr(objective, "train_trial", failing_on_call(2, DivergedError("loss became nan at batch 0")))
    assert tune(project, "--n-trials", "3") == 0
    study = load_study(project)
    assert [t.state for t in study.trials][1] == TrialState.FAIL
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 3
    _, children = runs_by_trial(project)
    (failed,) = children[1]
    assert failed.info.status == "FAILED" and failed.data.tags["state"] == "FAIL"
    assert "DivergedError" in failed.data.tags["failure"]


def test_a_sweep_where_every_trial_fails_stops(project, monkeypatch, capsys):
    def diverging(*args, **kwargs):
        raise DivergedError("loss became nan at batch 0")

    monkeypatch.setattr(objective, "train_trial", diverging)
    assert tune(project) == 1
    assert "trials of this worker failed" in capsys.readouterr().err
    states = [t.state for t in load_study(project).trials]
    assert states == [TrialState.FAIL] * objective.MAX_FAILURES_IN_A_ROW


def test_interrupted_study_resumes_to_n_trials(project, monkeypatch, capsys):
    real = objective.train_trial
    monkeypatch.setattr(objective, "train_trial", failing_on_call(2, KeyboardInterrupt()))
    assert tune(project) == 130
    assert "Run the same `reslab tune` to continue" in capsys.readouterr().err
    study = load_study(project)
    assert [t.state for t in study.trials] == [study.trials[0].state, TrialState.FAIL, TrialState.WAITING]
    interrupted = study.trials[1]
    parents, children = runs_by_trial(project)
    assert parents[0].info.status == "KILLED"
    assert children[1][0].info.status == "KILLED" and children[1][0].data.tags["interrupted"] == "true"

    monkeypatch.setattr(objective, "train_trial", real)
    assert tune(project) == 0
    study = load_study(project)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4 and len(study.trials) == 5
    assert study.trials[2].params == interrupted.params  # the interrupted configuration ran first
    parents, children = runs_by_trial(project)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == list(range(5)) and all(len(r) == 1 for r in children.values())


# ----------------------------------------------------------------------------- several processes


def run_reslab(root: Path, *argv: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reslab.cli", "tune", "--no-progress", *argv], cwd=root,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, monkeypatch):
    # Heartbeats every 5 s: a busy CI machine must not make a live worker's trial look dead.
    root = make_project(tmp_path / "proj", **{"tune.n_trials": 6, "tune.heartbeat_interval": 5})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    proc = run_reslab(root, "--workers", "2", env={})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    study = load_study(root)
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # no trial lost
    assert [t.state.name for t in study.trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)] == [], out
    assert 6 <= len(numbers) <= 7, out  # two workers asking at the same instant may add one
    parents, children = runs_by_trial(root)
    assert len(parents) == 1
    runs_per_trial = {n: len(children.get(n, [])) for n in sorted(set(children) | set(numbers))}
    assert runs_per_trial == {n: 1 for n in numbers}, out  # none run twice, none without its run
    assert all(storage.HEARTBEAT_ATTR in t.system_attrs for t in study.trials)  # every trial beat while it ran
    assert len({t.user_attrs["mlflow_run_id"] for t in study.trials}) == len(numbers)


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_retried(tmp_path, monkeypatch):
    # Long trials (30 epochs) so the worker is surely mid-trial when it is killed.
    root = make_project(tmp_path / "proj", **{"tune.n_trials": 1, "tune.epochs": 30})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    proc = run_reslab(root, env={}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            assert time.time() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() else "timeout"
            try:
                trials = load_study(root).trials
            except KeyError:  # not created yet
                trials = []
            if trials and trials[0].state == TrialState.RUNNING and "mlflow_run_id" in trials[0].user_attrs \
                    and trials[0].intermediate_values:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert load_study(root).trials[0].state == TrialState.RUNNING  # what a dead worker leaves behind
    time.sleep(2.5)  # > grace_period (2 x heartbeat_interval = 2 s)

    assert tune(root) == 0
    study = load_study(root)
    dead, retry = study.trials
    assert dead.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.system_attrs["failed_trial"] == 0
    _, children = runs_by_trial(root)
    assert children[0][0].info.status == "FAILED" and children[0][0].data.tags["state"] == "FAIL"
    assert children[1][0].data.tags["retry_of_trial"] == "0"
    assert [r.info.status for runs in children.values() for r in runs if r.info.status == "RUNNING"] == []
