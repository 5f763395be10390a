"""`reslab repro` (make run; the session's `pipeline_project` runs the tiny pipeline with it): the training
replicates as parallel `dvc repro --single-item` processes, with the same numbers as a stage run alone by plain
`dvc repro`, and the same DVC and MLflow records."""
import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import copy_project, run

pytestmark = pytest.mark.slow
SEEDS = (1, 2)
ROLES = ("baseline", "resnet")


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_replicates_ran_in_parallel_with_one_family_per_model(pipeline_project, tmp_path):
    root = pipeline_project
    out = (root / ".reslab" / "repro.out").read_text()
    assert "4 training stage(s) to run, 2 at a time" in out
    assert out.count("training stages)") == 4 and "train_resnet@2 | " in out  # each relayed with its name
    assert json.loads(run(["dvc", "status", "--json"], root).stdout) == {}

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("reslab").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    families = [r for r in runs if r.data.tags.get("kind") == "family"]
    assert sorted(r.data.tags["role"] for r in families) == sorted(ROLES), "one parent per model, no race"
    training = [r for r in runs if "seed" in r.data.tags and r.data.tags.get("stage", "").startswith("train_")]
    assert len(training) == len(ROLES) * len(SEEDS)
    assert {r.data.tags["torch_threads"] for r in training} == {"1"}
    spans = sorted((r.info.start_time, r.info.end_time) for r in training)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two replicates overlapped in time"

    again = run(["reslab", "repro"], copy_project(root, tmp_path / "again", outputs=True)).stdout
    assert "training stage(s) to run" not in again  # nothing stale: the training phase is skipped


def test_a_replicate_run_alone_by_dvc_repro_gives_the_same_weights(pipeline_project, tmp_path):
    """Threads come from params (cores // replicates.jobs), not from what runs beside a stage."""
    root = copy_project(pipeline_project, tmp_path / "copy", outputs=True)
    for stage, path in (("train_baseline@1", "models/baseline/seed_1.pt"),
                        ("train_resnet@2", "models/resnet/seed_2.pt")):
        run(["dvc", "repro", "--force", "--single-item", stage], root, timeout=600)
        a, b = weights(root / path), weights(pipeline_project / path)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{stage} differs"


def test_bad_jobs_is_a_clear_error(project):
    proc = run(["reslab", "repro", "--jobs", "0"], project, check=False)
    assert proc.returncode == 2 and "--jobs 0" in proc.stderr and "accepted" in proc.stderr
