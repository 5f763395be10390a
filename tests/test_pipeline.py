"""The real pipeline, shrunk: `reslab repro` (make run's dvc repro) in a temp git repo on a tiny generated data set
(32 px, 2 epochs, seeds 1 and 2 in replicates.seeds). Tests that only read use the session's `pipeline_project`;
tests that edit params, rerun or write output use `pipeline_copy`, their own copy of it."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import copy_project, run, training_run_id

pytestmark = pytest.mark.slow
SEEDS = (1, 2)
ROLES = ("baseline", "resnet")


@pytest.fixture
def pipeline_copy(pipeline_project, tmp_path):
    """This test's own copy of the run pipeline, outputs and MLflow store included."""
    return copy_project(pipeline_project, tmp_path / "pipeline", outputs=True)


def client_for(root):
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def runs_of(root):
    client = client_for(root)
    exp = client.get_experiment_by_name("reslab")
    return client, client.search_runs([exp.experiment_id])


def status_after(root, edit):
    """`dvc status` after editing params.yaml (restored afterwards, for the next edit): the stages that would run."""
    params = root / "params.yaml"
    original = params.read_text()
    try:
        tree = yaml.safe_load(original)
        edit(tree)
        params.write_text(yaml.safe_dump(tree, sort_keys=False))
        return set(json.loads(run(["dvc", "status", "--json"], root).stdout))
    finally:
        params.write_text(original)


def test_outputs_and_metrics(pipeline_project):
    root = pipeline_project
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    assert ev["n_replicates"] == len(SEEDS)
    for role in ROLES:
        m = ev[role]
        assert set(m["per_replicate"]) == {str(s) for s in SEEDS}
        accs = [r["accuracy"] for r in m["per_replicate"].values()]
        assert m["accuracy_mean"] == pytest.approx(sum(accs) / len(accs))
        assert m["accuracy_ci_low"] <= m["accuracy_mean"] <= m["accuracy_ci_high"]
        for seed in SEEDS:
            train = json.loads((root / f"metrics/train_{role}/seed_{seed}.json").read_text())
            assert train["epochs_trained"] == 2 and train["best_epoch"] in (1, 2)
            assert pd.read_csv(root / f"plots/train_{role}/seed_{seed}.csv")["epoch"].tolist() == [1, 2]
            assert (root / f"models/{role}/seed_{seed}.pt").is_file()
        confusion = pd.read_csv(root / f"plots/evaluate/confusion_{role}.csv")
        assert len(confusion) == ev["n_test"] * ev.get("repeats", len(SEEDS))  # every replicate's test predictions
        # (kfold: each image once per repeat; holdout: the test split once per seed)
    c = ev["comparison"]
    diffs = [ev["resnet"]["per_replicate"][str(s)]["accuracy"] - ev["baseline"]["per_replicate"][str(s)]["accuracy"]
             for s in SEEDS]
    n = [ev["baseline"]["per_replicate"][str(s)]["n_test"] for s in SEEDS]  # kfold: folds differ in size
    assert c["accuracy_diff_resnet_minus_baseline"] == pytest.approx(np.dot(diffs, n) / sum(n))
    assert c["ci_low"] <= c["accuracy_diff_resnet_minus_baseline"] <= c["ci_high"]
    assert c["test_only_ci_high"] - c["test_only_ci_low"] <= c["ci_high"] - c["ci_low"]
    assert c["resnet_better_in"] + c["baseline_better_in"] + c["ties"] == len(SEEDS)
    assert 0 <= c["probability_of_improvement"] <= 1
    curves = pd.read_csv(root / "plots/evaluate/learning_curves.csv")
    assert curves["epoch"].tolist() == [1, 2] and not curves.isna().any().any()
    md = (root / "reports/comparison.md").read_text()
    assert "**Verdict:" in md and "Rule:" in md and "McNemar" in md and "ended by the cap" in md
    assert ("| 1 (0, 0) |" in md or "| 1 |" in md) and "without the test split" in md  # kfold: (repeat, fold)
    for fig in ("replicates.png", "learning_curves.png", "predictions.png", "confusion_baseline.png",
                "confusion_resnet.png"):
        assert (root / "reports/figures" / fig).stat().st_size > 1000
    split = json.loads((root / "reports/split.json").read_text())
    test_paths = set(pd.read_csv(root / "artifacts/split/test.csv")["path"])
    train_paths = set(pd.read_csv(root / "artifacts/split/train.csv")["path"])
    assert not test_paths & train_paths
    assert ev["n_test"] == (split["sizes"]["images"] if split["design"] == "kfold" else split["sizes"]["test"])


