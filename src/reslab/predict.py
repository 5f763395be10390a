"""`reslab predict`: classify new images with the champion model (or a named one)."""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import load_params
from .data import inventory
from .data.prepared import load_resized
from .layout import ROLES, Layout
from .models.serialization import load_model_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def collect(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files to classify, and (entry, why not) for each entry that cannot be.

    A named file is read even through a link (the user named it); a named folder is walked under the filter's link
    policy (`data.inventory`): links are followed only within it, special files are never opened. Hidden entries,
    files without an image suffix and links to a file classified under another name are passed over quietly.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for p in paths:
        try:
            mode = os.stat(p).st_mode
        except OSError as e:
            why = {errno.ENOENT: "file not found" + (" (dangling link)" if p.is_symlink() else ""),
                   errno.ELOOP: "link loop"}.get(e.errno, f"unreadable: {e.strerror or e}")
            problems.append((inventory.shown(os.fspath(p)), why))
            continue
        if stat.S_ISREG(mode):
            files.append(p)
        elif stat.S_ISDIR(mode):
            try:
                found = inventory.list_files(os.fspath(p))
            except OSError as e:
                problems.append((inventory.shown(os.fspath(p)), f"unreadable folder: {e.strerror or e}"))
                continue
            files += [Path(c.path) for c in sorted(found.classes.get("", []), key=lambda c: c.path)
                      if Path(c.path).suffix.lower() in IMAGE_SUFFIXES]
            problems += [(s["path"], f"{s['reason']}" + (f" ({s['detail']})" if s["detail"] else ""))
                         for s in found.skipped if s["reason"] not in (inventory.HIDDEN, inventory.DUPLICATE_LINK)]
        else:
            kind = inventory.special_kind(mode)
            problems.append((inventory.shown(os.fspath(p)), f"special file ({kind})"))
    return files, problems


def replicate_file(layout: Layout, role: str, seed: str | None) -> Path:
    """`role@seed` -> that replicate's model file; a bare role -> its replicate with the best validation accuracy
    (the training stages' metrics; the test split plays no part, as for @champion)."""
    if seed is not None:
        if not seed.isdigit() or not layout.replicate_model(role, int(seed)).is_file():
            found = sorted(p.stem.removeprefix("seed_") for p in (layout.models / role).glob("seed_*.pt"))
            raise FileNotFoundError(f"no model {role}@{seed}; trained seeds of {role}: {', '.join(found) or 'none'}")
        return layout.replicate_model(role, int(seed))
    scored = []
    for path in sorted((layout.models / role).glob("seed_*.pt")):
        metrics = layout.replicate_metrics(role, int(path.stem.removeprefix("seed_")))
        if metrics.is_file():
            scored.append((json.loads(metrics.read_text())["best_val_accuracy"], path))
    if not scored:
        raise FileNotFoundError(f"no trained {role} model under {layout.models / role}; run `dvc repro` first")
    return max(scored, key=lambda item: item[0])[1]


def resolve_model_file(root: Path, params_file: Path, choice: str) -> Path:
    """'champion' -> the registry alias's model file (downloaded from its run); a role (`resnet`, or `resnet@2` for
    one seed) -> a replicate's models/<role>/seed_<seed>.pt; anything else -> a path."""
    layout = Layout(root)
    role, _, seed = choice.partition("@")
    if role in ROLES:
        return replicate_file(layout, role, seed or None)
    if choice != "champion":
        return Path(choice)
    from . import tracking

    params = load_params(params_file)
    tracking.setup(root, params.mlflow.experiment_name)
    name = params.mlflow.registered_model_name
    try:
        run_id = tracking.champion_run_id(name)
    except tracking.mlflow.exceptions.MlflowException:
        raise FileNotFoundError(f"no model has the alias @champion in registered model {name!r} "
                                f"({tracking.tracking_uri(root)}); run `dvc repro` first, or pass "
                                f"--model baseline|resnet|PATH") from None
    local = tracking.mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoint")
    files = sorted(Path(local).glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"run {run_id} has no checkpoint/*.pt artifact")
    return files[0]


@torch.no_grad()
def classify(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> class probabilities."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float() / 255  # (1, 3, S, S); a writable copy
    return torch.softmax(model(x), 1)[0].numpy()


def main(root: Path, params_file: Path, images: list[Path], model_choice: str, top: int) -> int:
    model_file = resolve_model_file(root, params_file, model_choice)
    model, meta = load_model_file(model_file)
    classes, size = meta["classes"], meta["image_size"]
    print(f"model: {meta['model']} ({model_choice}, {model_file}), {len(classes)} classes, {size}px")
    files, problems = collect(images)
    for entry, why in problems:
        print(f"{entry}: skipped: {why}", file=sys.stderr)
    if not files:
        print("no image files given", file=sys.stderr)
        return 2
    failures = len(problems)
    for f in files:
        with warnings.catch_warnings(record=True) as caught:  # a decoder's warnings name the file they are about
            warnings.simplefilter("always")
            try:
                image = load_resized(str(f), size)
            except OSError as e:
                image = None
                print(f"{f}: error: {_open_error(e)}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - any decode failure of a user file is reported, the rest go on
                image = None
                print(f"{f}: error: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            print(f"{f}: warning: {message}", file=sys.stderr)
        if image is None:
            failures += 1
            continue
        probs = classify(model, image)
        best = np.argsort(-probs)[:top]
        print(f"{f}: " + ", ".join(f"{classes[i]} {probs[i]:.1%}" for i in best))
    return 1 if failures else 0


def _open_error(e: OSError) -> str:
    """A short message for a file that failed to open or decode."""
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, PermissionError):
        return "unreadable (permission denied)"
    if e.errno is None:  # Pillow's own decode errors carry no errno
        return f"not a readable image ({type(e).__name__}: {e})"
    return f"unreadable ({e.strerror or e})"
