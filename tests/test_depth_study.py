"""The depth study (studies/depth, a DVC project of its own): its params and profiles, the analysis on constructed
inputs with known answers and on the committed cells, and the real DVC pipeline end to end with the tiny profile
(2 depths, 1 seed, 2 epochs, 16 px)."""
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats

from conftest import REPO, make_project, run
from reslab.config import ConfigError
from reslab.depth_study.analysis import analyse, depth_verdict, flat_metrics, metrics_summary, paired_differences, rule
from reslab.depth_study.cell import remaining_seconds
from reslab.depth_study.layout import find_root
from reslab.depth_study.params import budget_params, cells, load_study_params
from reslab.depth_study.profiles import apply_profile, profile_overrides
from reslab.depth_study.report import report_markdown
from reslab.models.serialization import load_model_file
from reslab.statistics.verdict import interval_side

STUDY = REPO / "studies" / "depth"


# ----------------------------------------------------------------------------- params and profiles


def test_the_committed_params_are_the_cpu_profile():
    p = load_study_params(STUDY / "params.yaml")
    committed = yaml.safe_load((STUDY / "params.yaml").read_text())
    for key, value in profile_overrides(STUDY / "profiles", "cpu").items():
        node = committed
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert len(cells(p)) == 2 * len(p.depths) * len(p.seeds)
    assert "depths" not in budget_params(p) and "seeds" not in budget_params(p)  # new cells retrain nothing


@pytest.mark.parametrize("name", ["cpu", "gpu", "tiny"])
def test_each_profile_loads_and_keeps_the_comments(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(STUDY / "params.yaml", params)
    changes = apply_profile(params, STUDY / "profiles", name)
    p = load_study_params(params)
    assert "# fixed: no early stopping" in params.read_text()
    assert (name == "cpu") == (changes == [])
    if name == "tiny":
        assert p.depths == (8, 14) and p.seeds == (1,) and p.data.image_size == 16 and p.train.epochs <= 2
    if name == "gpu":
        assert 110 in p.depths and len(p.seeds) >= 5 and p.data.image_size >= 64


def test_switching_profiles_and_back_restores_the_committed_file(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(STUDY / "params.yaml", params)
    for name in ("gpu", "tiny", "cpu"):
        apply_profile(params, STUDY / "profiles", name)
    assert params.read_text() == (STUDY / "params.yaml").read_text()


def test_an_unknown_profile_names_the_profiles(tmp_path):
    with pytest.raises(ConfigError, match="profiles in .*: cpu, gpu, tiny"):
        profile_overrides(STUDY / "profiles", "laptop")


@pytest.mark.parametrize("edit, match", [
    (lambda t: t["train"].update(epoch=3), r"unknown key train\.epoch; valid keys of train: epochs"),
    (lambda t: t["train"].update(epochs="ten"), r"train\.epochs: expected an integer"),
    (lambda t: t.update(depths=[8, 21]), r"depths: depth 21: .*valid depths: 8, 14, 20"),
    (lambda t: t.update(seeds=[1, 1]), r"seeds: \[1, 1\] is out of range"),
    (lambda t: t["augment"].update(magnitude=9), r"augment\.magnitude: 9"),
    (lambda t: t.update(report={"confidence": 1.5}), r"report\.confidence"),
    # the main config's sections with their own bounds, limited to the keys the study reads
    (lambda t: t["data"].update(image_size=8), r"data\.image_size: 8 is out of range"),
    (lambda t: t["data"].update(interpolation=None), r"data\.interpolation: None is out of range"),
    (lambda t: t["train"].update(lr=0), r"params\.yaml: train\.lr: 0"),
    (lambda t: t["train"].update(patience=3), r"unknown key train\.patience; valid keys of train: epochs"),
    (lambda t: t["mlflow"].update(registered_model_name="x"), r"unknown key mlflow\.registered_model_name"),
])
def test_bad_params_name_the_key(tmp_path, edit, match):
    tree = yaml.safe_load((STUDY / "params.yaml").read_text())
    edit(tree)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=match):
        load_study_params(path)


def test_the_root_is_found_from_the_study_folder(tmp_path):
    (tmp_path / "studies" / "depth").mkdir(parents=True)
    (tmp_path / "studies" / "depth" / "dvc.yaml").write_text("stages: {}\n")
    assert find_root(tmp_path / "studies" / "depth") == tmp_path.resolve() == find_root(tmp_path)
    with pytest.raises(ConfigError, match="pass --root"):
        find_root(tmp_path.parent)


# ----------------------------------------------------------------------------- analysis, known answers


def rows_with(train_errors: dict[tuple[str, int], list[float]]) -> list[dict]:
    """Cells whose every metric is the given training error (per seed 1, 2, ...)."""
    return [{"family": f, "depth": d, "seed": k + 1, "final_train_loss": e, "final_train_error": e,
             "best_val_error": e, "test_error": e, "best_val_epoch": 1, "wall_time_s": 1.0}
            for (f, d), errors in train_errors.items() for k, e in enumerate(errors)]


def test_the_paired_difference_interval_is_student_s_t():
    plain, residual = [0.50, 0.42, 0.61], [0.30, 0.32, 0.29]
    diff = paired_differences(rows_with({("plain", 20): plain, ("residual", 20): residual}), [20], [1, 2, 3])
    d = np.subtract(plain, residual)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    got = diff[20]["final_train_error"]
    assert got["mean"] == pytest.approx(d.mean())
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert got["per_seed"] == pytest.approx(d.tolist())
    low, high = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high))


