"""`reslab predict`: classify new images with the champion model (or a named one)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .config import load_params
from .data.prepared import load_resized
from .layout import ROLES, Layout
from .models.serialization import load_model_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders expanded (recursively) to their image files, hidden files skipped."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            out.append(p)
    return out


def resolve_model_file(root: Path, params_file: Path, choice: str) -> Path:
    """'champion' -> the registry alias's model file (downloaded from its run); a role -> models/<role>.pt;
    anything else -> a path."""
    layout = Layout(root)
    if choice in ROLES:
        return layout.model_file(choice)
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
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255  # (1, 3, S, S)
    return torch.softmax(model(x), 1)[0].numpy()


def main(root: Path, params_file: Path, images: list[Path], model_choice: str, top: int) -> int:
    model_file = resolve_model_file(root, params_file, model_choice)
    model, meta = load_model_file(model_file)
    classes, size = meta["classes"], meta["image_size"]
    print(f"model: {meta['model']} ({model_choice}, {model_file}), {len(classes)} classes, {size}px")
    files = expand(images)
    if not files:
        print("no image files given", file=sys.stderr)
        return 2
    failures = 0
    for f in files:
        try:
            probs = classify(model, load_resized(str(f), size))
        except FileNotFoundError:
            print(f"{f}: error: file not found", file=sys.stderr)
            failures += 1
            continue
        except Exception as e:  # noqa: BLE001 - any decode failure of a user file is reported, the rest go on
            print(f"{f}: error: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
            failures += 1
            continue
        best = np.argsort(-probs)[:top]
        print(f"{f}: " + ", ".join(f"{classes[i]} {probs[i]:.1%}" for i in best))
    return 1 if failures else 0