def test_mlflow_groups_replicates_and_records_every_stage(pipeline_project):
    root = pipeline_project
    client, runs = runs_of(root)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not list((root / ".reslab/checkpoints").rglob("*.*")), "finished stages leave no resume state behind"
    families = {r.data.tags["role"]: r for r in runs if r.data.tags.get("kind") == "family"}
    assert set(families) == set(ROLES)
    training = [r for r in runs if r.data.tags.get("stage", "").startswith("train_") and "seed" in r.data.tags]
    assert len(training) == len(ROLES) * len(SEEDS)
    keys = None
    for r in training:
        role, seed = r.data.tags["role"], int(r.data.tags["seed"])
        assert r.data.tags["mlflow.parentRunId"] == families[role].info.run_id  # one parent per model family
        assert r.info.run_name.startswith(f"train_{role} seed {seed} (")
        assert r.data.tags["git_commit"] and r.data.tags["data_dvc_md5"] != "untracked"
        assert r.data.tags["torch_version"] and r.data.tags["git_dirty"] in ("true", "false")
        assert r.data.params["lr"] == "0.001" and r.data.params["image_size"] == "32"
        assert r.data.params["seed"] == str(seed) and r.data.params["model"] == role
        keys = set(r.data.params) if keys is None else keys
        assert set(r.data.params) == keys, "both models log their settings under the same keys"
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [1, 2]
        assert "test_accuracy" in r.data.metrics and "test_macro_f1" in r.data.metrics  # written by evaluate
        assert {d.dataset.name for d in r.inputs.dataset_inputs} == {"train", "val"}
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "figures")}
        assert {"figures/learning_curves.png", "figures/augmented_examples.png"} <= artifacts
        assert training_run_id(root, role, seed) == r.info.run_id  # its weights file's SHA-256 tag
        assert r.data.tags["result_model_uri"].startswith("models:/") and r.data.metrics["train_time_s"] > 0
    evaluate = [r for r in runs if r.data.tags.get("stage") == "evaluate"]
    assert len(evaluate) == 1
    ev_run = evaluate[0]
    assert {"baseline_test_accuracy_mean", "resnet_test_accuracy_mean", "ci_low", "ci_high",
            "probability_of_improvement"} <= set(ev_run.data.metrics)
    assert {d.dataset.name for d in ev_run.inputs.dataset_inputs} == {"test"}
    assert {"figures/replicates.png", "figures/learning_curves.png"} <= {
        a.path for a in client.list_artifacts(ev_run.info.run_id, "figures")}


def test_champion_is_chosen_on_validation_only(pipeline_project):
    root = pipeline_project
    val = {role: {s: json.loads((root / f"metrics/train_{role}/seed_{s}.json").read_text()) for s in SEEDS}
           for role in ROLES}
    mean = {role: sum(m["best_val_accuracy"] for m in v.values()) / len(v) for role, v in val.items()}
    family = max(ROLES, key=lambda r: (mean[r], -sum(m["best_val_loss"] for m in val[r].values())))
    seed = max(SEEDS, key=lambda s: (val[family][s]["best_val_accuracy"], -val[family][s]["best_val_loss"], -s))
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    assert ev["champion"] == {"role": family, "seed": seed}
    client = client_for(root)
    champion = client.get_model_version_by_alias("reslab-classifier", "champion")
    assert champion.tags["source_run_id"] == training_run_id(root, family, seed)


def test_second_repro_runs_nothing_and_dvc_reads_metrics_and_plots(pipeline_copy):
    root = pipeline_copy
    out = run(["dvc", "repro"], root)
    assert "Running stage" not in out.stdout and "up to date" in out.stdout
    flat = json.dumps(json.loads(run(["dvc", "metrics", "show", "--json"], root).stdout))
    assert "metrics/evaluate.json" in flat and '"verdict"' in flat
    assert "metrics/train_resnet/seed_2.json" not in flat  # per-seed summaries are outs: the metrics lead with the answer
    run(["dvc", "plots", "show", "-o", str(root / "dvc_plots")], root)
    assert (root / "dvc_plots/index.html").stat().st_size > 0


