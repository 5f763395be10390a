"""The study's plain CNN (no residual connections)."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _conv(in_chans: int, out_chans: int, padding: int, relu: bool = True) -> nn.Sequential:
    conv = nn.Conv2d(in_chans, out_chans, 3, padding=padding)
    return nn.Sequential(conv, nn.ReLU(inplace=True)) if relu else nn.Sequential(conv)


def _pool_relu() -> nn.Sequential:
    """MaxPool2d(2) then ReLU: the same values and gradients as ReLU then pool (max commutes with a monotone
    function), on a quarter of the elements."""
    return nn.Sequential(nn.MaxPool2d(2), nn.ReLU(inplace=True))


class PlainCNN(nn.Module):
    """The plain CNN of the Keras Simpsons study, as its published summary shows it.

    Conv32 same -> pool -> Conv64 same -> Conv64 same -> pool -> Conv128 valid -> Conv128 valid -> pool
    -> flatten -> Dense128 -> Dropout 0.5 -> Dense(num_classes). The study's code wrote the first conv line twice
    but its summary (3,491,603 parameters at 128x128, 19 classes) has a single 32-filter conv, so this is the
    published network, not the code as typed. Where a conv is followed by pooling, its ReLU runs after the pool
    (identical output and gradients, 4x fewer elements; the parameter names match conv -> ReLU -> pool).

    Args:
        num_classes: output classes.
        image_size: square input side in px; sets the flattened width of the first dense layer.
        in_chans: input channels.
        hidden: width of the dense layer.
        dropout: dropout before the classifier.
    """

    def __init__(self, num_classes: int, image_size: int, in_chans: int = 3, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            _conv(in_chans, 32, padding=1, relu=False),
            _pool_relu(),  # (B, 32, S/2, S/2)
            _conv(32, 64, padding=1),
            _conv(64, 64, padding=1, relu=False),
            _pool_relu(),  # (B, 64, S/4, S/4)
            _conv(64, 128, padding=0),
            _conv(128, 128, padding=0, relu=False),  # (B, 128, S/4 - 4, S/4 - 4)
            _pool_relu(),
        )
        side = (image_size // 2 // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"PlainCNN needs image_size >= 24, got {image_size}")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits; softmax lives in the loss


@register_model
def baseline(num_classes: int, image_size: int, **kwargs) -> PlainCNN:
    """The study's plain CNN (3,491,603 parameters at 128 px, 19 classes)."""
    return PlainCNN(num_classes=num_classes, image_size=image_size, **kwargs)
