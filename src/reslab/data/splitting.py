"""split stage: seeded, stratified train/val/test that keeps identical images in one split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

SPLITS = ("train", "val", "test")


def split_manifest(manifest: pd.DataFrame, *, val_fraction: float, test_fraction: float,
                   test_per_class: int | None, seed: int) -> tuple[dict[str, pd.DataFrame], dict]:
    """Stratified split by class; pixel-identical images (same `pixel_hash`) move together.

    Per class, duplicate groups are shuffled with a seeded generator and dealt to test, then val, then train,
    so the same manifest and seed always give the same split, whatever the row order of the manifest.

    Args:
        manifest: rows with path, label, pixel_hash.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for test (ignored when test_per_class is set).
        test_per_class: fixed test images per class, as the study's 50.
        seed: shuffling seed.

    Returns:
        ({split: rows}, report dict).
    """
    manifest = manifest.sort_values(["label", "path"]).reset_index(drop=True)
    group_split: dict[str, str] = {}
    assigned = np.empty(len(manifest), dtype=object)
    rng = np.random.default_rng(seed)
    per_class = {}
    for label, rows in manifest.groupby("label", sort=True):
        n = len(rows)
        n_test = test_per_class if test_per_class is not None else int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        if n_test + n_val >= n:
            raise DataError(f"class {label!r} has {n} images: too few for {n_test} test + {n_val} val images "
                            f"and at least one for training; lower split.test_per_class / split.*_fraction "
                            f"or raise filter.min_images_per_class")
        groups = sorted(set(rows["pixel_hash"]))
        order = rng.permutation(len(groups))
        sizes = rows.groupby("pixel_hash").size()
        counts = {"test": 0, "val": 0, "train": 0}
        for g in (groups[i] for i in order):
            if g not in group_split:  # a group shared with an earlier class keeps that split
                group_split[g] = "test" if counts["test"] < n_test else "val" if counts["val"] < n_val else "train"
            counts[group_split[g]] += int(sizes[g])
        assigned[rows.index] = [group_split[h] for h in rows["pixel_hash"]]
        per_class[label] = counts
    splits = {name: manifest[assigned == name].reset_index(drop=True) for name in SPLITS}
    dup_sizes = manifest.groupby("pixel_hash").size()
    report = {
        "seed": seed,
        "sizes": {name: len(df) for name, df in splits.items()},
        "per_class": per_class,
        "n_duplicate_groups": int((dup_sizes > 1).sum()),
        "n_duplicate_files": int((dup_sizes[dup_sizes > 1] - 1).sum()),  # copies beyond the first
        "n_byte_identical_pairs": int((manifest.groupby("sha256").size() - 1).clip(lower=0).sum()),
    }
    return splits, report


def write_split_outputs(splits: dict[str, pd.DataFrame], classes: list[str], report: dict, out_dir: Path,
                        report_path: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in splits.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
    (out_dir / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")


def read_split(split_dir: Path, name: str) -> pd.DataFrame:
    path = split_dir / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"{path}: split file not found; run `dvc repro split` first")
    return pd.read_csv(path)


def read_classes(split_dir: Path) -> list[str]:
    path = split_dir / "classes.json"
    if not path.is_file():
        raise DataError(f"{path}: class list not found; run `dvc repro split` first")
    return json.loads(path.read_text())
