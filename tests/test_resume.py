"""Killed with SIGKILL at any moment, a stage leaves no MLflow run RUNNING forever: training resumes from its last
finished epoch into the same run, with no lost or duplicated epochs, and ends where an uninterrupted run ends (CPU);
evaluate marks its killed run KILLED."""
import json
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import BIN, TINY_PARAMS, copy_project, run, training_run_id, write_params

EPOCHS = 6
RESUME_PARAMS = {**TINY_PARAMS, "train.epochs": EPOCHS, "train.patience": 0,
                 "train.batch_size": 4}  # small batches: epochs long enough to kill inside them


def all_runs(root):
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reslab")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return client, [r for r in runs if r.data.tags.get("kind") != "family"]  # the replicates' grouping runs aside


def start(root, *args):
    """`reslab ARGS` in the background (stderr to a file: a full pipe would block the child)."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = open(root / "child.log", "w")
    return subprocess.Popen([str(BIN / "reslab"), *args], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def kill_when(proc, ready, what, root, timeout=300):
    """SIGKILL `proc` as soon as `ready()` holds; fail if the child exits first or nothing happens by the deadline.

    The exit status proves the kill: only a child that was still running dies of the signal."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the child exited ({proc.returncode}) before {what}:\n{(root / 'child.log').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout}s:\n{(root / 'child.log').read_text()}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as with an OOM kill or a pulled plug
    assert proc.wait() == -signal.SIGKILL, f"the child ended on its own before the kill at {what}"


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def mtime(path):
    return path.stat().st_mtime_ns if path.exists() else None


def epochs_in(ckpt):
    return len(torch.load(ckpt, weights_only=True)["history"]) if ckpt.exists() else 0


@pytest.mark.slow
def test_training_killed_at_any_moment_resumes_into_one_run(prepared_project, tmp_path):
    reference = copy_project(prepared_project, tmp_path / "reference", RESUME_PARAMS)
    run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], reference)
    expected = pd.read_csv(reference / "plots/train_resnet/seed_1.csv")

    root = copy_project(prepared_project, tmp_path / "killed", RESUME_PARAMS)
    ckpt = root / ".reslab/checkpoints/train_resnet/seed_1.pt"
    ledger = root / ".reslab/checkpoints/train_resnet/seed_1.mlflow.json"

    # 1. as soon as the run ledger appears: the MLflow run is being created, or just was
    kill_when(start(root, "train", "resnet", "--seed", "1", "--no-progress"), ledger.exists, "the run ledger", root)
    assert not ckpt.exists()
    # 2. as soon as this attempt has recorded its (new or resumed) run: before the first epoch ends
    before = mtime(ledger)
    kill_when(start(root, "train", "resnet", "--seed", "1", "--no-progress"),
              lambda: mtime(ledger) != before and (read_json(ledger) or {}).get("run_id"), "an open run", root)
    assert not ckpt.exists(), "the kill was meant to land before the first epoch ended"
    client, runs = all_runs(root)
    assert [r.info.status for r in runs] == ["RUNNING"], "a ghost run: created, then killed with no epoch"
    # 3. right after the first checkpoint, 4. after a later one
    kill_when(start(root, "train", "resnet", "--seed", "1", "--no-progress"), ckpt.exists, "the first checkpoint", root)
    first = epochs_in(ckpt)
    before = mtime(ckpt)
    kill_when(start(root, "train", "resnet", "--seed", "1", "--no-progress"), lambda: mtime(ckpt) != before, "a later checkpoint",
              root)
    done_before = epochs_in(ckpt)
    assert 1 <= first < done_before < EPOCHS
    assert not (root / "models/resnet/seed_1.pt").exists()

    out = run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], root)
    assert f"resuming after epoch {done_before}" in out.stdout

    client, runs = all_runs(root)
    assert [r.info.status for r in runs] == ["FINISHED"], "every attempt must continue the one MLflow run"
    run_id = runs[0].info.run_id
    assert training_run_id(root, "resnet", 1) == run_id
    for metric in ("train_loss", "val_loss", "val_accuracy", "epoch_time_s"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, metric))
        assert steps == list(range(1, EPOCHS + 1)), f"{metric} logged at steps {steps}"
    assert {d.dataset.name for d in runs[0].inputs.dataset_inputs} == {"train", "val"}
    resumed = pd.read_csv(root / "plots/train_resnet/seed_1.csv")
    cols = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(resumed[cols], expected[cols], rtol=1e-5)
    assert not ckpt.exists() and not ledger.exists(), "a finished stage removes its resume state"


@pytest.mark.slow
def test_a_changed_config_does_not_resume_a_stale_checkpoint(prepared_project, tmp_path):
    root = copy_project(prepared_project, tmp_path / "stale", RESUME_PARAMS)
    ckpt = root / ".reslab/checkpoints/train_resnet/seed_1.pt"
    kill_when(start(root, "train", "resnet", "--seed", "1", "--no-progress"), ckpt.exists, "the first checkpoint", root)
    write_params(root / "params.yaml", {**TINY_PARAMS, "train.lr": 0.002})
    out = run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], root)
    assert "resuming" not in out.stdout
    _, runs = all_runs(root)
    status = {r.data.params.get("lr"): r.info.status for r in runs}
    assert status == {"0.002": "FINISHED", "0.001": "KILLED"}, "the stale run is closed, not left RUNNING"