def summary(mean, low, high, n=3):
    return {"n": n, "mean": mean, "ci_low": low, "ci_high": high}


@pytest.mark.parametrize("difference, expected", [
    (summary(0.2, 0.01, 0.4), "depth 56: plain has higher training error than residual"),
    (summary(0.2, 0.0, 0.4), "depth 56: no detectable difference with 3 seeds"),  # touching 0 is not excluding it
    (summary(-0.2, -0.4, -0.01), "depth 56: residual has higher training error than plain"),
    (summary(-0.2, -0.4, 0.0), "depth 56: no detectable difference with 3 seeds"),
    (summary(0.0, -0.1, 0.1, n=5), "depth 56: no detectable difference with 5 seeds"),
    (summary(0.3, float("nan"), float("nan"), n=1), "depth 56: one seed, so no interval and no verdict"),
])
def test_the_verdict_at_its_boundaries(difference, expected):
    assert depth_verdict(difference, 56).startswith(expected)
    side = 1 if "plain has higher" in expected else -1 if "residual has higher" in expected else 0
    assert interval_side(difference["ci_low"], difference["ci_high"]) == side  # the rule the main verdict reads too


def test_analyse_on_a_degrading_plain_family():
    errors = {("plain", 8): [0.20, 0.22], ("plain", 56): [0.50, 0.56],
              ("residual", 8): [0.21, 0.21], ("residual", 56): [0.10, 0.12]}
    result = analyse(rows_with(errors), [56, 8], [1, 2])
    assert result["depths"] == [8, 56]
    assert result["lowest_training_error"] == {"plain": 8, "residual": 56}
    assert result["summary"]["plain"][56]["final_train_error"]["mean"] == pytest.approx(0.53)
    assert result["difference"][56]["test_error"]["mean"] == pytest.approx(0.42)
    assert "95 %" in result["rule"] and "t_{0.975, n-1}" in rule(0.95)
    metrics = metrics_summary(result)
    json.dumps(metrics, allow_nan=False)  # DVC reads it: no NaN
    assert metrics["plain_minus_residual"]["depth_56"]["final_train_error"]["mean"] == pytest.approx(0.42)
    assert all(math.isfinite(v) for v in flat_metrics(result).values())
    with pytest.raises(ValueError, match="no cell plain depth 8 seed 3"):
        analyse(rows_with(errors), [8, 56], [1, 2, 3])


