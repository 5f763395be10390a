"""`reslab predict`: classify new images with the champion model (or a named one)."""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
import warnings
from pathlib import Path

from .config import load_params
from .data import inventory
from .layout import ROLES, Layout
from .serving import ImageClassifier

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


def load_classifier(root: Path, params_file: Path, choice: str) -> tuple[ImageClassifier, str]:
    """The served model's classifier (`serving.ImageClassifier`) and where it came from.

    'champion' -> the registered model's @champion version (its weights file, refused unless its SHA-256 is the
    version's `weights_sha256` tag, loaded weights_only);
    a role (`resnet`, or `resnet@2` for one seed) -> a replicate's models/<role>/seed_<seed>.pt; anything else -> a
    model file path. Either way images go through the same `ImageClassifier.classify`.
    """
    layout = Layout(root)
    role, _, seed = choice.partition("@")
    if role in ROLES:
        path = replicate_file(layout, role, seed or None)
        return ImageClassifier.from_model_file(path), str(path)
    if choice != "champion":
        return ImageClassifier.from_model_file(Path(choice)), choice
    import tempfile

    from . import tracking
    from .tracking.registry import verified_weights

    params = load_params(params_file)
    tracking.setup(root, params.mlflow.experiment_name)
    name = params.mlflow.registered_model_name
    try:
        version = tracking.MlflowClient().get_model_version_by_alias(name, "champion")
    except tracking.mlflow.exceptions.MlflowException:
        raise FileNotFoundError(f"no model has the alias @champion in registered model {name!r} "
                                f"({tracking.tracking_uri(root)}); run `dvc repro` first, or pass "
                                f"--model baseline|resnet|PATH") from None
    # The registered version's own weights file, checked against the SHA-256 it was registered with, then read
    # weights_only into the class the server runs: the same code path as `mlflow models serve`, without executing
    # code that the tracking store holds.
    with tempfile.TemporaryDirectory() as tmp:
        classifier = ImageClassifier.from_model_file(verified_weights(version, Path(tmp)))
    return classifier, f"models:/{name}@champion, version {version.version}"


def main(root: Path, params_file: Path, images: list[Path], model_choice: str, top: int) -> int:
    classifier, source = load_classifier(root, params_file, model_choice)
    classes = classifier.classes
    print(f"model: {classifier.architecture} ({model_choice}, {source}), {len(classes)} classes, "
          f"{classifier.image_size}px")
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
                data = f.read_bytes()
            except OSError as e:
                data, error = None, _open_error(e)
            if data is not None:  # the served model's own path: decode, resize, classify
                row = classifier.classify([data]).iloc[0]
                error = row["error"]
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            print(f"{f}: warning: {message}", file=sys.stderr)
        if error is not None:
            failures += 1
            print(f"{f}: error: {error}", file=sys.stderr)
            continue
        best = sorted(row["probabilities"].items(), key=lambda item: -item[1])[:top]
        print(f"{f}: " + ", ".join(f"{name} {p:.1%}" for name, p in best))
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
