"""filter stage: open every file, keep decodable images, drop classes with too few of them."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from .errors import DataError

MANIFEST_COLUMNS = ["path", "label", "width", "height", "sha256", "pixel_hash"]


@dataclass(frozen=True)
class FileCheck:
    path: str
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    pixel_hash: str = ""


def check_image(path: str) -> FileCheck:
    """Fully decode one file as RGB; return its size and hashes, or why it cannot be used."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        return FileCheck(path, False, f"unreadable: {e.strerror or e}")
    if not raw:
        return FileCheck(path, False, "empty file (0 bytes)")
    try:
        import io

        with Image.open(io.BytesIO(raw)) as img:
            img.load()  # a truncated JPEG only fails here, not at open()
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        return FileCheck(path, False, "not an image (unrecognised format)")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return FileCheck(path, False, f"cannot decode: {e}")
    pixels = hashlib.sha1(rgb.tobytes())
    pixels.update(f"{rgb.width}x{rgb.height}".encode())
    return FileCheck(path, True, "", rgb.width, rgb.height, hashlib.sha256(raw).hexdigest(), pixels.hexdigest())


def scan_image_folder(data_dir: Path) -> tuple[dict[str, list[str]], list[dict]]:
    """List candidate files per class folder; return ({class: [paths]}, [skipped {path, reason}])."""
    if not data_dir.exists():
        raise DataError(f"{data_dir}/: data folder not found. Generate the built-in data set with "
                        f"`reslab data synth`, or put an ImageFolder tree there (one sub-folder per class).")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file; expected a folder with one sub-folder per class")
    classes: dict[str, list[str]] = {}
    skipped: list[dict] = []
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith("."):
            continue  # .dvc / .DS_Store style bookkeeping at the top level is not data
        if entry.is_file():
            skipped.append({"path": entry.as_posix(), "reason": "not inside a class folder"})
            continue
        files = []
        for root, dirs, names in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = (Path(root) / name).as_posix()
                if name.startswith("."):
                    skipped.append({"path": path, "reason": "hidden file"})
                else:
                    files.append(path)
        classes[entry.name] = files
    if not classes:
        raise DataError(f"{data_dir}/: no class folders found. Expected an ImageFolder layout: "
                        f"{data_dir}/<class_name>/<image files>")
    return classes, skipped


def filter_dataset(data_dir: Path, min_images_per_class: int, workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """Validate every image and keep classes with >= min_images_per_class valid images.

    Args:
        data_dir: ImageFolder root.
        min_images_per_class: classes with fewer valid images are dropped.
        workers: decoding processes.

    Returns:
        (manifest with MANIFEST_COLUMNS, sorted by label then path; report dict).
    """
    classes, skipped = scan_image_folder(data_dir)
    paths = [p for files in classes.values() for p in files]
    if workers > 1 and len(paths) > 200:
        with ProcessPoolExecutor(workers) as pool:
            checks = list(pool.map(check_image, paths, chunksize=64))
    else:
        checks = [check_image(p) for p in paths]
    by_path = {c.path: c for c in checks}
    skipped += [{"path": c.path, "reason": c.reason} for c in checks if not c.ok]

    valid_counts = {name: sum(by_path[p].ok for p in files) for name, files in classes.items()}
    kept = sorted(name for name, n in valid_counts.items() if n >= min_images_per_class)
    dropped = {name: n for name, n in sorted(valid_counts.items()) if n < min_images_per_class}
    if not kept:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(valid_counts.items(), key=lambda kv: -kv[1])[:10])
        raise DataError(f"{data_dir}/: no class has at least filter.min_images_per_class="
                        f"{min_images_per_class} valid images (largest: {counts or 'none'}). "
                        f"Lower filter.min_images_per_class in params.yaml or add images.")
    rows = [
        {"path": c.path, "label": name, "width": c.width, "height": c.height,
         "sha256": c.sha256, "pixel_hash": c.pixel_hash}
        for name in kept for p in classes[name] if (c := by_path[p]).ok
    ]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    report = {
        "data_dir": data_dir.as_posix(),
        "min_images_per_class": min_images_per_class,
        "n_files": len(paths) + sum(1 for s in skipped if s["reason"] in ("hidden file", "not inside a class folder")),
        "n_valid": int(sum(valid_counts.values())),
        "n_skipped": len(skipped),
        "n_kept_images": len(manifest),
        "n_classes_found": len(classes),
        "n_classes_kept": len(kept),
        "kept": {name: valid_counts[name] for name in kept},
        "dropped": dropped,
        "skipped": sorted(skipped, key=lambda s: s["path"]),
    }
    return manifest, report


def report_markdown(report: dict) -> str:
    """Readable summary of the filter report."""
    lines = [
        "# Data report", "",
        f"- folder: `{report['data_dir']}`",
        f"- files seen: {report['n_files']}, valid images: {report['n_valid']}, skipped: {report['n_skipped']}",
        f"- classes found: {report['n_classes_found']}, kept (>= {report['min_images_per_class']} valid images): "
        f"{report['n_classes_kept']}, images kept: {report['n_kept_images']}", "",
        "## Kept classes", "", "| class | valid images |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in report["kept"].items()], "",
        "## Dropped classes", "", "| class | valid images |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in report["dropped"].items()], "",
        "## Skipped files", "", "| file | reason |", "|---|---|",
        *[f"| `{s['path']}` | {s['reason']} |" for s in report["skipped"]], "",
    ]
    return "\n".join(lines)


def write_filter_outputs(manifest: pd.DataFrame, report: dict, manifest_path: Path, report_dir: Path) -> None:
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(manifest_path, index=False)
    (report_dir / "data_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "data_report.md").write_text(report_markdown(report))
