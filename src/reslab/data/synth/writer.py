"""Writing the data set tree: class folders of rendered JPEGs, the realism extras, and the marker file."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .catalogue import (
    CLASS_NAMES,
    GENERATOR_ID,
    GENERATOR_VERSION,
    NUISANCE,
    TEXT_FILE_IN,
    TRUNCATE_FRACTION,
    TRUNCATED_IN,
    class_counts,
    duplicate_counts,
)
from .scene import render_image

#: File written at the root of the output directory; marks it as ours (safe to regenerate).
MARKER_NAME = ".reslab_synth.json"

_NOT_FOUND_PAGE = ("<html><head><title>404 Not Found</title></head>\n"
                   "<body><h1>Not Found</h1><p>The requested image was not found.</p></body></html>\n")


def _file_name(i: int) -> str:
    return f"pic_{i:04d}.jpg"


_WORKER_NZ: dict[str, Any] = {}


def _init_worker(nz: dict[str, Any]) -> None:
    """Give a worker process the nuisance knobs once, not with every chunk."""
    _WORKER_NZ.clear()
    _WORKER_NZ.update(nz)


def _write_chunk(job: tuple[str, int, list[tuple[int, int]]]) -> int:
    """Render and write the (class index, image index) items of one job."""
    out, seed, items = job
    for ci, ii in items:
        data = render_image(ci, ii, seed, _WORKER_NZ)
        (Path(out) / CLASS_NAMES[ci] / _file_name(ii)).write_bytes(data)
    return len(items)


def _write_images(out: Path, seed: int, counts: Mapping[str, int], nz: dict[str, Any], workers: int) -> None:
    """Every valid image, in ``workers`` processes; the bytes do not depend on the order or the split."""
    # Interleave classes so chunks have similar cost.
    items = [(ci, ii) for ci, name in enumerate(CLASS_NAMES) for ii in range(counts[name])]
    items.sort(key=lambda t: (t[1], t[0]))
    if workers == 1 or len(items) < 64:
        _init_worker(nz)
        _write_chunk((str(out), seed, items))
        return
    n_chunks = workers * 8
    jobs = [(str(out), seed, items[k::n_chunks]) for k in range(n_chunks)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(nz,)) as ex:
        for _ in ex.map(_write_chunk, jobs):
            pass


def _write_extras(out: Path, seed: int, counts: Mapping[str, int], dups: Mapping[str, int],
                  nz: dict[str, Any]) -> tuple[int, int]:
    """Byte duplicates, truncated JPEGs and a text file, numbered after each class's images.

    Returns (number of duplicates, number of corrupt files).
    """
    n_dup = n_corrupt = 0
    for ci, name in enumerate(CLASS_NAMES):
        n, nd = counts[name], min(dups[name], counts[name])
        r = random.Random(f"{GENERATOR_ID}/{seed}/{ci}/extras")
        nxt = n
        for src in sorted(r.sample(range(n), nd)):
            shutil.copyfile(out / name / _file_name(src), out / name / _file_name(nxt))
            nxt += 1
            n_dup += 1
        if name in TRUNCATED_IN:
            # A large, high-quality image so the cut is well past the JPEG header:
            # PIL opens it but fails to load it, as with the broken Kaggle files.
            big = dict(nz, size_range=(200, 220))
            data = render_image(ci, 10_000_000, seed, big, quality=95)
            (out / name / _file_name(nxt)).write_bytes(data[: int(len(data) * TRUNCATE_FRACTION)])
            nxt += 1
            n_corrupt += 1
        if name == TEXT_FILE_IN:
            (out / name / _file_name(nxt)).write_text(_NOT_FOUND_PAGE, encoding="ascii", newline="\n")
            nxt += 1
            n_corrupt += 1
    return n_dup, n_corrupt


def _read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of an earlier run in ``out``, or None."""
    p = out / MARKER_NAME
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR_ID else None


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create ``out``, or empty our own entries in it; refuse a foreign non-empty one unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = list(out.iterdir())
    if not entries:
        return
    meta = _read_marker(out)
    if meta is None and not overwrite:
        raise ValueError(
            f"refusing to write the synthetic data set into non-empty directory {out}: it was not "
            f"produced by {GENERATOR_ID} (no valid {MARKER_NAME}); empty it, choose another "
            f"directory, or pass overwrite=True")
    # Only our own entries are removed; anything else in the directory is left alone.
    ours = set(CLASS_NAMES) | set((meta or {}).get("classes", {})) | {MARKER_NAME}
    for e in entries:
        if e.name in ours:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()