def test_each_stage_declares_only_the_params_it_reads(pipeline_copy):
    root = pipeline_copy

    def lr(tree):
        tree["train_resnet"]["lr"] = 0.002

    def bootstrap(tree):
        tree["evaluate"]["n_bootstrap"] = 500

    # evaluate follows the ResNet replicates once their models change
    assert status_after(root, lr) == {"train_resnet@1", "train_resnet@2"}
    assert status_after(root, bootstrap) == {"evaluate"}


def test_adding_a_seed_trains_only_its_models_and_removing_one_retrains_nothing(pipeline_copy):
    root = pipeline_copy

    def add(tree):  # kfold (TINY_PARAMS: 2 folds): a second repeat is two more seeds
        tree["replicates"]["seeds"] = [1, 2, 3, 4]

    # split writes the new replicates' files (artifacts/replicates); prepare and the existing replicates' deps stay
    # as they are (tests/test_kfold.py runs it, and removes the repeat again)
    assert status_after(root, add) == {"split", "train_baseline@3", "train_resnet@3", "train_baseline@4",
                                       "train_resnet@4", "evaluate"}


def test_an_experiment_does_not_move_the_champion(pipeline_copy):
    """`dvc exp run` (which sets DVC_EXP_NAME) evaluates and logs, but the @champion alias stays where it was."""
    root = pipeline_copy
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.reslab/\n/data\n/dvc_plots/\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "pipeline"], root)
    client = client_for(root)
    before = client.get_model_version_by_alias("reslab-classifier", "champion").version
    out = run(["dvc", "exp", "run", "-n", "probe", "-S", "evaluate.n_bootstrap=300"], root)
    assert "Running stage 'evaluate'" in out.stdout and "train_" not in out.stdout.split("Running stage")[-1]
    assert "not promoted: DVC experiment probe" in out.stdout
    assert client.get_model_version_by_alias("reslab-classifier", "champion").version == before
    _, runs = runs_of(root)
    probe = [r for r in runs if r.data.tags.get("dvc_exp_name") == "probe"]
    assert len(probe) == 1 and probe[0].data.tags["stage"] == "evaluate" and "(probe)" in probe[0].info.run_name


def test_predict_with_the_champion(pipeline_project, tiny_images, tmp_path):
    root = pipeline_project
    image = next(tiny_images.glob("bald_baker/*.jpg"))
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    proc = run(["reslab", "predict", str(image), str(junk), str(image)], root, check=False)
    assert proc.returncode == 1  # one file failed; the others were still classified
    lines = [line for line in proc.stdout.splitlines() if line.startswith(str(image))]
    assert len(lines) == 2 and "%" in lines[0]
    assert str(junk) in proc.stderr and "Traceback" not in proc.stderr
    folder = run(["reslab", "predict", str(tiny_images / "bald_baker"), "--model", "resnet", "--top", "2"], root)
    assert folder.stdout.count("%") >= 2 * 3 and "models/resnet/seed_" in folder.stdout
    one = run(["reslab", "predict", str(image), "--model", "baseline@2"], root)
    assert "models/baseline/seed_2.pt" in one.stdout
    missing = run(["reslab", "predict", str(image), "--model", "baseline@7"], root, check=False)
    assert missing.returncode == 2 and "trained seeds of baseline: 1, 2" in missing.stderr


def test_training_never_reads_the_test_split(prepared_project, tmp_path):
    root = copy_project(prepared_project, tmp_path / "no_test")
    for f in root.glob("artifacts/prepared/test_*"):
        f.unlink()  # if training touched the test split, it would fail here
    run(["reslab", "train", "baseline", "--seed", "1", "--no-progress"], root,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"})
    assert (root / "models/baseline/seed_1.pt").is_file()
    assert not (root / "mlflow.db").exists()  # an explicit MLFLOW_TRACKING_URI wins over the project default
