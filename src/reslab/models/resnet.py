"""Pre-activation residual networks built from data: `depths` units per stage at `widths` channels.

Units follow He et al. 2016, "Identity mappings in deep residual networks": BN -> ReLU -> conv, twice, added to
an identity shortcut, so the shortcut path carries the signal untouched through any depth.
"""
from __future__ import annotations

import inspect
from typing import Literal, Sequence

import torch
from torch import nn

from .registry import register_model


def make_act(act_layer: type[nn.Module]) -> nn.Module:
    """An in-place instance where the class offers it: BN keeps its input, not its output, for the backward, and
    ReLU's backward reads its own output, so working in place saves a full-size buffer per unit."""
    try:
        takes_inplace = "inplace" in inspect.signature(act_layer).parameters
    except (TypeError, ValueError):
        takes_inplace = False
    return act_layer(inplace=True) if takes_inplace else act_layer()


class ResidualUnit(nn.Module):
    """Pre-activation unit with an identity shortcut: x + conv(relu(bn(conv(relu(bn(x)))))).

    Args:
        chans: input and output width.
        norm_layer: normalisation layer class.
        act_layer: activation layer class.
        shortcut: False drops the identity path, leaving a plain two-conv block of the same cost (for depth
            studies that show what the shortcut buys).
    """

    def __init__(self, chans: int, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 act_layer: type[nn.Module] = nn.ReLU, shortcut: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(chans), make_act(act_layer), nn.Conv2d(chans, chans, 3, padding=1),
            norm_layer(chans), make_act(act_layer), nn.Conv2d(chans, chans, 3, padding=1),
        )
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.shortcut else self.body(x)


class ProjectionUnit(nn.Module):
    """Pre-activation unit that changes width: the second conv outputs `out_chans`, the shortcut is a 1x1 conv.

    Args:
        in_chans: input width.
        out_chans: output width.
        norm_layer: normalisation layer class.
        act_layer: activation layer class.
        shortcut: False drops the 1x1 projection path (plain block).
    """

    def __init__(self, in_chans: int, out_chans: int, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 act_layer: type[nn.Module] = nn.ReLU, shortcut: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(in_chans), make_act(act_layer), nn.Conv2d(in_chans, in_chans, 3, padding=1),
            norm_layer(in_chans), make_act(act_layer), nn.Conv2d(in_chans, out_chans, 3, padding=1),
        )
        self.project = nn.Conv2d(in_chans, out_chans, 1) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + self.project(x) if self.project is not None else out


def make_stages(stem_width: int, depths: Sequence[int], widths: Sequence[int], *,
                norm_layer: type[nn.Module], act_layer: type[nn.Module], shortcut: bool) -> nn.Sequential:
    """Stage i: (a stride-2 valid 3x3 conv when i > 0) then depths[i] units at widths[i].

    The first unit of a stage is a ProjectionUnit when the width changes, as in the study's network.
    """
    if len(depths) != len(widths) or not depths:
        raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} must be non-empty and of equal length")
    if any(d < 1 for d in depths) or any(w < 1 for w in widths):
        raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} must be positive")
    layers: list[nn.Module] = []
    chans = stem_width
    for i, (depth, width) in enumerate(zip(depths, widths)):
        if i > 0:
            layers.append(nn.Conv2d(chans, chans, 3, stride=2))  # (B, C, H/2 - 1, W/2 - 1): the study's downsampling
        for _ in range(depth):
            if width != chans:
                layers.append(ProjectionUnit(chans, width, norm_layer, act_layer, shortcut))
                chans = width
            else:
                layers.append(ResidualUnit(chans, norm_layer, act_layer, shortcut))
    return nn.Sequential(*layers)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class PreActResNet(nn.Module):
    """Stem conv -> residual stages -> head.

    Args:
        num_classes: output classes.
        image_size: square input side in px (sets the flatten head's width).
        depths: units per stage.
        widths: channels per stage.
        stem_width: channels of the stem conv.
        stem_kernel: stem kernel size (stride 2, no padding, as the study's 7x7).
        head: "flatten" (the study: flatten -> dense) or "gap" (global average pooling -> dense).
        shortcut: False removes every shortcut (a plain network of the same depth and cost).
        norm_layer: normalisation layer class.
        act_layer: activation layer class.
    """

    def __init__(self, num_classes: int, image_size: int, depths: Sequence[int] = (1, 1),
                 widths: Sequence[int] = (32, 64), stem_width: int = 32, stem_kernel: int = 7,
                 head: Literal["flatten", "gap"] = "flatten", shortcut: bool = True, in_chans: int = 3,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d, act_layer: type[nn.Module] = nn.ReLU):
        super().__init__()
        if head not in ("flatten", "gap"):
            raise ValueError(f"head {head!r}: accepted 'flatten' (the study) or 'gap'")
        self.stem = nn.Conv2d(in_chans, stem_width, stem_kernel, stride=2)  # (B, stem_width, ~S/2, ~S/2)
        self.stages = make_stages(stem_width, depths, widths, norm_layer=norm_layer, act_layer=act_layer,
                                  shortcut=shortcut)
        side = _conv_out(image_size, stem_kernel, 2)
        for _ in range(len(depths) - 1):
            side = _conv_out(side, 3, 2)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(depths)} stages")
        if head == "flatten":
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, num_classes))
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))  # logits


def _resnet(num_classes: int, image_size: int, defaults: dict, **kwargs) -> PreActResNet:
    return PreActResNet(num_classes=num_classes, image_size=image_size, **{**defaults, **kwargs})


@register_model
def resnet(num_classes: int, image_size: int, **kwargs) -> PreActResNet:
    """The study's ResNet: 7x7 stem, ResidualUnit(32), stride-2 conv, ProjectionUnit(64), flatten head."""
    return _resnet(num_classes, image_size, dict(depths=(1, 1), widths=(32, 64)), **kwargs)


@register_model
def resnet_deep(num_classes: int, image_size: int, **kwargs) -> PreActResNet:
    """Three stages of three units each, global-average-pool head: the depth where shortcuts matter."""
    return _resnet(num_classes, image_size, dict(depths=(3, 3, 3), widths=(32, 64, 128), head="gap"), **kwargs)


@register_model
def plain_deep(num_classes: int, image_size: int, **kwargs) -> PreActResNet:
    """`resnet_deep` with every shortcut removed: same depth and cost, no residual path."""
    return _resnet(num_classes, image_size,
                   dict(depths=(3, 3, 3), widths=(32, 64, 128), head="gap", shortcut=False), **kwargs)
