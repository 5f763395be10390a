"""The kfold design (params replicates.design: kfold, the default): fold assignment, the seeds/folds rule, DVC
reruns only new replicates, and nothing but evaluation reads a replicate's test split, in both designs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import copy_project, make_project, run, write_params
from reslab.comparison import Replicate, choose_champion
from reslab.config import ConfigError, load_params
from reslab.config import write_params as set_keys
from reslab.data.prepared import replicate_rows
from reslab.data.filtering import difference_hash
from reslab.data.splitting import duplicate_groups, kfold_folds, kfold_replicates
from reslab.layout import Layout


def manifest(n_per_class=(30, 21, 12), dup_every=5) -> pd.DataFrame:
    """Rows of three classes; every `dup_every`-th image is a pixel copy of the one before (a duplicate group)."""
    rows = []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            key = i - 1 if i % dup_every == 0 and i else i
            rows.append({"path": f"data/c{c}/{i:03d}.jpg", "label": f"c{c}", "pixel_hash": f"h{c}-{key}",
                         "sha256": f"s{c}-{key}"})
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)  # row order must not matter


def test_folds_are_stratified_keep_groups_whole_and_ignore_row_order():
    m = manifest()
    folds = kfold_folds(m, folds=3, repeat=0, seed=42)
    assert set(folds) == {0, 1, 2}
    assert m.assign(fold=folds).groupby("pixel_hash")["fold"].nunique().max() == 1  # groups whole
    for _, rows in m.assign(fold=folds).groupby("label"):
        counts = np.bincount(rows["fold"], minlength=3)
        assert counts.max() - counts.min() <= 2  # balanced per class, up to one duplicate group
    shuffled = m.sample(frac=1, random_state=1)
    assert (kfold_folds(shuffled, folds=3, repeat=0, seed=42) == pd.Series(folds, m.index)[shuffled.index]).all()
    assert not (kfold_folds(m, folds=3, repeat=1, seed=42) == folds).all()  # a new repeat is a new partition


def test_adding_repeats_leaves_existing_replicates_unchanged():
    m = manifest()
    _, three, _ = kfold_replicates(m, seeds=(1, 2, 3), folds=3, val_fraction=0.2, seed=42)
    images, six, report = kfold_replicates(m, seeds=(1, 2, 3, 4, 5, 6), folds=3, val_fraction=0.2, seed=42)
    for s in (1, 2, 3):
        pd.testing.assert_frame_equal(three[s], six[s])
    assert report["repeats"] == 2 and len(images) == len(m)
    for r, seeds in enumerate([(1, 2, 3), (4, 5, 6)]):  # each repeat tests every image exactly once
        tested = pd.concat([six[s][six[s]["split"] == "test"] for s in seeds])
        assert sorted(tested["row"]) == list(range(len(m)))
    t = six[1]
    assert set(t.loc[t["split"] == "test", "fold"]) == {0} and set(t.loc[t["split"] != "test", "fold"]) == {1, 2}
    val = t[t["split"] == "val"]
    assert 0.15 < len(val) / (t["split"] != "test").sum() < 0.3  # val_fraction of the training folds (rounded
    # per class, duplicate pairs dealt whole)


def test_near_duplicates_join_their_group_and_stay_in_one_fold():
    from PIL import Image

    rng = np.random.default_rng(0)
    base = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(base)
    near = Image.fromarray(np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)).resize((48, 48))  # brighter, smaller
    other = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    h = [int(difference_hash(x), 16) for x in (img, near, other)]
    assert bin(h[0] ^ h[1]).count("1") <= 4 < bin(h[0] ^ h[2]).count("1")
    m = manifest()
    m["dhash"] = [f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(len(m))]  # spread over 64 bits
    a, b = m.index[(m["label"] == "c0") & ~m["pixel_hash"].duplicated(keep=False)][:2]
    m.loc[b, "dhash"] = f"{int(m.loc[a, 'dhash'], 16) ^ 0b101:016x}"  # 2 bits apart: a near-duplicate pair
    groups = duplicate_groups(m, 4)
    assert groups[a] == groups[b] and groups.nunique() == m["pixel_hash"].nunique() - 1
    assert (duplicate_groups(m, -1) == m["pixel_hash"]).all()  # -1: pixel identity only
    folds = kfold_folds(m.assign(group=groups), folds=3, repeat=0, seed=42)
    assert folds[m.index.get_loc(a)] == folds[m.index.get_loc(b)]


@pytest.mark.parametrize("seeds, ok", [([1, 2, 3], True), ([1, 2, 3, 4, 5, 6], True), ([1, 2, 3, 4], False),
                                       ([1, 2], False)])
def test_kfold_needs_a_multiple_of_folds_seeds(tmp_path, seeds, ok):
    path = tmp_path / "params.yaml"
    write_params(path, {"replicates.seeds": seeds})
    if ok:
        assert load_params(path).replicates.repeats == len(seeds) // 3
        return
    with pytest.raises(ConfigError, match=r"replicates\.seeds: .*a multiple of replicates\.folds \(3\): 3, 6, 9"):
        load_params(path)
    write_params(path, {"replicates.seeds": seeds, "replicates.design": "holdout"})
    assert load_params(path).replicates.repeats == 1  # holdout takes any number of seeds


def test_folds_must_be_at_least_two(tmp_path):
    write_params(tmp_path / "params.yaml", {"replicates.folds": 1})
    with pytest.raises(ConfigError, match=r"replicates\.folds: 1 .*>= 2"):
        load_params(tmp_path / "params.yaml")


def test_champion_reads_no_test_predictions():
    rng = np.random.default_rng(0)
    train = [{"best_val_accuracy": a, "best_val_loss": 1 - a} for a in (0.5, 0.7, 0.6, 0.4)]

    def reps(logits):
        return {role: [Replicate(role, s, role, f"{role}{s}", "uri", train[2 * k + s - 1], logits(), None)
                       for s in (1, 2)] for k, role in enumerate(("baseline", "resnet"))}

    assert choose_champion(reps(lambda: rng.normal(size=(9, 3)))) == \
        choose_champion(reps(lambda: np.zeros((9, 3))))


def poison_test_rows(root, design: str, seed: int) -> int:
    """Replace the replicate's test images and labels in the prepared arrays by noise; returns how many."""
    prepared = Layout(root).prepared_dir
    if design == "kfold":
        rows, name = replicate_rows(Layout(root).replicate_splits, seed, "test"), "all"
    else:
        rows, name = None, "test"
    images = np.load(prepared / f"{name}_images.npy", mmap_mode="r+")
    labels = np.load(prepared / f"{name}_labels.npy")
    rows = np.arange(len(labels)) if rows is None else rows
    rng = np.random.default_rng(7)
    images[rows] = rng.integers(0, 256, images[rows].shape, dtype=np.uint8)
    images.flush()
    labels[rows] = rng.integers(0, labels.max() + 1, len(rows))
    np.save(prepared / f"{name}_labels.npy", labels)
    return len(rows)


