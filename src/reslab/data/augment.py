"""The study's augmentation (Keras ImageDataGenerator ranges), scaled by one magnitude.

Two implementations of the same distribution:
- `study_transforms`: torchvision v2 transforms, one image at a time (what a typical user writes; the benchmark's
  naive pipeline).
- `BatchAugment`: the same random affine + brightness + flip drawn per image but applied to a whole uint8 batch in
  one `affine_grid`/`grid_sample` call, on whatever device the batch is on. This is what training uses.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from ..config import AugmentConfig


def scaled(cfg: AugmentConfig) -> dict[str, float]:
    """The effective ranges at cfg.magnitude."""
    m = cfg.magnitude
    return {"rotation": cfg.rotation * m, "shift": cfg.shift * m, "shear": cfg.shear * m, "zoom": cfg.zoom * m,
            "brightness": cfg.brightness * m, "hflip": 0.5 if (cfg.hflip and m > 0) else 0.0}


def study_transforms(cfg: AugmentConfig) -> v2.Compose:
    """Per-image torchvision v2 pipeline on PIL images or tensors -> float tensor in [0, 1]."""
    r = scaled(cfg)
    steps: list[nn.Module] = [v2.ToImage()]
    if cfg.magnitude > 0:
        steps += [
            v2.RandomAffine(degrees=r["rotation"], translate=(r["shift"], r["shift"]),
                            scale=(1 - r["zoom"], 1 + r["zoom"]), shear=r["shear"]),
            v2.ColorJitter(brightness=(max(0.0, 1 - r["brightness"]), 1 + r["brightness"])),
        ]
        if r["hflip"]:
            steps.append(v2.RandomHorizontalFlip(r["hflip"]))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


class BatchAugment(nn.Module):
    """Per-image random affine (rotation, shift, shear, per-axis zoom), brightness and horizontal flip, batched.

    As Keras does, the sampled matrix maps output to input coordinates, and pixels from outside the image take the
    nearest border value (Keras' default fill_mode="nearest").

    Args:
        cfg: the augmentation ranges and magnitude.
    """

    def __init__(self, cfg: AugmentConfig):
        super().__init__()
        self.ranges = scaled(cfg)
        self.enabled = cfg.magnitude > 0

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) uint8 or float in [0, 1] -> float (B, 3, H, W) in [0, 1]."""
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if not self.enabled:
            return x
        b, r = x.shape[0], self.ranges

        def uniform(lo: float, hi: float, n: int = b) -> torch.Tensor:
            return torch.rand(n, generator=generator).mul_(hi - lo).add_(lo)  # drawn on CPU: same on any device

        theta = torch.deg2rad(uniform(-r["rotation"], r["rotation"]))
        shear = torch.deg2rad(uniform(-r["shear"], r["shear"]))
        zx, zy = uniform(1 - r["zoom"], 1 + r["zoom"]), uniform(1 - r["zoom"], 1 + r["zoom"])
        tx, ty = uniform(-r["shift"], r["shift"]) * 2, uniform(-r["shift"], r["shift"]) * 2  # [-1, 1] coords span 2
        flip = torch.rand(b, generator=generator) < r["hflip"]
        bright = uniform(max(0.0, 1 - r["brightness"]), 1 + r["brightness"])

        cos, sin = torch.cos(theta), torch.sin(theta)
        # rotation @ shear @ zoom, as keras.preprocessing.image.apply_affine_transform composes them
        a = cos * zx
        bb = (-sin + cos * torch.tan(shear)) * zy  # shear tilts the y axis
        c = sin * zx
        d = (cos + sin * torch.tan(shear)) * zy
        sign = torch.where(flip, -1.0, 1.0)  # flipping the output x axis = negating the first column
        matrix = torch.stack([torch.stack([a * sign, bb, tx], 1), torch.stack([c * sign, d, ty], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(matrix.to(x.device, x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.mul_(bright.to(x.device, x.dtype).view(b, 1, 1, 1)).clamp_(0, 1)


