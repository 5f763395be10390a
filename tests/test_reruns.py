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


def test_a_forced_rerun_on_one_core_one_stage_at_a_time_changes_no_tracked_file(pipeline_project, tmp_path):
    """pipeline_project ran with `reslab repro --jobs 2` on every core; this reruns every stage with plain
    `dvc repro --force`, one at a time, pinned to one core: git and DVC must see no change at all (no timings, no
    run ids in tracked outputs; threads from params, not from the scheduler or the machine)."""
    root = committed_copy(pipeline_project, tmp_path / "rerun")
    lock_before = (root / "dvc.lock").read_text()
    out = run(["taskset", "-c", "0", "dvc", "repro", "--force"], root, timeout=900).stdout
    assert out.count("Running stage 'train_") == 4
    assert run(["git", "status", "--porcelain"], root).stdout == "", "a rerun changed a tracked file"
    assert (root / "dvc.lock").read_text() == lock_before  # the models (DVC cache) included, by their md5
    assert json.loads(run(["dvc", "status", "--json"], root).stdout) == {}

    _, runs = store(root)
    training = [r for r in runs if r.data.tags.get("stage") == "train_baseline" and "seed" in r.data.tags]
    assert len(training) == 4 and {r.data.tags["torch_threads"] for r in training} == {"1"}
    # both attempts of a replicate hold the same weights, so evaluate finds either by the file's hash
    assert len({r.data.tags["weights_sha256"] for r in training}) == 2

    write_params(root / "params.yaml", {**TINY_PARAMS, "replicates.jobs": 5})  # the project's, jobs changed
    assert json.loads(run(["dvc", "status", "--json"], root).stdout) == {}, "jobs is scheduling, not a param"


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
