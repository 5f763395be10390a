"""DVC stage `prepare`: decode + resize every image once -> artifacts/prepared/.

holdout: {train,val,test}_{images,labels}.npy, one array per split; kfold: all_{images,labels}.npy in the row order
of artifacts/split/images.csv, from which each replicate selects its rows (`data.prepared.load_replicate`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ..config import load_params, resolve_interpolation
from ..data.errors import DataError
from ..data.prepared import ALL, prepare_split
from ..data.splitting import IMAGES_FILE, SPLITS, read_classes, read_split
from ..layout import Layout
from ..hardware import default_threads


def main(root: Path, params_file: Path) -> None:
    params = load_params(params_file)
    layout = Layout(root)
    classes = read_classes(layout.split_dir)
    interpolation = resolve_interpolation(params)
    t0 = time.perf_counter()
    if params.replicates.design == "kfold":
        images = layout.split_dir / IMAGES_FILE
        if not images.is_file():
            raise DataError(f"{images}: not found; run `dvc repro split` first (replicates.design: kfold)")
        tables = {ALL: pd.read_csv(images)}
    else:
        tables = {name: read_split(layout.split_dir, name) for name in SPLITS}
    for name, rows in tables.items():
        rows["path"] = [str(root / p) for p in rows["path"]]
        prepare_split(rows, classes, params.data.image_size, layout.prepared_dir, name, workers=default_threads(),
                      interpolation=interpolation)
    (layout.prepared_dir / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    print(f"prepare: decoded {sum(map(len, tables.values()))} images at {params.data.image_size}px "
          f"({interpolation}) in {time.perf_counter() - t0:.1f}s -> {layout.prepared_dir}")
