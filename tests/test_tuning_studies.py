"""`reslab tune` end to end: tiny real studies of both roles (trials train), --apply, failing, diverging and
interrupted trials, and several worker processes sharing one study. Each runs in a `study_project` (conftest;
tuning_project.py) with its own MLflow store."""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from reslab.config import load_params
from reslab.tracking import sweep
from reslab.training import DivergedError
from reslab.tuning import objective, storage, study as studies
from tuning_project import load_study, make_study_project, run_reslab, runs_by_trial, tune


# ----------------------------------------------------------------------------- studies end to end


def test_missing_prepared_data_says_to_run_prepare(tmp_path, mlflow_store, capsys):
    root = make_study_project(tmp_path / "proj", data=False)
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


@pytest.mark.slow  # a real study: trials train
def test_tiny_study(study_project, monkeypatch, prepared_opens):
    monkeypatch.setattr(studies, "make_pruner", lambda cfg: PruneTrialOne())
    assert tune(study_project) == 0
    # The hook sees the splits tuning reads (so it sees opens at all), and never the test split.
    assert {"train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"} <= set(prepared_opens)
    assert [name for name in prepared_opens if name.startswith("test_")] == [], "tuning opened the test split"

    study = load_study(study_project)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 4 and states[1] == TrialState.PRUNED
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    assert len(study.trials[1].intermediate_values) == 1  # stopped after its first epoch
    assert all(len(t.intermediate_values) == 2 for t in study.trials if t.state == TrialState.COMPLETE)

    parents, children = runs_by_trial(study_project)
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

    best = yaml.safe_load((study_project / "tuning" / "best_params_resnet.yaml").read_text())
    assert best["trial_number"] == study.best_trial.number and best["val_accuracy"] == study.best_value
    assert best["params"] == study.best_trial.user_attrs["overrides"]

    # Run again: the study is complete, nothing more is trained.
    assert tune(study_project) == 0
    assert len(load_study(study_project).trials) == 4 and len(runs_by_trial(study_project)[0]) == 1

    # --apply: the best trial into train_resnet of params.yaml, comments kept, and the file still valid.
    before = load_params(study_project / "params.yaml")
    assert tune(study_project, "--apply") == 0
    params = load_params(study_project / "params.yaml")
    overrides = study.best_trial.user_attrs["overrides"]
    assert params.train_resnet.model_args == {"depths": overrides["train_resnet.model_args.depths"],
                                              "widths": overrides["train_resnet.model_args.widths"]}
    assert params.train_resnet.lr == overrides["train_resnet.lr"]
    assert params.train_resnet.augment_magnitude == overrides["train_resnet.augment_magnitude"]
    assert dataclasses.replace(params, train_resnet=before.train_resnet) == before  # nothing else changed
    text = (study_project / "params.yaml").read_text()
    assert "`reslab tune --apply` writes here" in text and "# the study's plain CNN" in text
    assert "lr: null" in text  # train_baseline.lr untouched, still explicit


