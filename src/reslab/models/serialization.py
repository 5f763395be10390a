"""A trained model on disk: weights plus what is needed to rebuild it, loadable with weights_only=True."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import create_model

FORMAT = 1


def save_model_file(path: Path, model: nn.Module, *, name: str, model_args: dict[str, Any], classes: list[str],
                    image_size: int, extra: dict[str, Any] | None = None) -> None:
    """Write weights + architecture name/args + class names (plain types only, so no pickle is needed to load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "model": name, "model_args": dict(model_args), "classes": list(classes),
                "image_size": int(image_size), "state_dict": state, "extra": dict(extra or {})}, tmp)
    tmp.replace(path)


def load_model_file(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by save_model_file; returns (model in eval mode, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file; say which
        raise ValueError(f"{path}: not a reslab model file ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a reslab model file (format {FORMAT} expected)")
    model = create_model(blob["model"], num_classes=len(blob["classes"]), image_size=blob["image_size"],
                         **blob["model_args"])
    model.load_state_dict(blob["state_dict"])
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def model_file_sha256(path: Path) -> str:
    """The SHA-256 of a model file's bytes: what identifies the weights (MLflow's `weights_sha256` tag)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
