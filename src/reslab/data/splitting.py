"""split stage: seeded, stratified train/val/test that keeps identical images in one split.

Two designs (params `replicates.design`): holdout, one fixed train/val/test split shared by every replicate
(`split_manifest`); kfold, a repeated stratified k-fold where replicate j is fold j % k of repeat j // k
(`kfold_folds`, `kfold_replicates`): its test split is its fold, its train/val come from the other folds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

SPLITS = ("train", "val", "test")
GROUP = "group"  # the duplicate group a split keeps whole: `duplicate_groups`, or pixel_hash where it is absent
IMAGES_FILE = "images.csv"  # kfold: every kept image, in the row order of prepare's all_{images,labels}.npy


def with_groups(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with a `group` column: its own, or pixel-identical images (same pixel_hash) as one group."""
    return manifest if GROUP in manifest else manifest.assign(**{GROUP: manifest["pixel_hash"]})


def duplicate_groups(manifest: pd.DataFrame, max_distance: int) -> pd.Series:
    """Duplicate groups: pixel-identical images (same pixel_hash) joined with near-identical ones, whose 64-bit
    dHashes (`filtering.difference_hash`) differ in at most `max_distance` bits (connected components).

    Args:
        manifest: rows with pixel_hash and dhash (16 hex digits).
        max_distance: Hamming distance at most which two images are near-identical; 0 joins equal dHashes only,
            a negative value none (pixel identity only).

    Returns:
        The group key of every row (the smallest pixel_hash of its group), aligned with the manifest's index.
    """
    keys = sorted(set(manifest["pixel_hash"]))
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if max_distance >= 0 and "dhash" in manifest:
        first = manifest.drop_duplicates("pixel_hash")
        ids = np.searchsorted(keys, first["pixel_hash"].to_numpy())
        hashes = np.array([int(h, 16) for h in first["dhash"]], dtype=np.uint64)
        for i in range(len(hashes) - 1):  # one row of the distance matrix at a time: memory O(N)
            far = np.unpackbits((hashes[i] ^ hashes[i + 1:]).view(np.uint8).reshape(-1, 8), axis=1).sum(1)
            for j in np.flatnonzero(far <= max_distance) + i + 1:
                a, b = root(ids[i]), root(ids[j])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return manifest["pixel_hash"].map({k: keys[root(i)] for i, k in enumerate(keys)})


def split_manifest(manifest: pd.DataFrame, *, val_fraction: float, test_fraction: float,
                   test_per_class: int | None, seed: int | list[int]) -> tuple[dict[str, pd.DataFrame], dict]:
    """Stratified split by class; pixel-identical images (same `pixel_hash`) move together.

    Per class, duplicate groups are shuffled with a seeded generator and dealt to test, then val, then train,
    so the same manifest and seed always give the same split, whatever the row order of the manifest.

    Args:
        manifest: rows with path, label, pixel_hash.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for test (ignored when test_per_class is set).
        test_per_class: fixed test images per class, as the study's 50.
        seed: shuffling seed (an int, or a list of ints: numpy SeedSequence entropy).

    Returns:
        ({split: rows}, report dict).
    """
    manifest = with_groups(manifest).sort_values(["label", "path"]).reset_index(drop=True)
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
        groups = sorted(set(rows[GROUP]))
        order = rng.permutation(len(groups))
        sizes = rows.groupby(GROUP).size()
        counts = {"test": 0, "val": 0, "train": 0}
        for g in (groups[i] for i in order):
            if g not in group_split:  # a group shared with an earlier class keeps that split
                group_split[g] = "test" if counts["test"] < n_test else "val" if counts["val"] < n_val else "train"
            counts[group_split[g]] += int(sizes[g])
        assigned[rows.index] = [group_split[h] for h in rows[GROUP]]
        per_class[label] = counts
    splits = {name: manifest[assigned == name].reset_index(drop=True) for name in SPLITS}
    dup_sizes = manifest.groupby(GROUP).size()
    report = {
        "seed": seed,
        "sizes": {name: len(df) for name, df in splits.items()},
        "per_class": per_class,
        "n_duplicate_groups": int((dup_sizes > 1).sum()),
        "n_duplicate_files": int((dup_sizes[dup_sizes > 1] - 1).sum()),  # copies beyond the first
        "n_byte_identical_pairs": int((manifest.groupby("sha256").size() - 1).clip(lower=0).sum()),
    }
    return splits, report


