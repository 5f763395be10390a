"""split stage: seeded, stratified, identical images never in two splits."""
import numpy as np
import pandas as pd
import pytest

from reslab.data.errors import DataError
from reslab.data.splitting import split_manifest


def manifest(n_per_class=(40, 25), dup_groups=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            rows.append({"path": f"data/c{c}/{i}.jpg", "label": f"c{c}", "sha256": f"s{c}-{i}",
                         "pixel_hash": f"p{c}-{i}"})
    df = pd.DataFrame(rows)
    # duplicate groups: several files share a pixel hash (some byte-identical)
    members = rng.permutation(n_per_class[0])[: 3 * dup_groups].reshape(dup_groups, 3)  # disjoint groups
    for g, idx in enumerate(members):
        df.loc[idx, "pixel_hash"] = f"dup{g}"
        df.loc[idx[:2], "sha256"] = f"dupbytes{g}"
    return df


def split(df, **kw):
    args = dict(val_fraction=0.2, test_fraction=0.2, test_per_class=None, seed=1) | kw
    return split_manifest(df, **args)


def test_same_params_same_split_whatever_the_row_order():
    df = manifest()
    a, _ = split(df)
    b, _ = split(df.sample(frac=1, random_state=3))
    for name in a:
        assert a[name]["path"].tolist() == b[name]["path"].tolist()


def test_another_seed_gives_another_split():
    df = manifest()
    a, _ = split(df)
    b, _ = split(df, seed=2)
    assert a["test"]["path"].tolist() != b["test"]["path"].tolist()


def test_identical_images_never_cross_splits():
    df = manifest()
    parts, report = split(df)
    where = {}
    for name, rows in parts.items():
        for h in rows["pixel_hash"]:
            where.setdefault(h, set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    assert report["n_duplicate_groups"] == 6
    assert report["n_duplicate_files"] == sum(len(g) - 1 for _, g in df.groupby("pixel_hash") if len(g) > 1)
    assert sum(report["sizes"].values()) == len(df)


def test_stratified_fractions_and_fixed_test_count():
    df = manifest(dup_groups=0)
    parts, report = split(df)
    assert report["per_class"]["c0"] == {"test": 8, "val": 8, "train": 24}
    assert report["per_class"]["c1"] == {"test": 5, "val": 5, "train": 15}
    parts, report = split(df, test_per_class=10)
    assert (parts["test"].groupby("label").size() == 10).all()


def test_a_class_too_small_for_the_split_is_a_clear_error():
    with pytest.raises(DataError, match="class 'c1' has 25 images: too few for 20 test"):
        split(manifest(dup_groups=0), test_per_class=20)


def test_a_byte_duplicate_under_two_classes_stays_in_one_split():
    # The same file under two class folders (a label conflict the filter stage reports): the splitter keeps
    # both rows, and puts them in the split drawn for the first class so the bytes never cross splits.
    df = manifest(dup_groups=0)
    twin = {"label": "c1", "path": "data/c1/twin.jpg", "sha256": "s0-7", "pixel_hash": "p0-7"}
    df = pd.concat([df, pd.DataFrame([twin])], ignore_index=True)
    homes_by_seed = []
    for seed in range(12):
        parts, report = split(df, seed=seed)
        homes = [name for name, rows in parts.items() if "p0-7" in set(rows["pixel_hash"])]
        assert len(homes) == 1
        rows = parts[homes[0]]
        assert sorted(rows.loc[rows["pixel_hash"] == "p0-7", "label"]) == ["c0", "c1"]
        homes_by_seed.append(homes[0])
        assert report["n_byte_identical_pairs"] == 1 and report["n_duplicate_groups"] == 1
        assert report["per_class"]["c1"] == {k: int((parts[k]["label"] == "c1").sum()) for k in parts}
        shuffled, _ = split(df.sample(frac=1, random_state=seed), seed=seed)
        assert all(parts[k]["path"].tolist() == shuffled[k]["path"].tolist() for k in parts)
    assert {"test", "train"} <= set(homes_by_seed)  # the seeds exercise both a held-out and the train split
