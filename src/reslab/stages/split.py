"""DVC stage `split`: manifest -> artifacts/split/{train,val,test}.csv, classes.json; reports/split.json."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import load_params
from ..data.errors import DataError
from ..data.splitting import split_manifest, write_split_outputs
from ..layout import Layout


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    if not layout.manifest.is_file():
        raise DataError(f"{layout.manifest}: manifest not found; run `dvc repro filter` first")
    manifest = pd.read_csv(layout.manifest)
    cfg = params.split
    splits, report = split_manifest(manifest, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                    test_per_class=cfg.test_per_class, seed=params.seed)
    classes = sorted(manifest["label"].unique().tolist())
    write_split_outputs(splits, classes, report, layout.split_dir, layout.reports / "split.json")
    sizes = report["sizes"]
    print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} images over {len(classes)} "
          f"classes; {report['n_duplicate_files']} duplicate files in {report['n_duplicate_groups']} groups kept "
          f"within one split")
    return report