@pytest.mark.slow  # trains and tunes twice per design
@pytest.mark.parametrize("design", ["kfold", "holdout"])
def test_training_and_tuning_are_blind_to_the_test_rows(tiny_images, tmp_path, design):
    """Training (with early stopping) and tuning give bit-identical results when the replicate's test rows of the
    prepared arrays are noise: they never read them."""
    base = make_project(tmp_path / "base", tiny_images, {"replicates.design": design, "train.patience": 1,
                                                         "tune.n_trials": 1}, git=False)
    for stage in ("filter", "split", "prepare"):
        run(["reslab", stage], base)
    results = []
    for name in ("clean", "poisoned"):
        root = copy_project(base, tmp_path / name)
        if name == "poisoned":
            assert poison_test_rows(root, design, 1) > 0
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / name}.db"}
        run(["reslab", "train", "baseline", "--seed", "1", "--no-progress"], root, env=env)
        run(["reslab", "tune", "--role", "baseline", "--no-progress"], root, env=env)
        weights = torch.load(root / "models/baseline/seed_1.pt", weights_only=True)
        metrics = json.loads((root / "metrics/train_baseline/seed_1.json").read_text())
        history = pd.read_csv(root / "plots/train_baseline/seed_1.csv")
        import optuna
        from reslab.tuning import storage
        trial = optuna.load_study(study_name="reslab-baseline", storage=storage.open_storage(None, root)).trials[0]
        results.append((weights, metrics, history,
                        (trial.value, trial.intermediate_values)))
    (w0, m0, h0, t0), (w1, m1, h1, t1) = results
    state0, state1 = (w.get("state_dict", w) for w in (w0, w1))
    assert state0.keys() == state1.keys()
    assert all(torch.equal(state0[k], state1[k]) for k in state0), "training read the test rows"
    assert m0 == m1
    pd.testing.assert_frame_equal(h0, h1)
    assert t0 == t1, "tuning read the test rows"


@pytest.mark.slow  # the whole tiny pipeline, then one more repeat
def test_kfold_pipeline_end_to_end_and_a_new_repeat_trains_only_its_replicates(tiny_images, tmp_path):
    root = make_project(tmp_path / "proj", tiny_images)  # TINY_PARAMS: kfold, 2 folds, seeds [1, 2]
    run(["dvc", "add", "-q", "data"], root)
    run(["reslab", "repro", "--jobs", "2"], root, timeout=900)
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    n_images = len(pd.read_csv(root / "artifacts/split/images.csv"))
    assert ev["design"] == "kfold" and ev["folds"] == 2 and ev["repeats"] == 1 and ev["n_test"] == n_images
    assert ev["n_replicates"] == 2
    predictions = pd.read_csv(root / "plots/evaluate/predictions.csv")
    for role in ("baseline", "resnet"):  # every image predicted once per repeat and model
        assert sorted(predictions.loc[predictions["role"] == role, "image"]) == list(range(n_images))
    assert "2-fold cross-validation" in (root / "reports/comparison.md").read_text()

    set_keys(root / "params.yaml", {"replicates.seeds": [1, 2, 3, 4]})  # a second repeat
    status = run(["dvc", "status"], root).stdout
    assert "train_baseline@3:" in status and "train_baseline@1:" not in status and "\nprepare:" not in status
    out = run(["dvc", "repro"], root, timeout=900).stdout
    assert "Stage 'prepare' didn't change" in out
    for s in (1, 2):
        assert f"Stage 'train_baseline@{s}' didn't change" in out and f"Stage 'train_resnet@{s}' didn't change" in out
    for s in (3, 4):
        assert f"Running stage 'train_baseline@{s}'" in out and f"Running stage 'train_resnet@{s}'" in out
    assert json.loads((root / "metrics/evaluate.json").read_text())["repeats"] == 2
    set_keys(root / "params.yaml", {"replicates.seeds": [1, 2]})  # removing the repeat retrains nothing
    assert set(json.loads(run(["dvc", "status", "--json"], root).stdout)) == {"split", "evaluate"}
