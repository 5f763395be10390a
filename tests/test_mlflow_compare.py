"""The data behind MLflow's compare view of the two models, read through MLflow's API after the real pipeline (shrunk):
each model's training runs grouped under its family run, with test metrics, params on the same keys and the
per-epoch curves (issue 10, point 8). scripts/mlflow_compare_screenshots.py pictures exactly these runs."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

ROLES = ("baseline", "resnet")


@pytest.fixture(scope="module")
def store(pipeline_project):
    """(MlflowClient on the project's store, its experiment, the project's params)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from reslab.tracking import tracking_uri

    params = yaml.safe_load((pipeline_project / "params.yaml").read_text())
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri(pipeline_project))
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params["mlflow"]["experiment_name"])
    assert experiment is not None
    yield client, experiment, params
    mlflow.set_tracking_uri(previous)


def training_runs(client, experiment, role: str) -> list:
    """A role's replicate runs (the family run aside)."""
    runs = client.search_runs([experiment.experiment_id], f"tags.stage = 'train_{role}'")
    return [r for r in runs if r.data.tags.get("kind") != "family"]


def test_each_model_has_a_finished_run_per_seed_under_its_family_run(store):
    client, experiment, params = store
    seeds = sorted(params["replicates"]["seeds"])
    for role in ROLES:
        runs = training_runs(client, experiment, role)
        assert sorted(int(r.data.tags["seed"]) for r in runs) == seeds, role
        assert {r.info.status for r in runs} == {"FINISHED"}
        (parent_id,) = {r.data.tags["mlflow.parentRunId"] for r in runs}  # one family for the replicates
        parent = client.get_run(parent_id)
        assert parent.data.tags["kind"] == "family" and parent.data.tags["stage"] == f"train_{role}"
    names = [r.info.run_name for role in ROLES for r in training_runs(client, experiment, role)]
    assert len(set(names)) == len(names), f"run names a user cannot tell apart: {names}"


def test_both_models_log_params_on_the_same_keys(store):
    client, experiment, params = store
    runs = {role: training_runs(client, experiment, role) for role in ROLES}
    keys = {frozenset(r.data.params) for rs in runs.values() for r in rs}
    assert len(keys) == 1, "a compare row is empty for one model: " + str(
        sorted(set.union(*map(set, keys)) - set.intersection(*map(set, keys))))
    (keys,) = keys
    assert {"model", "lr", "epochs", "batch_size", "seed"} <= keys, sorted(keys)
    assert any(k.startswith("augment.") for k in keys), sorted(keys)
    assert not [k for k in keys if k.startswith(("train_baseline.", "train_resnet."))], "role-named params"
    for role, rs in runs.items():
        assert {r.data.params["model"] for r in rs} == {params[f"train_{role}"]["model"]}
        assert {r.data.params["epochs"] for r in rs} == {str(params["train"]["epochs"])}
        assert {r.data.params["seed"] for r in rs} == {r.data.tags["seed"] for r in rs}


def test_each_run_has_test_metrics_and_per_epoch_curves(store):
    client, experiment, params = store
    for role in ROLES:
        for run in training_runs(client, experiment, role):
            metrics = run.data.metrics
            assert 0.0 <= metrics["test_accuracy"] <= 1.0, run.info.run_name
            trained = int(metrics["epochs_trained"])
            assert trained == params["train"]["epochs"] or metrics.get("stopped_early") == 1
            for key in ("val_accuracy", "val_loss", "train_loss"):
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
                assert steps == list(range(1, trained + 1)), f"{run.info.run_name} {key}: steps {steps}"


def test_the_screenshot_script_compares_these_runs(store):
    client, experiment, params = store
    spec = importlib.util.spec_from_file_location("mlflow_compare_screenshots",
                                                  REPO / "scripts" / "mlflow_compare_screenshots.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # dataclasses look their module up there
    try:
        spec.loader.exec_module(script)
        comparison = script.find_comparison(client, experiment.name)
        one_seed = script.find_comparison(client, experiment.name, seed=params["replicates"]["seeds"][0])
        with pytest.raises(script.ScreenshotError, match="run `make run`"):
            script.find_comparison(client, "no such experiment")
    finally:
        del sys.modules[spec.name]
    expected = [r.info.run_id for role in ROLES
                for r in sorted(training_runs(client, experiment, role), key=lambda r: int(r.data.tags["seed"]))]
    assert comparison.run_ids == expected
    assert [r.data.tags["seed"] for role in ROLES for r in one_seed.runs[role]] == \
        [str(params["replicates"]["seeds"][0])] * len(ROLES)
    assert {comparison.families[role].info.run_id for role in ROLES} == \
        {r.data.tags["mlflow.parentRunId"] for role in ROLES for r in training_runs(client, experiment, role)}