def test_one_seed_reports_no_interval_and_writes_valid_json():
    result = analyse(rows_with({("plain", 8): [0.3], ("residual", 8): [0.2]}), [8], [1])
    assert result["verdicts"][8].startswith("depth 8: one seed")
    assert metrics_summary(result)["plain"]["depth_8"]["test_error"]["ci_low"] is None


def test_the_figures_draw_both_families_at_every_depth():
    from reslab.plots import error_vs_depth, training_error_curves

    errors = {(f, d): [0.2, 0.3] for f in ("plain", "residual") for d in (8, 20)}
    result = analyse(rows_with(errors), [8, 20], [1, 2])
    fig = error_vs_depth(result["summary"])
    gids = {line.get_gid() for ax in fig.axes for line in ax.lines}
    assert {"plain:final_train_error", "residual:final_train_error", "plain:test_error"} <= gids
    curves = {f: {d: [[{"epoch": 1, "train_error": 0.5}, {"epoch": 2, "train_error": 0.4}]] * 2 for d in (8, 20)}
              for f in ("plain", "residual")}
    fig = training_error_curves(curves)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines}
    assert set(lines) == {"plain:8", "plain:20", "residual:8", "residual:20"}
    assert list(lines["plain:8"].get_ydata()) == pytest.approx([0.5, 0.4])


def test_the_time_left_grows_with_depth():
    done = [{"depth": 8, "time_per_epoch_s": 1.0, "train_time_s": 10.0, "wall_time_s": 14.0},
            {"depth": 24, "time_per_epoch_s": 3.0, "train_time_s": 30.0, "wall_time_s": 34.0}]
    # per epoch: (1 + 3) s / (8 + 24) layers = 0.125 s per layer; outside the epochs: 4 s per cell
    assert remaining_seconds(done, [16, 56], epochs=10) == pytest.approx(0.125 * 72 * 10 + 2 * 4)
    assert remaining_seconds([], [8], epochs=10) is None


