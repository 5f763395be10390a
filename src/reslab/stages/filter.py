"""DVC stage `filter`: data/ -> artifacts/filter/manifest.csv + reports/data_report.{json,md}."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import load_params
from ..data.filtering import filter_dataset, write_filter_outputs
from ..hardware import default_threads
from ..layout import Layout


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    dvc_cache = root / ".dvc" / "cache"  # `dvc checkout` with cache.type symlink links data/ files into it
    manifest, report = filter_dataset(layout.data, params.filter.min_images_per_class,
                                      min_image_size=params.filter.min_image_size, workers=default_threads(),
                                      link_roots=(os.fspath(dvc_cache),))
    # paths relative to the project root, so outputs are the same wherever the project is checked out; lexical,
    # since a link's own path is what names the sample
    rel = lambda p: Path(os.path.relpath(p, root)).as_posix()  # noqa: E731
    manifest["path"] = manifest["path"].map(rel)
    report["data_dir"] = rel(report["data_dir"])
    report["skipped"] = [{**s, "path": rel(s["path"])} for s in report["skipped"]]
    report["warnings"] = [{**w, "path": rel(w["path"])} for w in report["warnings"]]
    write_filter_outputs(manifest, report, layout.manifest, layout.reports)
    reasons = ", ".join(f"{reason} {n}" for reason, n in report["skipped_by_reason"].items())
    print(f"filter: kept {report['n_kept_images']} images in {report['n_classes_kept']} classes "
          f"(dropped {len(report['dropped'])}); skipped {report['n_skipped']} of {report['n_entries_seen']} entries"
          + (f" ({reasons})" if reasons else ""))
    if report["warnings"]:
        n_files = len({w["path"] for w in report["warnings"]})
        print(f"filter: {len(report['warnings'])} library warnings on {n_files} files")
    print("filter: every skipped entry and warning is listed in reports/data_report.md")
    return report
