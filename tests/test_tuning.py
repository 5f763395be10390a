"""`reslab tune`: config validation, the trial -> params mapping, heartbeats, and tiny real studies end to end.

The studies run on a tiny prepared data set written straight into artifacts/prepared (three colour-coded classes,
32 px) with the repository's own params.yaml shrunk by overrides, and an MLflow store in the test's tmp dir.
"""
from __future__ import annotations

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

from reslab import cli, tuning
from reslab.config import ConfigError, Params, from_dict, load_params, read_params_file, set_dotted
from reslab.data.prepared import load_prepared
from reslab.models import create_model
from reslab.training import DivergedError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "tune-test"

# Shrinks the real params.yaml: 32 px, one thread, a 2-epoch, 4-trial study over small networks.
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
    "tune.search_space.depth": [1, 2],
    "tune.search_space.width": [8, 16, 8],
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
    return optuna.load_study(study_name=name, storage=tuning.open_storage(None, root))


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


def repo_params(**overrides) -> Params:
    raw = read_params_file(REPO / "params.yaml")
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return from_dict(Params, raw)


# ----------------------------------------------------------------------------- config and pure functions


def test_repo_tune_section_is_valid():
    cfg, space = tuning.tune_config(load_params(REPO / "params.yaml"))
    assert [d.name for d in space] == ["depth", "stages", "width", "magnitude", "lr"]
    assert cfg.pruner == "median" and not any(d.fixed for d in space)
    assert next(d for d in space if d.name == "lr").log


@pytest.mark.parametrize("overrides, key", [
    ({"tune.n_trail": 3}, "tune.n_trail"),
    ({"tune.search_space.dpeth": [1, 2]}, "tune.search_space.dpeth"),
    ({"tune.pruner": "asha"}, "tune.pruner"),
    ({"tune.epochs": 0}, "tune.epochs"),
    ({"tune.search_space.lr": [0.01, 0.001]}, "tune.search_space.lr"),
    ({"tune.search_space.lr": [0.0, 0.1]}, "tune.search_space.lr"),
    ({"tune.search_space.width": [16, 40, 16]}, "tune.search_space.width"),
    ({"tune.search_space.depth": [1.5, 3]}, "tune.search_space.depth"),
    ({"tune.search_space.magnitude": [0.0, 5.0]}, "tune.search_space.magnitude"),
    ({"tune.search_space.hflip": "yes"}, "tune.search_space.hflip"),
    ({"tune.search_space": {"depth": [1, 2], "width": [16, 32], "lr": [0.001, 0.01]}}, "tune.search_space.stages"),
    ({"train_resnet.augment": False}, "tune.search_space.magnitude"),
    ({"tune.grace_period": 10, "tune.heartbeat_interval": 60}, "tune.grace_period"),
])
def test_tune_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        tuning.tune_config(repo_params(**overrides))


def test_command_line_overrides_tune_config():
    cfg, _ = tuning.tune_config(repo_params(), n_trials=7, study_name="other")
    assert (cfg.n_trials, cfg.study_name) == (7, "other")


def test_trial_params_become_the_stage_params():
    params = repo_params(**{"data.image_size": 32, "tune.search_space.rotation": [0.0, 40.0],
                            "tune.search_space.hflip": [True, False], "tune.search_space.stages": 3})
    _, space = tuning.tune_config(params)
    trial = optuna.trial.FixedTrial({"depth": 2, "width": 16, "magnitude": 0.5, "lr": 1e-3, "rotation": 10.0,
                                     "hflip": False})  # stages is fixed: not an Optuna parameter
    sampled = tuning.suggest(trial, space)
    overrides = tuning.trial_overrides(sampled)
    assert overrides == {"train_resnet.model_args.depths": [2, 2, 2], "train_resnet.model_args.widths": [16, 32, 64],
                         "augment.magnitude": 0.5, "augment.rotation": 10.0, "augment.hflip": False,
                         "train_resnet.lr": 1e-3}
    trial_params = tuning.with_overrides(params, overrides)
    assert trial_params.train_resnet.model_args == {"depths": [2, 2, 2], "widths": [16, 32, 64]}
    assert (trial_params.augment.magnitude, trial_params.augment.hflip, trial_params.train_resnet.lr) == \
        (0.5, False, 1e-3)
    assert trial_params.train == params.train and trial_params.seed == params.seed  # nothing else changes
    create_model(trial_params.train_resnet.model, num_classes=3, image_size=32, **trial_params.train_resnet.model_args)