def generate_dataset(out_dir: str | Path, *, seed: int = 0, scale: float = 1.0,
                     workers: int | None = None, overwrite: bool = False,
                     nuisance: Mapping[str, Any] | None = None) -> dict:
    """Write the built-in data set to out_dir (ImageFolder layout) and return a summary.

    The output is byte-identical for the same ``seed``/``scale``/``nuisance`` whatever ``workers`` is.  A non-empty
    ``out_dir`` is only accepted if it holds the marker file of an earlier run (its class folders are then deleted
    and regenerated) or if ``overwrite=True`` (entries named like our classes are replaced; other entries are left
    untouched).

    Args:
        out_dir: output folder, one sub-folder per class.
        seed: data set seed.
        scale: multiplies every class's image count (see :func:`~reslab.data.synth.catalogue.class_counts`).
        workers: processes drawing images (default ``min(2, os.cpu_count())``).
        overwrite: accept a non-empty folder that was not written by this generator.
        nuisance: overrides keys of :data:`~reslab.data.synth.catalogue.NUISANCE` (e.g. to tune difficulty);
            recorded in the marker file.

    Returns:
        ``{"classes": {name: n_files}, "n_images": int, "n_corrupt": int, "n_duplicates": int}``: ``classes``
        counts every file in each class folder (valid images + duplicates + corrupt files); ``n_images`` the valid,
        unique images; ``n_corrupt`` the truncated JPEGs plus the text file; ``n_duplicates`` the extra
        byte-identical copies.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    counts = class_counts(scale)
    dups = duplicate_counts(scale)
    nz = dict(NUISANCE)
    if nuisance:
        unknown = set(nuisance) - set(NUISANCE)
        if unknown:
            raise ValueError(f"unknown nuisance keys: {sorted(unknown)}")
        nz.update(nuisance)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, int(workers))

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    for name in CLASS_NAMES:
        (out / name).mkdir()
    _write_images(out, seed, counts, nz, workers)
    n_dup, n_corrupt = _write_extras(out, seed, counts, dups, nz)

    n_files = {name: sum(1 for p in (out / name).iterdir() if p.is_file()) for name in CLASS_NAMES}
    summary = {
        "classes": n_files,
        "n_images": sum(counts.values()),
        "n_corrupt": n_corrupt,
        "n_duplicates": n_dup,
    }
    marker = {
        "generator": GENERATOR_ID,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": float(scale),
        "nuisance": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(nz.items())},
        **summary,
    }
    (out / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8", newline="\n")
    return summary


def main(out_dir: str | Path, *, seed: int = 0, scale: float = 1.0, workers: int | None = None,
         overwrite: bool = False) -> dict:
    """Generate the data set and print a short human-readable summary (``reslab data synth``)."""
    t0 = time.perf_counter()
    summary = generate_dataset(out_dir, seed=seed, scale=scale, workers=workers, overwrite=overwrite)
    dt = time.perf_counter() - t0
    total = sum(summary["classes"].values())
    print(f"wrote {total} files ({summary['n_images']} images, {summary['n_duplicates']} duplicates, "
          f"{summary['n_corrupt']} corrupt) to {out_dir} in {dt:.1f}s")
    for name, n in summary["classes"].items():
        print(f"  {name:20s} {n:5d}")
    return summary
