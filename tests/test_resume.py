"""Training killed mid-run resumes from its last finished epoch, into the same MLflow run, with no lost or
duplicated epochs, and ends where an uninterrupted run ends (CPU)."""
import json
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import BIN, run, write_params

EPOCHS = 6


def copy_project(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".reslab", "models",
                                                            "metrics", "plots"))
    write_params(dst / "params.yaml", {**{"data.image_size": 32, "filter.min_images_per_class": 20,
                                          "train.num_threads": 1}, "train.epochs": EPOCHS, "train.patience": 0})
    return dst


def runs_of(root, role):
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reslab")
    return client, client.search_runs([exp.experiment_id], filter_string=f"tags.role = '{role}'")


@pytest.mark.slow
def test_killed_training_resumes_into_the_same_run(prepared_project, tmp_path):
    reference = copy_project(prepared_project, tmp_path / "reference")
    run(["reslab", "train", "resnet", "--no-progress"], reference)
    expected = pd.read_csv(reference / "plots/train_resnet/history.csv")

    root = copy_project(prepared_project, tmp_path / "killed")
    ckpt = root / ".reslab/checkpoints/train_resnet.pt"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([str(BIN / "reslab"), "train", "resnet", "--no-progress"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as with an OOM kill or a pulled plug
    proc.wait()
    assert not (root / "models/resnet.pt").exists()
    import torch

    done_before = len(torch.load(ckpt, weights_only=True)["history"])
    assert 1 <= done_before < EPOCHS

    out = run(["reslab", "train", "resnet", "--no-progress"], root)
    assert f"resuming after epoch {done_before}" in out.stdout

    client, runs = runs_of(root, "resnet")
    assert len(runs) == 1, "the resumed training must continue the same MLflow run"
    run_id = runs[0].info.run_id
    assert json.loads((root / "models/resnet.run.json").read_text())["run_id"] == run_id
    for metric in ("train_loss", "val_loss", "val_accuracy", "epoch_time_s"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, metric))
        assert steps == list(range(1, EPOCHS + 1)), f"{metric} logged at steps {steps}"
    resumed = pd.read_csv(root / "plots/train_resnet/history.csv")
    cols = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(resumed[cols], expected[cols], rtol=1e-5)
    assert not ckpt.exists(), "a finished stage removes its resume checkpoint"


@pytest.mark.slow
def test_a_changed_config_does_not_resume_a_stale_checkpoint(prepared_project, tmp_path):
    root = copy_project(prepared_project, tmp_path / "stale")
    ckpt = root / ".reslab/checkpoints/train_resnet.pt"
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    proc = subprocess.Popen([str(BIN / "reslab"), "train", "resnet", "--no-progress"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    write_params(root / "params.yaml", {"data.image_size": 32, "filter.min_images_per_class": 20,
                                        "train.num_threads": 1, "train.epochs": 2, "train.lr": 0.002})
    out = run(["reslab", "train", "resnet", "--no-progress"], root)
    assert "resuming" not in out.stdout
    _, runs = runs_of(root, "resnet")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 1 and finished[0].data.params["train.lr"] == "0.002"
