"""filter stage: open every file, keep decodable images, drop classes with too few of them; account for every entry.

Every entry under the data folder either becomes a sample (a manifest row) or a line of the data report with one
of SKIP_REASONS, so that entries seen = samples kept + entries skipped (folders that were read are counted apart).
How links, special files, hidden entries and odd names are walked is `inventory`'s link policy; how an image is
decoded (EXIF orientation, 16-bit, transparency, CMYK, animation) is `images.to_rgb`, shared with prepare and
`reslab predict`.

Decisions about images that decode but are wrong:

- The same image (identical pixels after decoding, which includes identical bytes) filed under two or more
  classes is a label conflict: every copy is dropped, since no copy can be trusted to carry the right label.
  Copies within one class are kept; the split stage keeps them on the same side.
- An image narrower or shorter than `min_image_size` px is skipped as too small to carry information.
- Library warnings raised while decoding a file (e.g. Pillow's) are caught and listed against that file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import inventory as inv
from .errors import DataError
from .images import CONVERSIONS, to_rgb

MANIFEST_COLUMNS = ["path", "label", "width", "height", "sha256", "pixel_hash", "dhash"]

EMPTY_FILE = "empty file"
NOT_AN_IMAGE = "not an image"
CANNOT_DECODE = "cannot decode"
TOO_SMALL = "too small"
LABEL_CONFLICT = "label conflict"
CLASS_DROPPED = "class dropped"

# Every reason an entry can be skipped for, with what it means; the data report explains the ones it uses.
SKIP_REASONS = {
    inv.HIDDEN: "the name starts with '.'; not read (a hidden folder's contents are not listed)",
    inv.NAME_NOT_UTF8: "the name is not valid UTF-8, so the manifest could not name it; rename it to use it",
    inv.NOT_IN_CLASS_FOLDER: "directly in the data folder; a sample must be inside a class folder",
    inv.LINK_OUTSIDE: "a link to something outside the data folder; not followed, nothing there is read",
    inv.LINK_LOOP: "a link that loops, or points to a folder that contains it; not followed",
    inv.DANGLING_LINK: "a link whose target does not exist",
    inv.DUPLICATE_LINK: "a link to a file or folder that is read under another path; each real file counts once",
    inv.SPECIAL_FILE: "a FIFO, socket or device; never opened",
    inv.UNREADABLE: "opening or listing it failed (permissions, I/O error, path too long); a folder's contents "
                    "are not listed",
    EMPTY_FILE: "0 bytes",
    NOT_AN_IMAGE: "not a format Pillow recognises",
    CANNOT_DECODE: "recognised but broken (truncated, corrupt, unsupported mode)",
    TOO_SMALL: "decodes, but narrower or shorter than filter.min_image_size",
    LABEL_CONFLICT: "the same image is filed under another class too; every copy is dropped",
    CLASS_DROPPED: "a valid image of a class with fewer than filter.min_images_per_class valid images",
}


@dataclass(frozen=True)
class FileCheck:
    """What decoding one file found: usable or not (and why), its size, hashes, conversions and warnings."""

    path: str
    ok: bool
    reason: str = ""
    detail: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    pixel_hash: str = ""
    conversions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    dhash: str = ""  # `difference_hash`: near-identical images (resized, recompressed) differ in a few bits only


def _read_regular_file(path: str) -> bytes | FileCheck:
    """The file's bytes, or why they cannot be read; never blocks on a FIFO put in a file's place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return FileCheck(path, False, inv.UNREADABLE, e.strerror or str(e))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return FileCheck(path, False, inv.SPECIAL_FILE, f"{inv.special_kind(mode)}; not read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        return FileCheck(path, False, inv.UNREADABLE, e.strerror or str(e))
    finally:
        os.close(fd)


def difference_hash(rgb: Image.Image) -> str:
    """64-bit dHash (Krawetz, "Kind of Like That", 2013) as 16 hex digits: the grey image at 9 x 8 px, one bit per
    pair of horizontal neighbours (left brighter than right)."""
    grey = np.asarray(rgb.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).ravel()
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


def check_image(path: str, min_image_size: int = 1) -> FileCheck:
    """Fully decode one file as RGB (`images.to_rgb`); return its size and hashes, or why it cannot be used."""
    raw = _read_regular_file(path)
    if isinstance(raw, FileCheck):
        return raw
    if not raw:
        return FileCheck(path, False, EMPTY_FILE, "0 bytes")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                rgb, conversions = to_rgb(img)
                pixels = hashlib.sha1(rgb.tobytes())
                dhash = difference_hash(rgb)
            width, height = rgb.size
        except UnidentifiedImageError:
            result = FileCheck(path, False, NOT_AN_IMAGE, "unrecognised format")
        except Exception as e:  # noqa: BLE001 - a malformed file can raise anything from inside a Pillow plugin
            result = FileCheck(path, False, CANNOT_DECODE, f"{type(e).__name__}: {e}")
        else:
            pixels.update(f"{width}x{height}".encode())
            ok = width >= min_image_size and height >= min_image_size
            result = FileCheck(path, ok, "" if ok else TOO_SMALL,
                               "" if ok else f"{width}x{height} px; filter.min_image_size is {min_image_size}",
                               width, height, hashlib.sha256(raw).hexdigest(), pixels.hexdigest(), conversions,
                               dhash=dhash)
    messages = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return replace(result, warnings=messages) if messages else result


def _skip(path: str, reason: str, detail: str = "") -> dict:
    return {"path": path, "reason": reason, "detail": detail}


def _take_inventory(data_dir: Path, link_roots: tuple[str, ...]) -> inv.Inventory:
    """The inventory of an ImageFolder root, or a DataError that says what is wrong with the root itself."""
    if not data_dir.exists():
        raise DataError(f"{data_dir}/: data folder not found. Generate the built-in data set with "
                        f"`reslab data synth`, or put an ImageFolder tree there (one sub-folder per class).")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: is a file; expected a folder with one sub-folder per class")
    try:
        found = inv.take_inventory(os.fspath(data_dir), link_roots)
    except OSError as e:
        raise DataError(f"{data_dir}/: cannot read the data folder: {e.strerror or e}") from None
    if not found.classes:
        seen = "; ".join(f"{s['path']} ({s['reason']})" for s in found.skipped[:5])
        raise DataError(f"{data_dir}/: no class folders found. Expected an ImageFolder layout: "
                        f"{data_dir}/<class_name>/<image files>" + (f". Skipped: {seen}" if seen else ""))
    return found


def _label_conflicts(valid: list[inv.Candidate], checks: dict[str, FileCheck]) -> dict[str, str]:
    """{path: detail} for every copy of an image that appears under more than one class."""
    by_pixels: dict[str, list[inv.Candidate]] = defaultdict(list)
    for c in valid:
        by_pixels[checks[c.real].pixel_hash].append(c)
    conflicts = {}
    for copies in by_pixels.values():
        if len({c.label for c in copies}) > 1:
            for c in copies:
                others = [f"{o.path} ({o.label})" for o in copies if o.label != c.label]
                conflicts[c.path] = "the same image as " + ", ".join(others[:3]) + \
                    (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return conflicts


def filter_dataset(data_dir: Path, min_images_per_class: int, min_image_size: int = 1, workers: int = 1,
                   link_roots: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict]:
    """Validate every image and keep classes with >= min_images_per_class valid images; account for every entry.

    Args:
        data_dir: ImageFolder root.
        min_images_per_class: classes with fewer valid images are dropped.
        min_image_size: images narrower or shorter than this (px) are skipped.
        workers: decoding processes.
        link_roots: folders besides data_dir that links may point into (the DVC cache).

    Returns:
        (manifest with MANIFEST_COLUMNS, sorted by label then path; the data report as a dict).
    """
    found = _take_inventory(data_dir, link_roots)
    candidates = [c for files in found.classes.values() for c in files]
    reals = list(dict.fromkeys(c.real for c in candidates))
    check = partial(check_image, min_image_size=min_image_size)
    if workers > 1 and len(reals) > 200:
        with ProcessPoolExecutor(workers) as pool:
            checks = dict(zip(reals, pool.map(check, reals, chunksize=64)))
    else:
        checks = {r: check(r) for r in reals}

    skipped = list(found.skipped)
    skipped += [_skip(c.path, checks[c.real].reason, checks[c.real].detail) for c in candidates
                if not checks[c.real].ok]
    valid = [c for c in candidates if checks[c.real].ok]
    conflicts = _label_conflicts(valid, checks)
    skipped += [_skip(path, LABEL_CONFLICT, detail) for path, detail in conflicts.items()]
    valid = [c for c in valid if c.path not in conflicts]

    n_valid = Counter(c.label for c in valid)
    valid_counts = {name: n_valid[name] for name in sorted(found.classes)}
    kept = [name for name, n in valid_counts.items() if n >= min_images_per_class]
    dropped = {name: n for name, n in valid_counts.items() if n < min_images_per_class}
    if not kept:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(valid_counts.items(), key=lambda kv: -kv[1])[:10])
        raise DataError(f"{data_dir}/: no class has at least filter.min_images_per_class="
                        f"{min_images_per_class} valid images (largest: {counts or 'none'}). "
                        f"Lower filter.min_images_per_class in params.yaml or add images.")
    skipped += [_skip(c.path, CLASS_DROPPED, f"class {c.label} has {dropped[c.label]} valid images; "
                      f"filter.min_images_per_class is {min_images_per_class}")
                for c in valid if c.label in dropped]

    rows = sorted(({"path": c.path, "label": c.label, "width": (k := checks[c.real]).width, "height": k.height,
                    "sha256": k.sha256, "pixel_hash": k.pixel_hash, "dhash": k.dhash}
                   for c in valid if c.label not in dropped),
                  key=lambda r: (r["label"], r["path"]))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    decoded = [checks[c.real] for c in candidates if checks[c.real].pixel_hash]
    by_reason = Counter(s["reason"] for s in skipped)
    report = {
        "data_dir": data_dir.as_posix(),
        "min_images_per_class": min_images_per_class,
        "min_image_size": min_image_size,
        "n_entries_seen": len(manifest) + len(skipped),
        "n_folders_read": found.n_folders_read,
        "n_valid": len(valid),
        "n_kept_images": len(manifest),
        "n_skipped": len(skipped),
        "n_classes_found": len(found.classes),
        "n_classes_kept": len(kept),
        "kept": {name: valid_counts[name] for name in kept},
        "dropped": dropped,
        "skipped_by_reason": {reason: by_reason[reason] for reason in SKIP_REASONS if by_reason[reason]},
        "conversions": {name: sum(name in k.conversions for k in decoded) for name in CONVERSIONS},
        "warnings": [{"path": c.path, "warning": w} for c in candidates for w in checks[c.real].warnings],
        "skipped": sorted(skipped, key=lambda s: s["path"]),
    }
    return manifest, report


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict) -> str:
    """Readable data report: totals, reasons, what was found and converted, then every skipped entry."""
    skipped_by: dict[str, list[dict]] = defaultdict(list)
    for s in report["skipped"]:
        skipped_by[s["reason"]].append(s)
    warned_files = len({w["path"] for w in report["warnings"]})
    found = {"label conflict (skipped)": report["skipped_by_reason"].get(LABEL_CONFLICT, 0),
             f"too small, under {report['min_image_size']} px (skipped)": report["skipped_by_reason"].get(TOO_SMALL, 0),
             **report["conversions"]}
    lines = [
        "# Data report", "",
        f"- folder: `{report['data_dir']}`",
        f"- entries seen: {report['n_entries_seen']} = samples kept {report['n_kept_images']} + entries skipped "
        f"{report['n_skipped']} (besides {report['n_folders_read']} folders read)",
        f"- classes found: {report['n_classes_found']}, kept (>= {report['min_images_per_class']} valid images): "
        f"{report['n_classes_kept']}; valid images: {report['n_valid']}",
        f"- library warnings: {len(report['warnings'])} on {warned_files} files", "",
        "Links are followed only to files and folders inside the data folder (or the project's DVC cache); nothing "
        "outside it is read because a link points there, and each real file is counted once. Files in sub-folders "
        "of a class folder belong to the class. A skipped folder is one line; what is inside it is not listed.", "",
        "## Skipped, by reason", "", "| reason | entries | meaning |", "|---|---:|---|",
        *[f"| {r} | {n} | {SKIP_REASONS[r]} |" for r, n in report["skipped_by_reason"].items()], "",
        "## Found among the decoded images", "", "| what | images |", "|---|---:|",
        *[f"| {name} | {n} |" for name, n in found.items()], "",
        "## Kept classes", "", "| class | valid images |", "|---|---:|",
        *[f"| {_cell(k)} | {v} |" for k, v in report["kept"].items()], "",
        "## Dropped classes", "", "| class | valid images |", "|---|---:|",
        *[f"| {_cell(k)} | {v} |" for k, v in report["dropped"].items()], "",
    ]
    if report["warnings"]:
        lines += ["## Library warnings", "", "| file | warning |", "|---|---|",
                  *[f"| `{_cell(w['path'])}` | {_cell(w['warning'])} |" for w in report["warnings"]], ""]
    lines += ["## Skipped entries", ""]
    for reason in report["skipped_by_reason"]:
        lines += [f"### {reason} ({len(skipped_by[reason])})", "", "| entry | detail |", "|---|---|",
                  *[f"| `{_cell(s['path'])}` | {_cell(s['detail'])} |" for s in skipped_by[reason]], ""]
    return "\n".join(lines)


def write_filter_outputs(manifest: pd.DataFrame, report: dict, manifest_path: Path, report_dir: Path) -> None:
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(manifest_path, index=False)
    (report_dir / "data_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (report_dir / "data_report.md").write_text(report_markdown(report), encoding="utf-8")