@pytest.mark.slow
def test_a_killed_evaluate_leaves_no_running_run(prepared_project, tmp_path):
    root = copy_project(prepared_project, tmp_path / "evaluate", {**TINY_PARAMS, "train.epochs": 1})  # kfold: 2 seeds
    for role in ("baseline", "resnet"):
        run(["reslab", "train", role, "--no-progress"], root)
    ledger = root / ".reslab/checkpoints/evaluate.mlflow.json"
    kill_when(start(root, "evaluate"), lambda: (read_json(ledger) or {}).get("run_id"), "the evaluate run", root)
    killed = read_json(ledger)["run_id"]
    client, _ = all_runs(root)
    assert client.get_run(killed).info.status == "RUNNING"

    run(["reslab", "evaluate"], root)
    client, runs = all_runs(root)
    assert client.get_run(killed).info.status == "KILLED"
    evaluate = [r for r in runs if r.info.run_name.startswith("evaluate")]
    assert sorted(r.info.status for r in evaluate) == ["FINISHED", "KILLED"]
    assert not [r for r in runs if r.info.status == "RUNNING"] and not ledger.exists()
    for role in ("baseline", "resnet"):
        assert len(client.get_metric_history(training_run_id(root, role, 1), "test_accuracy")) == 1


KILL_AT_UNLINK = '''
import os, pathlib, signal
_name = os.environ["RESLAB_TEST_KILL_AT_UNLINK"]
_unlink = pathlib.Path.unlink
def _unlink_or_die(self, *args, **kwargs):
    if self.name == _name and ".reslab" in self.parts:  # the stage removing its resume state: die right there
        os.kill(os.getpid(), signal.SIGKILL)
    return _unlink(self, *args, **kwargs)
pathlib.Path.unlink = _unlink_or_die
'''


@pytest.mark.slow
@pytest.mark.parametrize("at", ["seed_1.pt", "seed_1.mlflow.json"])
def test_a_kill_between_the_runs_end_and_its_cleanup_leaves_one_finished_run(prepared_project, tmp_path, at):
    """SIGKILL placed in the window after the replicate's run has ended FINISHED: as the stage removes its resume
    checkpoint (which it does first), or its run ledger (next). The rerun reopens that run: one FINISHED run, each
    epoch once, one logged model, and the same outputs as an uninterrupted run."""
    params = {**TINY_PARAMS, "train.epochs": 3, "train.patience": 0}
    reference = copy_project(prepared_project, tmp_path / "reference", params)
    run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], reference)
    root = copy_project(prepared_project, tmp_path / "killed", params)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_AT_UNLINK)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "PYTHONPATH": str(hook), "RESLAB_TEST_KILL_AT_UNLINK": at}
    proc = subprocess.run([str(BIN / "reslab"), "train", "resnet", "--seed", "1", "--no-progress"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    client, runs = all_runs(root)
    assert [r.info.status for r in runs] == ["FINISHED"], "the kill was meant to land after the run ended"
    assert (root / ".reslab/checkpoints/train_resnet/seed_1.mlflow.json").exists()

    run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], root)
    client, runs = all_runs(root)
    assert [r.info.status for r in runs] == ["FINISHED"], "the rerun must reopen the finished run, not add one"
    run_id = runs[0].info.run_id
    for metric in ("train_loss", "val_accuracy"):
        assert sorted(m.step for m in client.get_metric_history(run_id, metric)) == [1, 2, 3]
    assert len(client.get_metric_history(run_id, "best_val_accuracy")) == 1
    models = client.search_logged_models([runs[0].info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert len(models) == 1
    cols = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(root / "plots/train_resnet/seed_1.csv")[cols],
                                  pd.read_csv(reference / "plots/train_resnet/seed_1.csv")[cols])
    assert not (root / ".reslab/checkpoints/train_resnet/seed_1.pt").exists()


@pytest.mark.slow
def test_training_runs_record_system_metrics(prepared_project, tmp_path):
    """MLflow's own system metrics (CPU, memory) on every training run; the sampling interval a user sets wins."""
    root = copy_project(prepared_project, tmp_path / "system", {**TINY_PARAMS, "train.epochs": 3, "train.patience": 0})
    run(["reslab", "train", "resnet", "--seed", "1", "--no-progress"], root,
        env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    client, runs = all_runs(root)
    assert [r.info.status for r in runs] == ["FINISHED"]
    metrics = runs[0].data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= metrics.keys(), metrics
    assert len(client.get_metric_history(runs[0].info.run_id, "system/cpu_utilization_percentage")) >= 2
