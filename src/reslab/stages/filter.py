"""DVC stage `filter`: data/ -> artifacts/filter/manifest.csv + reports/data_report.{json,md}."""
from __future__ import annotations

from pathlib import Path

from ..config import load_params
from ..data.filtering import filter_dataset, write_filter_outputs
from ..layout import Layout
from ..training import default_threads


def main(root: Path, params_file: Path) -> dict:
    params = load_params(params_file)
    layout = Layout(root)
    manifest, report = filter_dataset(layout.data, params.filter.min_images_per_class, workers=default_threads())
    # paths relative to the project root, so outputs are the same wherever the project is checked out
    rel = lambda p: Path(p).resolve().relative_to(root.resolve()).as_posix()  # noqa: E731
    manifest["path"] = manifest["path"].map(rel)
    report["data_dir"] = rel(report["data_dir"])
    report["skipped"] = [{**s, "path": rel(s["path"])} for s in report["skipped"]]
    write_filter_outputs(manifest, report, layout.manifest, layout.reports)
    print(f"filter: {report['n_valid']} valid images of {report['n_files']} files; kept {report['n_classes_kept']} "
          f"classes ({report['n_kept_images']} images), dropped {len(report['dropped'])}, "
          f"skipped {report['n_skipped']} files (see reports/data_report.md)")
    return report
