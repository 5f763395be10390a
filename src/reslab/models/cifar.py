"""The CIFAR networks of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Section 4.2: a 3x3
stem conv, three stages of n basic blocks at widths 16/32/64 (feature maps 32/16/8 px at 32 px input), stride 2 in
the first block of stages 2 and 3, global average pooling and a linear head: 6n + 2 weighted layers.

The plain and the residual net of one depth are one class with `shortcut` off or on. The shortcut is the paper's
option A: the identity, and where a block halves the map and doubles the width, the input subsampled by 2 with
zeros for the new channels. It has no parameters, so the two nets of a depth hold exactly the same parameters and
differ only in the addition (the comparison of the paper's Fig. 6).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet import make_act


def blocks_per_stage(depth: int, n_stages: int = 3) -> int:
    """n of a depth = 2 * n_stages * n + 2 (6n + 2 for three stages); ValueError naming the valid depths."""
    step = 2 * n_stages
    n, rest = divmod(depth - 2, step)
    if n < 1 or rest:
        valid = ", ".join(str(2 + step * k) for k in range(1, 6))
        raise ValueError(f"depth {depth}: a CIFAR net with {n_stages} stages has depth {step}n + 2 (n >= 1 blocks "
                         f"per stage); valid depths: {valid}, ... (He et al. 2016: 20, 32, 44, 56, 110)")
    return n


class ShortcutA(nn.Module):
    """Option A shortcut (He et al. 2016): identity; with `stride` 2 the input is subsampled, and channels beyond
    the input's are zeros. Parameter-free.

    Args:
        in_chans: input width.
        out_chans: output width (>= in_chans).
        stride: 1 or 2.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int):
        super().__init__()
        if out_chans < in_chans:
            raise ValueError(f"option A cannot narrow {in_chans} to {out_chans} channels")
        self.extra, self.stride = out_chans - in_chans, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]  # (B, C, ceil(H/2), ceil(W/2)), as the stride-2 conv's output
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C + extra, H, W): zeros for the new channels
        return x


class BasicBlock(nn.Module):
    """The original (post-activation) basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    Args:
        in_chans: input width.
        out_chans: output width.
        stride: of the first conv (2 halves the map).
        norm_layer: normalisation layer class.
        act_layer: activation layer class.
        shortcut: False drops the addition, leaving the plain net's two conv layers.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 act_layer: type[nn.Module] = nn.ReLU, shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)  # BN follows
        self.bn1 = norm_layer(out_chans)
        self.act1 = make_act(act_layer)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = norm_layer(out_chans)
        self.shortcut = ShortcutA(in_chans, out_chans, stride) if shortcut else None
        self.act2 = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))  # (B, out_chans, H/stride, W/stride)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act2(out)


class CifarNet(nn.Module):
    """He et al. 2016's CIFAR net of `depth` = 6n + 2 layers, plain or residual.

    Args:
        num_classes: output classes.
        image_size: square input side in px (any size: the head pools globally).
        depth: weighted layers, 6n + 2 for three stages (8, 14, 20, 32, 44, 56, 110, ...).
        widths: channels per stage; the stem has widths[0].
        shortcut: True for the residual net (option A shortcuts), False for the plain net.
        norm_layer: normalisation layer class.
        act_layer: activation layer class.
    """

    def __init__(self, num_classes: int, image_size: int, depth: int = 20, widths: Sequence[int] = (16, 32, 64),
                 shortcut: bool = True, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 act_layer: type[nn.Module] = nn.ReLU):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or any(w < 1 for w in widths) or list(widths) != sorted(widths):
            raise ValueError(f"widths {widths}: positive and non-decreasing, e.g. (16, 32, 64)")
        if image_size < 1:
            raise ValueError(f"image_size {image_size}: must be >= 1 px")
        n = blocks_per_stage(depth, len(widths))
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), norm_layer(widths[0]),
                                  make_act(act_layer))  # (B, widths[0], S, S)
        blocks: list[nn.Module] = []
        chans = widths[0]
        for i, width in enumerate(widths):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1  # (B, width, S / 2^i, S / 2^i) after stage i
                blocks.append(BasicBlock(chans, width, stride, norm_layer, act_layer, shortcut))
                chans = width
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans, num_classes))
        for m in self.modules():  # He et al. 2016 initialise as in He et al. 2015 ("Delving deep into rectifiers")
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))  # logits (B, num_classes)


@register_model
def cifar_resnet(num_classes: int, image_size: int, depth: int = 20, **kwargs) -> CifarNet:
    """He et al. 2016's CIFAR ResNet-`depth` with option A shortcuts (ResNet-20: 0.27M parameters)."""
    return CifarNet(num_classes=num_classes, image_size=image_size, depth=depth, shortcut=True, **kwargs)


@register_model
def cifar_plain(num_classes: int, image_size: int, depth: int = 20, **kwargs) -> CifarNet:
    """`cifar_resnet` without its shortcuts: the paper's plain net of the same depth and parameters."""
    return CifarNet(num_classes=num_classes, image_size=image_size, depth=depth, shortcut=False, **kwargs)
