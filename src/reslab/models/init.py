"""Other frameworks' conventions applied to a built model: Keras' weight initialisation and BatchNorm constants, so
that reslab can train the study's networks as its Keras notebook did (shared/reference/README.md, item 5)."""
from __future__ import annotations

from torch import nn

# Every BatchNorm class of torch.nn (LazyBatchNorm* and SyncBatchNorm subclass these or share their base).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def keras_init_(model: nn.Module) -> nn.Module:
    """Keras' defaults, in place: glorot_uniform kernels and zero biases for every convolution and dense layer
    (Keras' fans are PyTorch's: receptive field x channels in / out), gamma 1 and beta 0 for BatchNorm.

    Draws from torch's global generator, like PyTorch's own initialisation, so a seeded run stays reproducible.
    """
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, BATCH_NORMS) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def set_batchnorm_(model: nn.Module, momentum: float | None = None, eps: float | None = None) -> nn.Module:
    """Set every BatchNorm's `momentum` and `eps` in place (None keeps the module's own).

    `momentum` is PyTorch's: the weight of the new batch in the running statistics. Keras'
    BatchNormalization(momentum=0.99, epsilon=1e-3) is momentum=0.01, eps=1e-3 here.
    """
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            if momentum is not None:
                module.momentum = momentum
            if eps is not None:
                module.eps = eps
    return model


def freeze_batchnorm_(model: nn.Module) -> nn.Module:
    """Put every BatchNorm in inference mode (call after `model.train()`): it normalises with its running statistics,
    which no longer update, while gamma and beta still train. The study's ResNet trained this way by accident
    (its GradientTape loop called `model(x)` without `training=True`), starting from Keras' 0 / 1 statistics."""
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            module.eval()
    return model
