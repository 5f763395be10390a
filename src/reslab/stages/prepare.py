"""DVC stage `prepare`: decode + resize each split once -> artifacts/prepared/{split}_{images,labels}.npy."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_params, resolve_interpolation
from ..data.prepared import prepare_split
from ..data.splitting import SPLITS, read_classes, read_split
from ..layout import Layout
from ..hardware import default_threads


def main(root: Path, params_file: Path) -> None:
    params = load_params(params_file)
    layout = Layout(root)
    classes = read_classes(layout.split_dir)
    interpolation = resolve_interpolation(params)
    t0 = time.perf_counter()
    for name in SPLITS:
        rows = read_split(layout.split_dir, name)
        rows["path"] = [str(root / p) for p in rows["path"]]
        prepare_split(rows, classes, params.data.image_size, layout.prepared_dir, name, workers=default_threads(),
                      interpolation=interpolation)
    (layout.prepared_dir / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    print(f"prepare: decoded {sum(len(read_split(layout.split_dir, n)) for n in SPLITS)} images at "
          f"{params.data.image_size}px ({interpolation}) in {time.perf_counter() - t0:.1f}s -> "
          f"{layout.prepared_dir}")