def test_too_many_stages_for_the_image_size_fail_before_tuning():
    params = repo_params(**{"data.image_size": 16, "tune.search_space.stages": [2, 4]})
    _, space = tuning.tune_config(params)
    with pytest.raises(ConfigError, match="tune.search_space.stages"):
        tuning.check_architectures(params, space)


@pytest.mark.parametrize("name, cls", [("median", optuna.pruners.MedianPruner),
                                       ("percentile", optuna.pruners.PercentilePruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("none", optuna.pruners.NopPruner)])
def test_pruner_is_chosen_in_params(name, cls):
    cfg, _ = tuning.tune_config(repo_params(**{"tune.pruner": name}))
    assert isinstance(tuning.make_pruner(cfg), cls)


def test_median_pruner_stops_a_trial_below_the_median():
    cfg, _ = tuning.tune_config(repo_params(**{"tune.pruner_startup_trials": 2, "tune.pruner_warmup_epochs": 1}))
    study = optuna.create_study(direction="maximize", pruner=tuning.make_pruner(cfg))
    for value in (0.8, 0.9):
        study.add_trial(optuna.create_trial(value=value, intermediate_values={1: value, 2: value}))
    trial = study.ask()
    trial.report(0.3, 1)
    assert not trial.should_prune()  # warm-up epoch
    trial.report(0.3, 2)
    assert trial.should_prune()


def test_dvc_exp_run_command_adds_missing_keys():
    cmd = tuning.dvc_exp_run_command({"train_resnet.model_args.depths": [2, 2], "train_resnet.lr": 0.001})
    assert cmd == "dvc exp run -S '++train_resnet.model_args.depths=[2, 2]' -S '++train_resnet.lr=0.001'"


def test_journal_heartbeat_fails_and_requeues_a_silent_trial(tmp_path):
    retry = tuning.StaleTrialRetry(max_retry=1)
    storage = tuning.HeartbeatJournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")),
                                             heartbeat_interval=1, grace_period=1,
                                             heartbeat_stale_trial_callback=retry)
    assert optuna.storages._heartbeat.is_heartbeat_enabled(storage)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    alive, dead = study.ask(), study.ask()
    for t in (alive, dead):
        t.suggest_int("depth", 1, 3)
    deadline = time.time() + 2.5
    while time.time() < deadline:  # only `alive` keeps beating
        storage.record_heartbeat(alive._trial_id)
        time.sleep(0.3)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == dead.number
    # The retry inherits the dead trial's old heartbeat; once it runs, its fresh start counts, so it is not stale.
    popped = study.ask()
    assert popped.number == 2 and popped._trial_id not in storage._get_stale_trial_ids(study._study_id)


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
def test_split_opens():
    """Paths under artifacts/prepared named test_* that this process opens while the fixture is active."""
    opened: list[str] = []
    active = [True]

    def hook(event, args):
        if active[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = Path(os.fsdecode(args[0]))
            if path.parent.name == "prepared" and path.name.startswith("test_"):
                opened.append(str(path))

    sys.addaudithook(hook)  # hooks cannot be removed: deactivate instead
    yield opened
    active[0] = False


def test_tiny_study(project, monkeypatch, test_split_opens):
    monkeypatch.setattr(tuning, "make_pruner", lambda cfg: PruneTrialOne())
    # The hook would see nothing if the data loader could not open files at all: prove it can.
    load_prepared(project / "artifacts" / "prepared", "val")
    assert tune(project) == 0
    assert test_split_opens == [], "tuning opened the test split"

    study = load_study(project)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 4 and states[1] == TrialState.PRUNED
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    assert len(study.trials[1].intermediate_values) == 1  # stopped after its first epoch
    assert all(len(t.intermediate_values) == 2 for t in study.trials if t.state == TrialState.COMPLETE)

    parents, children = runs_by_trial(project)
    assert len(parents) == 1
    parent = parents[0]
    assert study.user_attrs[tuning.PARENT_RUN_ATTR] == parent.info.run_id
    assert sorted(children) == [0, 1, 2, 3] and all(len(runs) == 1 for runs in children.values())
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for number, (run,) in children.items():
        trial = study.trials[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["state"] == trial.state.name and run.data.tags["study_name"] == "reslab-resnet"
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        assert run.data.params["lr"] == str(trial.params["lr"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == sorted(trial.intermediate_values)  # per-epoch curve, step = epoch
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/optimization_history.png", "figures/intermediate_values.png"} <= figures

    best = yaml.safe_load((project / "tuning" / "best_params.yaml").read_text())
    assert best["trial_number"] == study.best_trial.number and best["val_accuracy"] == study.best_value
    assert best["params"] == study.best_trial.user_attrs["overrides"]

    # Run again: the study is complete, nothing more is trained.
    assert tune(project) == 0
    assert len(load_study(project).trials) == 4 and len(runs_by_trial(project)[0]) == 1

    # --apply: the best trial into params.yaml, comments kept, and the file still valid.
    assert tune(project, "--apply") == 0
    params = load_params(project / "params.yaml")
    overrides = study.best_trial.user_attrs["overrides"]
    assert params.train_resnet.model_args == {"depths": overrides["train_resnet.model_args.depths"],
                                              "widths": overrides["train_resnet.model_args.widths"]}
    assert params.train_resnet.lr == overrides["train_resnet.lr"]
    assert params.augment.magnitude == overrides["augment.magnitude"]
    text = (project / "params.yaml").read_text()
    assert "`reslab tune --apply` writes here" in text and "# the study's plain CNN" in text
    assert "lr: null" in text  # train_baseline.lr untouched, still explicit


def failing_on_call(n: int, exc: BaseException):
    """train_trial that raises `exc` on its n-th call (1-based) and trains normally otherwise."""
    real = tuning.train_trial
    calls = [0]

    def train_trial(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return real(*args, **kwargs)

    return train_trial


def test_diverged_trial_fails_alone(project, monkeypatch):
    monkeypatch.setattr(tuning, "train_trial", failing_on_call(2, DivergedError("loss became nan at batch 0")))
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

    monkeypatch.setattr(tuning, "train_trial", diverging)
    assert tune(project) == 1
    assert "trials of this worker failed" in capsys.readouterr().err
    states = [t.state for t in load_study(project).trials]
    assert states == [TrialState.FAIL] * tuning.MAX_FAILURES_IN_A_ROW


def test_interrupted_study_resumes_to_n_trials(project, monkeypatch, capsys):
    real = tuning.train_trial
    monkeypatch.setattr(tuning, "train_trial", failing_on_call(2, KeyboardInterrupt()))
    assert tune(project) == 130
    assert "Run the same `reslab tune` to continue" in capsys.readouterr().err
    study = load_study(project)
    assert [t.state for t in study.trials] == [study.trials[0].state, TrialState.FAIL, TrialState.WAITING]
    interrupted = study.trials[1]
    parents, children = runs_by_trial(project)
    assert parents[0].info.status == "KILLED"
    assert children[1][0].info.status == "KILLED" and children[1][0].data.tags["interrupted"] == "true"

    monkeypatch.setattr(tuning, "train_trial", real)
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
    assert all(tuning.HEARTBEAT_ATTR in t.system_attrs for t in study.trials)  # every trial beat while it ran
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
