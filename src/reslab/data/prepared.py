"""prepare stage: decode and resize every image of every split exactly once into a uint8 array on disk.

Training, evaluation and sweeps read these memory-mapped arrays instead of JPEGs, so no image is decoded twice
in a pipeline run, and a data set larger than RAM still trains (the OS pages rows in as batches ask for them).
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .errors import DataError
from .images import to_rgb
from .splitting import read_replicate_split

RESAMPLING = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}  # config.INTERPOLATIONS -> Pillow's filter
ALL = "all"  # kfold: the one prepared array of every image, each replicate's splits select rows of it


def load_resized(path: str, image_size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Decode one image as the filter did (`images.to_rgb`: upright, 8-bit RGB) and resize it to
    (image_size, image_size, 3) uint8, ignoring aspect (the study).

    Args:
        path: an image file (or a binary file object).
        image_size: the side in px.
        interpolation: bilinear (reslab's: a JPEG is first decoded at the smallest scale that covers the size), or
            nearest, as the study's `flow_from_directory(interpolation="nearest")`: Keras' `load_img` decodes the
            full image and resizes it with Pillow's NEAREST.
    """
    if interpolation not in RESAMPLING:
        raise ValueError(f"interpolation {interpolation!r}: accepted {' | '.join(RESAMPLING)}")
    with Image.open(path) as img:
        # bilinear, JPEG: libjpeg decodes at a reduced scale when it can; EXIF orientation is applied before the resize
        draft = (image_size, image_size) if interpolation == "bilinear" else None
        rgb, _ = to_rgb(img, draft_size=draft)
        resized = rgb.resize((image_size, image_size), RESAMPLING[interpolation])
    return np.asarray(resized, dtype=np.uint8)


def _fill_rows(args: tuple[str, list[str], int, int, str]) -> None:
    """Worker: decode `paths` into rows [start, start + len(paths)) of the array at `array_path`."""
    array_path, paths, start, image_size, interpolation = args
    out = np.load(array_path, mmap_mode="r+")
    for i, p in enumerate(paths):
        out[start + i] = load_resized(p, image_size, interpolation)
    out.flush()


def prepare_split(rows: pd.DataFrame, classes: list[str], image_size: int, out_dir: Path, name: str,
                  workers: int = 1, interpolation: str = "bilinear") -> Path:
    """Write `{name}_images.npy` (N, S, S, 3) uint8 and `{name}_labels.npy` (N,) int64 into out_dir, each image
    resized by `load_resized` with `interpolation` (bilinear | nearest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(rows["label"]) - set(index))
    if unknown:
        raise DataError(f"split {name}: labels {unknown} are not in classes.json; rerun `dvc repro split`")
    images_path = out_dir / f"{name}_images.npy"
    tmp_path = out_dir / f".{name}_images.tmp.npy"
    images = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8,
                                       shape=(len(rows), image_size, image_size, 3))
    del images  # workers open it themselves
    paths = rows["path"].tolist()
    chunk = 256
    jobs = [(str(tmp_path), paths[i:i + chunk], i, image_size, interpolation) for i in range(0, len(paths), chunk)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_fill_rows, jobs))
    else:
        for job in jobs:
            _fill_rows(job)
    tmp_path.replace(images_path)  # a killed stage never leaves a half-written array under the real name
    np.save(out_dir / f"{name}_labels.npy", rows["label"].map(index).to_numpy(np.int64))
    return images_path


@dataclass
class ImageArrays:
    """One prepared split: images (N, S, S, 3) uint8, memory-mapped; labels (N,) int64; class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def load_prepared(prepared_dir: Path, name: str) -> ImageArrays:
    """Open a prepared split read-only (memory-mapped)."""
    images_path = prepared_dir / f"{name}_images.npy"
    labels_path = prepared_dir / f"{name}_labels.npy"
    classes_path = prepared_dir / "classes.json"
    for p in (images_path, labels_path, classes_path):
        if not p.is_file():
            raise DataError(f"{p}: prepared data not found; run `dvc repro prepare` first")
    images = np.load(images_path, mmap_mode="r")
    labels = np.load(labels_path)
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {len(labels)} labels; rerun `dvc repro prepare`")
    return ImageArrays(images, labels, json.loads(classes_path.read_text()))


def load_replicate(prepared_dir: Path, replicates_dir: Path, design: str, seed: int, name: str) -> ImageArrays:
    """One split (train | val | test) of the replicate trained with `seed`.

    holdout: the prepared split itself (the same for every replicate); kfold: the replicate's rows of the `all`
    array, copied into memory in the row order of artifacts/split/images.csv (label, then path).

    Args:
        prepared_dir: artifacts/prepared.
        replicates_dir: artifacts/replicates (seed_<seed>.csv).
        design: replicates.design, kfold | holdout.
        seed: the replicate's training seed.
        name: train | val | test.
    """
    if design == "holdout":
        return load_prepared(prepared_dir, name)
    whole = load_prepared(prepared_dir, ALL)
    rows = replicate_rows(replicates_dir, seed, name)
    if len(rows) and rows.max() >= len(whole):
        raise DataError(f"{prepared_dir}: {len(whole)} prepared images, but replicate seed {seed} names row "
                        f"{rows.max()}; rerun `dvc repro prepare`")
    return ImageArrays(np.asarray(whole.images[rows]), whole.labels[rows], whole.classes)


def load_train_val(prepared_dir: Path, replicates_dir: Path, design: str,
                   seed: int) -> tuple[ImageArrays, ImageArrays]:
    """The train and val splits of the replicate trained with `seed` (what training and tuning read: never its
    test split). Args as `load_replicate`'s."""
    return (load_replicate(prepared_dir, replicates_dir, design, seed, "train"),
            load_replicate(prepared_dir, replicates_dir, design, seed, "val"))


def replicate_rows(replicates_dir: Path, seed: int, name: str) -> np.ndarray:
    """kfold: the indices into the `all` array of one split of the replicate trained with `seed`, ascending."""
    table = read_replicate_split(replicates_dir, seed)
    return np.sort(table.loc[table["split"] == name, "row"].to_numpy(np.int64))
