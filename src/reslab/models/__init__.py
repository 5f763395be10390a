"""Model registry: importing this package registers every architecture."""
from . import plain_cnn, resnet  # noqa: F401  (registration side effect)
from .plain_cnn import PlainCNN
from .registry import create_model, list_models, register_model
from .resnet import PreActResNet, ProjectionUnit, ResidualUnit

__all__ = ["PlainCNN", "PreActResNet", "ProjectionUnit", "ResidualUnit", "create_model", "list_models",
           "register_model"]
