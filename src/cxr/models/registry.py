"""One model registry (timm-style): `create_model("resnet18", num_classes=3)`; `cxr models` lists it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from cxr.errors import CxrError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[[int, int], nn.Module]  # (in_channels, num_classes) -> module
    description: str
    head: str  # name of the classification head module: replaced by fine-tuning, kept trainable by --freeze-backbone


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, head: str = "classifier") -> Callable:
    """Decorator: add a factory `f(in_channels, num_classes) -> nn.Module` under `name`."""

    def wrap(factory: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, description, head)
        return factory

    return wrap


def available_models() -> list[str]:
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise CxrError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)} (see `cxr models`)")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, in_channels: int = 1) -> nn.Module:
    return model_spec(name).factory(in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