@pytest.mark.slow  # a real study: trials train
def test_baseline_study_tunes_and_applies_only_train_baseline(study_project, capsys):
    assert tune(study_project, "--role", "baseline", "--n-trials", "2") == 0
    journal = storage.open_storage(None, study_project)
    assert optuna.get_all_study_names(journal) == ["reslab-baseline"]  # the resnet's study is another one
    study = load_study(study_project, "reslab-baseline")
    assert len(study.trials) == 2 and {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert study.user_attrs[studies.SIGNATURE_ATTR]["role"] == "baseline"
    for trial in study.trials:
        assert set(trial.params) == {"train_baseline.augment_magnitude", "train_baseline.lr"}
        assert set(trial.user_attrs["overrides"]) == set(trial.params)

    # The value is the val accuracy of the epoch the training stage keeps (its lowest val loss), read back from
    # the trial's logged history: not the maximum over epochs.
    parents, children = runs_by_trial(study_project)
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

    before = load_params(study_project / "params.yaml")
    assert tune(study_project, "--role", "baseline", "--apply") == 0
    assert "dvc exp run -S '++train_baseline." in capsys.readouterr().out
    params = load_params(study_project / "params.yaml")
    best = study.best_trial.params
    assert (params.train_baseline.lr, params.train_baseline.augment_magnitude) == \
        (best["train_baseline.lr"], best["train_baseline.augment_magnitude"])
    assert dataclasses.replace(params, train_baseline=before.train_baseline) == before  # only train_baseline
    assert yaml.safe_load((study_project / "tuning" / "best_params_baseline.yaml").read_text())["role"] == "baseline"
    # The resnet has no study yet: its --apply is independent and says so.
    assert tune(study_project, "--role", "resnet", "--apply") == 2
    assert "no study 'reslab-resnet'" in capsys.readouterr().err


def test_apply_refuses_a_study_without_the_role(study_project, capsys):
    """A study from before per-role tuning (its best params reach outside train_resnet) is not applied."""
    study = optuna.create_study(storage=storage.open_storage(None, study_project), study_name="reslab-resnet",
                                direction="maximize")
    study.add_trial(optuna.create_trial(value=0.9, params={"augment.magnitude": 0.5},
                                        distributions={"augment.magnitude": optuna.distributions.FloatDistribution(
                                            0.0, 1.5)},
                                        user_attrs={"overrides": {"augment.magnitude": 0.5}}))
    before = (study_project / "params.yaml").read_text()
    assert tune(study_project, "--apply") == 2
    assert "tuned no model role (an older study), not the resnet model" in capsys.readouterr().err
    assert (study_project / "params.yaml").read_text() == before


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


@pytest.mark.slow  # a real study: trials train
def test_diverged_trial_fails_alone(study_project, monkeypatch):
    monkeypatch.setattr(objective, "train_trial", failing_on_call(2, DivergedError("loss became nan at batch 0")))
    assert tune(study_project, "--n-trials", "3") == 0
    study = load_study(study_project)
    assert [t.state for t in study.trials][1] == TrialState.FAIL
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 3
    _, children = runs_by_trial(study_project)
    (failed,) = children[1]
    assert failed.info.status == "FAILED" and failed.data.tags["state"] == "FAIL"
    assert "DivergedError" in failed.data.tags["failure"]


def test_a_sweep_where_every_trial_fails_stops(study_project, monkeypatch, capsys):
    def diverging(*args, **kwargs):
        raise DivergedError("loss became nan at batch 0")

    monkeypatch.setattr(objective, "train_trial", diverging)
    assert tune(study_project) == 1
    assert "trials of this worker failed" in capsys.readouterr().err
    states = [t.state for t in load_study(study_project).trials]
    assert states == [TrialState.FAIL] * objective.MAX_FAILURES_IN_A_ROW


@pytest.mark.slow  # a real study: trials train
def test_interrupted_study_resumes_to_n_trials(study_project, monkeypatch, capsys):
    real = objective.train_trial
    monkeypatch.setattr(objective, "train_trial", failing_on_call(2, KeyboardInterrupt()))
    assert tune(study_project) == 130
    assert "Run the same `reslab tune` to continue" in capsys.readouterr().err
    study = load_study(study_project)
    assert [t.state for t in study.trials] == [study.trials[0].state, TrialState.FAIL, TrialState.WAITING]
    interrupted = study.trials[1]
    parents, children = runs_by_trial(study_project)
    assert parents[0].info.status == "KILLED"
    assert children[1][0].info.status == "KILLED" and children[1][0].data.tags["interrupted"] == "true"

    monkeypatch.setattr(objective, "train_trial", real)
    assert tune(study_project) == 0
    study = load_study(study_project)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4 and len(study.trials) == 5
    assert study.trials[2].params == interrupted.params  # the interrupted configuration ran first
    parents, children = runs_by_trial(study_project)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == list(range(5)) and all(len(r) == 1 for r in children.values())


# ----------------------------------------------------------------------------- several processes


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, mlflow_store):
    # Heartbeats every 5 s: a busy CI machine must not make a live worker's trial look dead.
    root = make_study_project(tmp_path / "proj", **{"tune.n_trials": 6, "tune.heartbeat_interval": 5})
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
def test_killed_worker_trial_is_failed_and_retried(tmp_path, mlflow_store):
    # Long trials (30 epochs) so the worker is surely mid-trial when it is killed.
    root = make_study_project(tmp_path / "proj", **{"tune.n_trials": 1, "tune.epochs": 30})
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