def committed_rows() -> list[dict]:
    """The committed cells with their test errors: the report's per-cell table rounds them to 3 decimals, which with
    the report's n_test (< 1000) identifies the count of correct test images, and `training.evaluate` gives the
    accuracy as a float32 mean of the hits."""
    md = (STUDY / "reports/depth_study.md").read_text()
    n_test = int(re.search(r"(\d+) test images", md).group(1))
    table = {(m[1], int(m[2]), int(m[3])): float(m[4]) for m in re.finditer(
        r"^\| (plain|residual) \| (\d+) \| (\d+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", md, re.M)}
    rows = []
    for path in sorted((STUDY / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        hits = round((1 - table[cell["family"], cell["depth"], cell["seed"]]) * n_test)
        rows.append({**cell, "test_error": 1.0 - float(np.float32(hits) / np.float32(n_test))})
    return rows


def test_the_committed_report_and_metrics_are_what_the_analysis_makes_of_the_committed_cells():
    p = load_study_params(STUDY / "params.yaml")
    rows = committed_rows()
    result = analyse(rows, p.depths, p.seeds, p.report.confidence)
    assert json.dumps(metrics_summary(result), indent=2) + "\n" == (STUDY / "metrics.json").read_text()
    md = (STUDY / "reports/depth_study.md").read_text()
    sizes = [int(x) for x in re.search(r"(\d+) train / (\d+) val / (\d+) test images, (\d+) classes", md).groups()]
    setup = {"image_size": p.data.image_size, "widths": list(p.model.widths), "epochs": p.train.epochs,
             "batch_size": p.train.batch_size, "lr": p.train.lr, "augment_magnitude": p.augment.magnitude,
             "precision": re.search(r"px, (\w+)\. Data", md).group(1), **dict(zip(
                 ("n_train", "n_val", "n_test", "n_classes"), sizes)),
             "n_parameters": {c["depth"]: c["n_parameters"] for c in rows if c["family"] == "plain"}}
    assert report_markdown(result, setup) == md


def test_the_study_s_source_deps_are_files_that_exist():
    """studies/depth is its own DVC project: a folder outside it is hashed with its __pycache__/ (the root's
    .dvcignore does not apply there), so every source dep must name a file."""
    stages = yaml.safe_load((STUDY / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for dep in stage["deps"]:
            path = (STUDY / dep).resolve()
            if dep.startswith("../../src/"):
                assert path.is_file(), f"{name}: {dep}"
    assert "cache" in (STUDY / ".dvc/config").read_text()  # the root's cache: ../../../.dvc/cache from .dvc/


# ----------------------------------------------------------------------------- the real pipeline, tiny profile

DEPTHS, SEEDS = (8, 14), (1,)


def study_status(root, edit):
    """`dvc status` inside the study after editing its params.yaml (restored afterwards): the stages that would
    run."""
    params = root / "studies/depth/params.yaml"
    original = params.read_text()
    try:
        tree = yaml.safe_load(original)
        edit(tree)
        params.write_text(yaml.safe_dump(tree, sort_keys=False))
        return set(json.loads(run(["dvc", "status", "--json"], root / "studies/depth").stdout))
    finally:
        params.write_text(original)


@pytest.fixture(scope="module")
def study_project(tmp_path_factory, tiny_images):
    """The tiny project with studies/ copied in (the study's own DVC project), the tiny profile applied, the main
    split made and `dvc repro` run once in studies/depth, as `make depth-study` does (module-wide; don't modify)."""
    root = make_project(tmp_path_factory.mktemp("depth") / "proj", tiny_images)
    shutil.copytree(REPO / "studies", root / "studies",
                    ignore=shutil.ignore_patterns("tmp", "cache", "config.local", "prepared", "models"))
    run(["dvc", "add", "-q", "data"], root)
    run(["reslab", "depth-study", "profile", "tiny"], root)
    split = run(["dvc", "repro", "split"], root)
    out = run(["dvc", "repro"], root / "studies/depth", timeout=600)
    (root / "repro.log").write_text(split.stdout + out.stdout)
    return root


@pytest.mark.slow
def test_the_study_trains_every_cell_and_reports(study_project):
    root, study = study_project, study_project / "studies/depth"
    log = (root / "repro.log").read_text()
    assert "train@plain-8-1" in log and "train@residual-14-1" in log
    assert "study: 4 of 4 cells done" in log and "epoch 2/2" in log
    assert "train_baseline" not in log and "train_resnet" not in log and not (root / "models").exists()
    md = (study / "reports/depth_study.md").read_text()
    for family in ("plain", "residual"):
        for depth in DEPTHS:
            assert f"| {family} | {depth} |" in md
    assert md.count("one seed, so no interval and no verdict") == 2 and "Rule: " in md
    for fig in ("error_vs_depth.png", "training_error_curves.png"):
        assert (study / "reports/figures" / fig).stat().st_size > 10_000
    metrics = json.loads((study / "metrics.json").read_text())
    for family in ("plain", "residual"):
        for depth in DEPTHS:
            cell = json.loads((study / f"cells/{family}_d{depth}_s1.json").read_text())
            assert cell["epochs"] == 2 and 0 <= cell["final_train_error"] <= 1
            assert metrics[family][f"depth_{depth}"]["final_train_error"]["mean"] == cell["final_train_error"]
            assert metrics[family][f"depth_{depth}"]["best_val_error"]["mean"] == cell["best_val_error"]
            curve = pd.read_csv(study / f"curves/{family}_d{depth}_s1.csv")
            assert curve["epoch"].tolist() == [1, 2] and cell["best_val_error"] == curve["val_error"].min()
            model, meta = load_model_file(study / f"models/{family}_d{depth}_s1.pt")  # weights_only
            assert meta["model"] == {"plain": "cifar_plain", "residual": "cifar_resnet"}[family]
            assert meta["model_args"]["depth"] == depth and meta["image_size"] == 16
        diff = metrics["plain_minus_residual"][f"depth_{depth}"]["final_train_error"]["mean"]
        assert diff == pytest.approx(metrics["plain"][f"depth_{depth}"]["final_train_error"]["mean"]
                                     - metrics["residual"][f"depth_{depth}"]["final_train_error"]["mean"])
    assert not list((root / ".reslab/checkpoints/depth_study").glob("*.*")), "finished cells leave no resume state"


@pytest.mark.slow
def test_mlflow_has_one_study_run_with_a_child_per_cell(study_project):
    client = MlflowClient(tracking_uri=f"sqlite:///{study_project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reslab-depth-study")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "family"]
    children = [r for r in runs if r.data.tags.get("kind") != "family"]
    assert len(parents) == 1 and len(children) == 2 * len(DEPTHS) * len(SEEDS)
    parent = parents[0]
    assert parent.info.run_name.startswith("depth study (16 px, 2 epochs")
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        family, depth, seed = r.data.tags["network"], r.data.tags["depth"], r.data.tags["seed"]
        assert r.info.run_name.startswith(f"depth {family}-{depth} seed {seed} (")
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [1, 2]
        assert {"final_train_error", "best_val_error", "test_error"} <= set(r.data.metrics)
        assert "figures/learning_curves.png" in {a.path for a in client.list_artifacts(r.info.run_id, "figures")}
        assert not [a for a in client.list_artifacts(r.info.run_id) if a.path == "model"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"depth_study.md", "metrics.json"} <= artifacts
    assert {"figures/error_vs_depth.png", "figures/training_error_curves.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "plain_d14_final_train_error_mean" in parent.data.metrics and parent.data.params["train.epochs"] == "2"
    assert parent.data.tags["verdict_depth_8"].startswith("depth 8: one seed")
    assert client.search_registered_models() == []  # no model registered, so no @champion anywhere


@pytest.mark.slow
def test_new_depths_and_seeds_train_only_their_cells(study_project):
    root = study_project
    out = run(["dvc", "repro"], root / "studies/depth")
    assert "Running stage" not in out.stdout

    def add_depth(tree):
        tree["depths"] = [8, 14, 20]

    def add_seed(tree):
        tree["seeds"] = [1, 2]

    def budget(tree):
        tree["train"]["epochs"] = 3

    def confidence(tree):
        tree["report"]["confidence"] = 0.9

    assert study_status(root, add_depth) == {"train@plain-20-1", "train@residual-20-1", "report"}
    assert study_status(root, add_seed) == {f"train@{f}-{d}-2" for f in ("plain", "residual") for d in DEPTHS} | {
        "report"}
    assert study_status(root, budget) == {f"train@{f}-{d}-1" for f in ("plain", "residual") for d in DEPTHS}
    assert study_status(root, confidence) == {"report"}


@pytest.mark.slow
def test_the_root_pipeline_leaves_the_study_alone(study_project):
    """The root's `dvc status` lists its own stages only; the study's models sit in the root's cache."""
    root = study_project
    stages = json.loads(run(["dvc", "status", "--json"], root).stdout)
    assert stages and not [name for name in stages if "depth" in name or "@plain" in name or "@residual" in name]
    assert set(stages) <= {"prepare", "evaluate"} | {f"train_{r}@{s}" for r in ("baseline", "resnet")
                                                     for s in range(10)}
    assert json.loads(run(["dvc", "status", "--json"], root / "studies/depth").stdout) == {}
    model = (root / "studies/depth/dvc.lock").read_text().split("path: models/plain_d8_s1.pt")[1].split("md5: ")[1]
    assert (root / ".dvc/cache/files/md5" / model[:2] / model[2:32]).is_file()
