"""What a DVC user does must lose nothing: a forced rerun reproduces every tracked output byte for byte, whoever
schedules it and on however many cores; a queued experiment records its runs into the project's own store."""
import json
import shutil
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY_PARAMS, copy_project, run, write_params

pytestmark = pytest.mark.slow


def committed_copy(pipeline_project, dst):
    """A copy of the tiny pipeline's project with every output, committed to git with the repository's
    .gitignore (run state such as mlflow.db stays out of git, as in a real clone)."""
    root = copy_project(pipeline_project, dst, outputs=True)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], root)
    return root


def store(root):
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("reslab").experiment_id])


def test_a_fresh_clone_reruns_on_one_core_one_stage_at_a_time_and_changes_no_tracked_file(pipeline_project,
                                                                                           tmp_path):
    """pipeline_project ran with `reslab repro --jobs 2` on every core; a git clone of it (no DVC cache: models and
    figures absent, data/ regenerated as `make data` does) reruns every stage with plain `dvc repro`, one at a time,
    pinned to one core: git and DVC must see no change at all (no timings, no run ids in tracked outputs; threads
    from params, not from the scheduler or the machine), and the clone's MLflow store gets evaluate's records."""
    origin = committed_copy(pipeline_project, tmp_path / "origin")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    shutil.copytree(origin / "data", clone / "data")
    out = run(["taskset", "-c", "0", "dvc", "repro"], clone, timeout=900).stdout
    assert out.count("Running stage 'train_") == 4 and "Running stage 'evaluate'" in out
    assert run(["git", "status", "--porcelain"], clone).stdout == "", "a rerun changed a tracked file"
    assert (clone / "dvc.lock").read_text() == (origin / "dvc.lock").read_text()  # models and figures by md5 too
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}

    client, runs = store(clone)
    training = [r for r in runs if r.data.tags.get("stage", "").startswith("train_") and "seed" in r.data.tags]
    assert len(training) == 4 and {r.data.tags["torch_threads"] for r in training} == {"1"}
    assert [r.data.tags.get("stage") for r in runs].count("evaluate") == 1
    champion = client.get_model_version_by_alias("reslab-classifier", "champion")
    assert champion.tags["source_run_id"] in {r.info.run_id for r in training}  # promoted from this clone's runs

    write_params(clone / "params.yaml", {**TINY_PARAMS, "replicates.jobs": 5})  # the project's, jobs changed
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}, "jobs is scheduling, not a param"


def test_a_queued_experiment_records_into_the_projects_store(pipeline_project, tmp_path):
    root = committed_copy(pipeline_project, tmp_path / "queue")
    client, before = store(root)
    champion = client.get_model_version_by_alias("reslab-classifier", "champion").version

    run(["dvc", "exp", "run", "--queue", "--name", "lr2", "-S", "train_baseline.lr=0.002"], root)
    run(["dvc", "queue", "start", "-j", "1"], root)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], root).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(3)
        assert "Success" in status, f"the queued experiment did not succeed:\n{status}\n" + run(
            ["dvc", "queue", "logs", "lr2"], root, check=False).stdout[-3000:]
    finally:
        run(["dvc", "queue", "stop"], root, check=False)

    client, after = store(root)
    new = [r for r in after if r.info.run_id not in {b.info.run_id for b in before}]
    tagged = [r for r in new if r.data.tags.get("dvc_exp_name") == "lr2"]
    replicates = [r for r in tagged if r.data.tags.get("kind") != "family"]  # the new family's parent aside
    assert sorted(r.data.tags["stage"] for r in replicates) == ["evaluate", "train_baseline", "train_baseline"]
    assert {r.data.params.get("lr") for r in replicates if r.data.tags["stage"] == "train_baseline"} == {"0.002"}
    assert all(r.info.status == "FINISHED" for r in new)
    assert client.get_model_version_by_alias("reslab-classifier", "champion").version == champion, \
        "an experiment moved @champion"
