"""Model registry: importing this package registers every architecture."""
from . import cifar, plain_cnn, resnet  # noqa: F401  (registration side effect)
from .cifar import BasicBlock, CifarNet, ShortcutA
from .plain_cnn import PlainCNN
from .registry import create_model, list_models, register_model
from .resnet import PreActResNet, ProjectionUnit, ResidualUnit

__all__ = ["BasicBlock", "CifarNet", "PlainCNN", "PreActResNet", "ProjectionUnit", "ResidualUnit", "ShortcutA",
           "create_model", "list_models", "register_model"]
