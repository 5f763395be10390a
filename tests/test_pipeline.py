"""The real pipeline, shrunk: `dvc repro` in a temp git repo on a tiny generated data set (32 px, 2 epochs)."""
import json

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import run

pytestmark = pytest.mark.slow


def client_for(root):
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def test_outputs_and_metrics(pipeline_project):
    root = pipeline_project
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    for role in ("baseline", "resnet"):
        m = ev[role]
        assert 0 <= m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"] <= 1
        assert 0 <= m["macro_f1"] <= 1 and m["loss"] > 0
        train = json.loads((root / f"metrics/train_{role}.json").read_text())
        assert train["epochs_trained"] == 2
        history = pd.read_csv(root / f"plots/train_{role}/history.csv")
        assert history["epoch"].tolist() == [1, 2]
        confusion = pd.read_csv(root / f"plots/evaluate/confusion_{role}.csv")
        assert len(confusion) == ev["n_test"]
    c = ev["comparison"]
    assert c["ci_low"] <= c["accuracy_diff_resnet_minus_baseline"] <= c["ci_high"]
    assert c["accuracy_diff_resnet_minus_baseline"] == pytest.approx(ev["resnet"]["accuracy"]
                                                                     - ev["baseline"]["accuracy"])
    assert 0 < c["mcnemar_p_value"] <= 1
    assert ev["champion"] in ("baseline", "resnet")
    md = (root / "reports/comparison.md").read_text()
    assert "paired-bootstrap CI" in md and "McNemar" in md
    for fig in ("predictions.png", "comparison.png", "confusion_baseline.png", "confusion_resnet.png"):
        assert (root / "reports/figures" / fig).stat().st_size > 1000
    split = json.loads((root / "reports/split.json").read_text())
    test_paths = set(pd.read_csv(root / "artifacts/split/test.csv")["path"])
    train_paths = set(pd.read_csv(root / "artifacts/split/train.csv")["path"])
    assert not test_paths & train_paths and split["sizes"]["test"] == ev["n_test"]


def test_mlflow_records_every_stage(pipeline_project):
    root = pipeline_project
    client = client_for(root)
    exp = client.get_experiment_by_name("reslab")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert {"train_baseline", "train_resnet", "evaluate"} <= set(runs)
    for role in ("baseline", "resnet"):
        r = runs[f"train_{role}"]
        assert r.data.tags["model"] == role and r.data.tags["git_commit"] and r.data.tags["data_dvc_md5"] != "untracked"
        assert r.data.params["train.lr"] == "0.001" and r.data.params["data.image_size"] == "32"
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [1, 2]
        assert "test_accuracy" in r.data.metrics and "test_macro_f1" in r.data.metrics  # written by evaluate
        assert {d.dataset.name for d in r.inputs.dataset_inputs} == {"train", "val"}
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "figures")}
        assert {"figures/learning_curves.png", "figures/augmented_examples.png"} <= artifacts
        assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")] == [f"checkpoint/{role}.pt"]
        info = json.loads((root / f"models/{role}.run.json").read_text())
        assert info["run_id"] == r.info.run_id and info["model_uri"].startswith("models:/")
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    champion = client.get_model_version_by_alias("reslab-classifier", "champion")
    assert champion.tags["source_run_id"] == runs[f"train_{ev['champion']}"].info.run_id
    assert "figures/predictions.png" in {a.path for a in client.list_artifacts(runs["evaluate"].info.run_id,
                                                                                "figures")}


def test_second_repro_runs_nothing_and_dvc_reads_metrics_and_plots(pipeline_project):
    root = pipeline_project
    out = run(["dvc", "repro"], root)
    assert "Running stage" not in out.stdout and "up to date" in out.stdout
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root).stdout)
    flat = json.dumps(shown)
    assert "metrics/evaluate.json" in flat and "metrics/train_resnet.json" in flat
    run(["dvc", "plots", "show", "-o", str(root / "dvc_plots")], root)
    assert (root / "dvc_plots/index.html").stat().st_size > 0


def test_each_stage_declares_only_the_params_it_reads(pipeline_project):
    root = pipeline_project
    params = root / "params.yaml"
    original = params.read_text()
    try:
        tree = yaml.safe_load(original)
        tree["train_baseline"]["lr"] = 0.002
        params.write_text(yaml.safe_dump(tree, sort_keys=False))
        status = json.loads(run(["dvc", "status", "--json"], root).stdout)
        assert set(status) == {"train_baseline"}  # not train_resnet; evaluate follows once baseline.pt changes
        tree = yaml.safe_load(original)
        tree["evaluate"]["n_bootstrap"] = 500
        params.write_text(yaml.safe_dump(tree, sort_keys=False))
        status = json.loads(run(["dvc", "status", "--json"], root).stdout)
        assert set(status) == {"evaluate"}
    finally:
        params.write_text(original)


def test_predict_with_the_champion(pipeline_project, tiny_images, tmp_path):
    root = pipeline_project
    image = next(tiny_images.glob("bald_baker/*.jpg"))
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    proc = run(["reslab", "predict", str(image), str(junk), str(image)], root, check=False)
    assert proc.returncode == 1  # one file failed; the others were still classified
    lines = [l for l in proc.stdout.splitlines() if l.startswith(str(image))]
    assert len(lines) == 2 and "%" in lines[0]
    assert f"{junk}: error: not a readable image" in proc.stderr and "Traceback" not in proc.stderr
    folder = run(["reslab", "predict", str(tiny_images / "bald_baker"), "--model", "resnet", "--top", "2"], root)
    assert folder.stdout.count("%") >= 2 * 3


def test_training_never_reads_the_test_split(prepared_project, tmp_path):
    from test_resume import copy_project

    root = copy_project(prepared_project, tmp_path / "no_test")
    for f in root.glob("artifacts/prepared/test_*"):
        f.unlink()  # if training touched the test split, it would fail here
    run(["reslab", "train", "baseline", "--no-progress"], root, env={"MLFLOW_TRACKING_URI":
                                                                     f"sqlite:///{tmp_path / 'm.db'}"})
    assert (root / "models/baseline.pt").is_file()
    assert not (root / "mlflow.db").exists()  # an explicit MLFLOW_TRACKING_URI wins over the project default
