"""`reslab repro` (make run): the training replicates in parallel `dvc repro --single-item` processes, with the same
results and the same DVC and MLflow records as plain `dvc repro` (the session's `pipeline_project`)."""
import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import make_project, run

pytestmark = pytest.mark.slow
SEEDS = (1, 2)
ROLES = ("baseline", "resnet")


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_parallel_replicates_match_dvc_repro(pipeline_project, tiny_images, tmp_path):
    root = make_project(tmp_path / "proj", tiny_images)
    run(["dvc", "add", "-q", "data"], root)
    out = run(["reslab", "repro", "--jobs", "2"], root, timeout=900).stdout
    assert "4 training stage(s) to run, 2 at a time" in out
    assert out.count("training stages)") == 4 and "train_resnet@2 | " in out  # each relayed with its name
    assert json.loads(run(["dvc", "status", "--json"], root).stdout) == {}

    # The same numbers as the sequential dvc repro: threads come from params, not from what runs beside a stage.
    for role in ROLES:
        for seed in SEEDS:
            a = weights(root / f"models/{role}/seed_{seed}.pt")
            b = weights(pipeline_project / f"models/{role}/seed_{seed}.pt")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{role}@{seed} differs"
            m = json.loads((root / f"metrics/train_{role}/seed_{seed}.json").read_text())
            ref = json.loads((pipeline_project / f"metrics/train_{role}/seed_{seed}.json").read_text())
            assert (m["best_val_loss"], m["best_epoch"]) == (ref["best_val_loss"], ref["best_epoch"])
    ev, ref = (json.loads((r / "metrics/evaluate.json").read_text()) for r in (root, pipeline_project))
    assert ev["comparison"] == ref["comparison"] and ev["champion"] == ref["champion"]

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("reslab").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    families = [r for r in runs if r.data.tags.get("kind") == "family"]
    assert sorted(r.data.tags["role"] for r in families) == sorted(ROLES), "one parent per model, no race"
    parent = {r.data.tags["role"]: r.info.run_id for r in families}
    training = [r for r in runs if "seed" in r.data.tags and r.data.tags.get("stage", "").startswith("train_")]
    assert len(training) == len(ROLES) * len(SEEDS)
    assert all(r.data.tags["mlflow.parentRunId"] == parent[r.data.tags["role"]] for r in training)
    assert {r.data.tags["torch_threads"] for r in training} == {"1"}
    spans = sorted((r.info.start_time, r.info.end_time) for r in training)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two replicates overlapped in time"

    again = run(["reslab", "repro"], root).stdout
    assert "training stage(s) to run" not in again  # nothing stale: the training phase is skipped


def test_bad_jobs_is_a_clear_error(project):
    proc = run(["reslab", "repro", "--jobs", "0"], project, check=False)
    assert proc.returncode == 2 and "--jobs 0" in proc.stderr and "accepted" in proc.stderr