def kfold_folds(manifest: pd.DataFrame, *, folds: int, repeat: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every row in one repeat of a stratified k-fold that keeps duplicate groups whole.

    Per class, the duplicate groups (`group`: pixel-identical and near-identical images) are shuffled by a generator seeded with (seed, repeat) and
    each is dealt to the fold holding the fewest images of that class so far, so folds are stratified and balanced;
    a group shared with an earlier class keeps its fold. The assignment depends only on (manifest, seed, repeat):
    adding repeats never changes an existing one.

    Args:
        manifest: rows with label and pixel_hash, in any order.
        folds: k >= 2.
        repeat: index of the repeat (0, 1, ...).
        seed: params `seed`.

    Returns:
        (len(manifest),) int array of fold indices, aligned with the manifest's rows.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    rng = np.random.default_rng([seed, repeat])
    group_fold: dict[str, int] = {}
    manifest = with_groups(manifest)
    ordered = manifest.sort_values(["label", "path"])
    for label, rows in ordered.groupby("label", sort=True):
        if len(rows) < folds:
            raise DataError(f"class {label!r} has {len(rows)} images: too few for {folds} folds; lower "
                            f"replicates.folds or raise filter.min_images_per_class")
        sizes = rows.groupby(GROUP).size()
        groups = sorted(sizes.index)
        counts = np.zeros(folds, dtype=int)
        for g in groups:  # groups already dealt (shared with an earlier class) count where they are
            if g in group_fold:
                counts[group_fold[g]] += int(sizes[g])
        for i in rng.permutation(len(groups)):
            g = groups[i]
            if g not in group_fold:
                group_fold[g] = int(np.argmin(counts))
                counts[group_fold[g]] += int(sizes[g])
    return manifest[GROUP].map(group_fold).to_numpy(int)


def kfold_replicates(manifest: pd.DataFrame, *, seeds: tuple[int, ...], folds: int, val_fraction: float,
                     seed: int) -> tuple[pd.DataFrame, dict[int, pd.DataFrame], dict]:
    """Every replicate's train/val/test of a repeated stratified k-fold: replicate j (training seed seeds[j]) is
    fold j % folds of repeat j // folds; its val is `val_fraction` of each class of the other folds (duplicate
    groups whole, seeded by (seed, repeat, fold)), the rest its train.

    Args:
        manifest: rows with path, label, pixel_hash.
        seeds: the replicates' training seeds, a multiple of `folds` of them.
        folds: k.
        val_fraction: share of each class of the training folds for validation.
        seed: params `seed` (fold assignment and val draw).

    Returns:
        (images: every row sorted by label and path, the order prepare decodes them in;
         {training seed: rows (row = index into images, path, label, fold, split)}; report dict).
    """
    if len(seeds) % folds:
        raise ValueError(f"{len(seeds)} seeds is not a multiple of {folds} folds")
    images = with_groups(manifest).sort_values(["label", "path"]).reset_index(drop=True)
    replicates, fold_of, per_replicate = {}, {}, {}
    for j, s in enumerate(seeds):
        repeat, fold = divmod(j, folds)
        if repeat not in fold_of:
            fold_of[repeat] = kfold_folds(images, folds=folds, repeat=repeat, seed=seed)
        test = fold_of[repeat] == fold
        rest, _ = split_manifest(images[~test], val_fraction=val_fraction, test_fraction=0.0, test_per_class=0,
                                 seed=[seed, repeat, fold])
        split = pd.Series("test", index=images.index)
        split[images["path"].isin(rest["val"]["path"])] = "val"
        split[images["path"].isin(rest["train"]["path"])] = "train"
        replicates[s] = pd.DataFrame({"row": images.index, "path": images["path"], "label": images["label"],
                                      "fold": fold_of[repeat], "split": split})
        per_replicate[str(s)] = {"repeat": repeat, "fold": fold, **split.value_counts().reindex(list(SPLITS),
                                                                                             fill_value=0).to_dict()}
    dup_sizes = images.groupby(GROUP).size()
    report = {"design": "kfold", "seed": seed, "folds": folds, "repeats": len(seeds) // folds,
              "sizes": {"images": len(images)}, "replicates": per_replicate,
              "n_duplicate_groups": int((dup_sizes > 1).sum()),
              "n_duplicate_files": int((dup_sizes[dup_sizes > 1] - 1).sum()),
              "n_byte_identical_pairs": int((images.groupby("sha256").size() - 1).clip(lower=0).sum())}
    return images, replicates, report


def holdout_replicates(splits: dict[str, pd.DataFrame], seeds: tuple[int, ...]) -> dict[int, pd.DataFrame]:
    """holdout: every replicate's table (row = index within its split's array, path, label, split), one split for
    all of them, so each training stage depends on a file of its own in both designs."""
    table = pd.concat([pd.DataFrame({"row": range(len(df)), "path": df["path"], "label": df["label"], "split": name})
                       for name, df in splits.items()], ignore_index=True)
    return {s: table for s in seeds}


def write_replicate_splits(replicates: dict[int, pd.DataFrame], replicates_dir: Path) -> None:
    """artifacts/replicates/seed_<seed>.csv, one per replicate (a folder of its own, so that adding seeds leaves
    artifacts/split, and what prepare decodes, unchanged)."""
    replicates_dir.mkdir(parents=True, exist_ok=True)
    for s, rows in replicates.items():
        rows.to_csv(replicate_split_file(replicates_dir, s), index=False)


def replicate_split_file(replicates_dir: Path, seed: int) -> Path:
    """The split file of the replicate trained with `seed`."""
    return replicates_dir / f"seed_{seed}.csv"


def read_replicate_split(replicates_dir: Path, seed: int) -> pd.DataFrame:
    """The rows (row, path, label, split; kfold: fold) of the replicate trained with `seed`."""
    path = replicate_split_file(replicates_dir, seed)
    if not path.is_file():
        raise DataError(f"{path}: no split for replicate seed {seed}; run `dvc repro split` (is {seed} in "
                        f"replicates.seeds?)")
    return pd.read_csv(path)


def write_split_outputs(splits: dict[str, pd.DataFrame], classes: list[str], report: dict, out_dir: Path,
                        report_path: Path) -> None:
    """artifacts/split/{<split>.csv for each of `splits`, classes.json}, reports/split.json."""
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
