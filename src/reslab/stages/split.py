"""DVC stage `split`: manifest -> artifacts/split/; reports/split.json.

holdout: artifacts/split/{train,val,test}.csv (one split for every replicate); kfold: artifacts/split/images.csv
(every kept image) and replicate 0's split as {train,val,test}.csv (the depth study's fixed split); both:
artifacts/split/classes.json and artifacts/replicates/seed_<seed>.csv (each replicate's train/val/test rows, what
its training stage depends on).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import load_params
from ..data.errors import DataError
from ..data.splitting import (GROUP, IMAGES_FILE, duplicate_groups, holdout_replicates, kfold_replicates,
                              split_manifest, write_replicate_splits, write_split_outputs)
from ..layout import Layout


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    if not layout.manifest.is_file():
        raise DataError(f"{layout.manifest}: manifest not found; run `dvc repro filter` first")
    manifest = pd.read_csv(layout.manifest, dtype={"dhash": str})
    cfg, reps = params.split, params.replicates
    manifest[GROUP] = duplicate_groups(manifest, cfg.near_duplicate_distance)
    classes = sorted(manifest["label"].unique().tolist())
    if reps.design == "kfold":
        images, replicates, report = kfold_replicates(manifest, seeds=reps.seeds, folds=reps.folds,
                                                      val_fraction=cfg.val_fraction, seed=params.seed)
        # replicate 0's split as {train,val,test}.csv too: one fixed split for readers that need one (the depth
        # study); it depends on (seed, repeat 0, fold 0) only, so adding repeats leaves artifacts/split unchanged
        rows = replicates[reps.seeds[0]]
        fixed = {name: manifest.set_index("path").loc[rows.loc[rows["split"] == name, "path"]].reset_index()
                 for name in ("train", "val", "test")}
        report["near_duplicate_distance"] = cfg.near_duplicate_distance
        write_split_outputs(fixed, classes, report, layout.split_dir, layout.reports / "split.json")
        images.to_csv(layout.split_dir / IMAGES_FILE, index=False)
        write_replicate_splits(replicates, layout.replicate_splits)
        first = report["replicates"][str(reps.seeds[0])]
        print(f"split: {len(images)} images over {len(classes)} classes, {reps.repeats} repeat(s) x {reps.folds} "
              f"folds; replicate seed {reps.seeds[0]}: train {first['train']}, val {first['val']}, test "
              f"{first['test']}; {report['n_duplicate_files']} duplicate files in {report['n_duplicate_groups']} "
              f"groups kept within one fold")
        return report
    splits, report = split_manifest(manifest, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                    test_per_class=cfg.test_per_class, seed=params.seed)
    report = {"design": "holdout", **report, "near_duplicate_distance": cfg.near_duplicate_distance}
    write_split_outputs(splits, classes, report, layout.split_dir, layout.reports / "split.json")
    write_replicate_splits(holdout_replicates(splits, reps.seeds), layout.replicate_splits)
    sizes = report["sizes"]
    print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} images over {len(classes)} "
          f"classes; {report['n_duplicate_files']} duplicate files in {report['n_duplicate_groups']} groups kept "
          f"within one split")
    return report
