"""Models by name: stages, sweeps and `predict` pick an architecture with a string (timm's `register_model`)."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory `fn(num_classes, image_size, **kwargs) -> nn.Module` under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, *, num_classes: int, image_size: int, **kwargs: Any) -> nn.Module:
    """Build the registered model `name`; unknown names and arguments fail with the valid choices."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    try:
        return _MODELS[name](num_classes=num_classes, image_size=image_size, **kwargs)
    except TypeError as e:  # an unknown keyword in model_args
        raise ValueError(f"model {name!r}: {e}") from None
