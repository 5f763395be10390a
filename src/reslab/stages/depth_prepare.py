"""Stage `prepare` of studies/depth/dvc.yaml: the main pipeline's train/val/test split at the study's image size,
into studies/depth/prepared/ (as the main `prepare` stage does, with its own size)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..data.prepared import prepare_split
from ..data.splitting import SPLITS, read_classes, read_split
from ..depth_study.layout import StudyLayout
from ..depth_study.params import load_study_params
from ..hardware import default_threads


def main(root: Path, params_file: Path) -> None:
    """Stage `prepare`: the main pipeline's train/val/test split (artifacts/split) resized to data.image_size."""
    p = load_study_params(params_file)
    layout = StudyLayout(root)
    classes = read_classes(layout.main.split_dir)
    t0 = time.perf_counter()
    for name in SPLITS:
        rows = read_split(layout.main.split_dir, name)
        rows["path"] = [str(root / path) for path in rows["path"]]  # the split's paths are relative to the root
        prepare_split(rows, classes, p.data.image_size, layout.prepared, name, workers=default_threads(),
                      interpolation=p.data.interpolation)
    (layout.prepared / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    print(f"depth study prepare: {p.data.image_size} px ({p.data.interpolation}) in {time.perf_counter() - t0:.1f}s "
          f"-> {layout.prepared}")
