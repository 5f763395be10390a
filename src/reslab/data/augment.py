"""The study's augmentation (Keras ImageDataGenerator ranges), scaled by one magnitude.

Two implementations of the same ranges:
- `study_transforms`: torchvision v2 transforms, one image at a time (what a typical user writes; the benchmark's
  naive pipeline).
- `BatchAugment`: the same random affine + brightness + flip drawn per image but applied to a whole uint8 batch in
  one `grid_sample` call, on whatever device the batch is on. This is what training uses.
Rotation, shift, flip and brightness follow the same distribution in both (tests/test_training_perf.py checks it).
They differ where torchvision cannot follow Keras: v2 zooms both axes by one factor and fills uncovered pixels with
black; BatchAugment zooms each axis independently and repeats the border pixel, as Keras does.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..config import AUGMENT_RANGES, AugmentConfig


def scaled(cfg: AugmentConfig) -> dict[str, float]:
    """The effective ranges at cfg.magnitude."""
    m = cfg.magnitude
    return {**{name: getattr(cfg, name) * m for name in AUGMENT_RANGES}, "hflip": 0.5 if (cfg.hflip and m > 0) else 0.0}


def study_transforms(cfg: AugmentConfig):
    """Per-image torchvision v2 pipeline on PIL images or tensors -> float tensor in [0, 1]."""
    from torchvision.transforms import v2  # only here: importing torchvision costs seconds per stage

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


def affine_grid(matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(matrix, (B, C, height, width), align_corners=False) by broadcasting instead of a batched
    matmul with an inner dimension of 3 (half the time on CPU; equal to within float rounding).

    matrix: (B, 2, 3) -> grid (B, height, width, 2) of normalised (x, y) input coordinates.
    """
    kw = {"device": matrix.device, "dtype": matrix.dtype}
    xs = (torch.arange(width, **kw) * 2 + 1) / width - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(height, **kw) * 2 + 1) / height - 1
    m = matrix[:, None, None]  # (B, 1, 1, 2, 3)
    return m[..., 0] * xs[:, None] + m[..., 1] * ys[:, None, None] + m[..., 2]  # (B, H, W, 2)


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
        # rotation @ shift @ shear @ zoom, as keras.preprocessing.image.apply_affine_transform composes them:
        # input = R (Sh Z out + t) = (R Sh Z) out + R t, so the shift is rotated with the image
        a = cos * zx
        bb = (-sin + cos * torch.tan(shear)) * zy  # shear tilts the y axis
        c = sin * zx
        d = (cos + sin * torch.tan(shear)) * zy
        tx, ty = cos * tx - sin * ty, sin * tx + cos * ty
        sign = torch.where(flip, -1.0, 1.0)  # flipping the output x axis = negating the first column
        matrix = torch.stack([torch.stack([a * sign, bb, tx], 1), torch.stack([c * sign, d, ty], 1)], 1)  # (B, 2, 3)
        grid = affine_grid(matrix.to(x.device, x.dtype), x.shape[-2], x.shape[-1])  # (B, H, W, 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.mul_(bright.to(x.device, x.dtype).view(b, 1, 1, 1)).clamp_(0, 1)


