"""One model registry (timm-style): `create_model("resnet18", num_classes=3)`; `cxr models` lists it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from cxr.data.settings import InputNorm
from cxr.errors import CxrError

# How pixel intensities are standardised before the network: "dataset" = one mean/std from the training pixels
# (BundleMeta.mean/std); "image" = each image to zero mean, unit variance (instance norm on the input), which removes
# global brightness/contrast differences between scanners and acquisition batches; "histeq" = histogram equalisation
# of each image (each pixel -> its intensity rank), which also removes gamma and the shape of the histogram.
INPUT_NORMS: tuple[str, ...] = get_args(InputNorm)
HISTEQ_BINS = 256  # one bin per grey level of an 8-bit image (inputs are uint8 after decoding)
UNIFORM_STD = 12**-0.5  # std of a uniform [0, 1] variable: equalised images are scaled to unit variance


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[[int, int], nn.Module]  # (in_channels, num_classes) -> module
    description: str
    head: str  # name of the classification head module: replaced by fine-tuning, kept trainable by --freeze-backbone
    # (regex, replacement) pairs that turn another library's tensor names into this model's, so a weights file
    # saved there (e.g. torchvision's ImageNet DenseNet) loads with `--weights`; applied to names the model lacks
    foreign_names: tuple[tuple[str, str], ...] = ()
    # the first cxr version whose saved models of this name fit this architecture: a bundle saved by an older cxr may
    # have the same tensor shapes but another network (e.g. a different stride), so it is refused, not run wrongly
    compatible_since: str = "0.1.0"


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    description: str,
    head: str = "classifier",
    foreign_names: tuple[tuple[str, str], ...] = (),
    compatible_since: str = "0.1.0",
) -> Callable:
    """Decorator: add a factory `f(in_channels, num_classes) -> nn.Module` under `name`."""

    def wrap(factory: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, description, head, foreign_names, compatible_since)
        return factory

    return wrap


def available_models() -> list[str]:
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise CxrError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)} (see `cxr models`)")
    return _REGISTRY[name]


def _standardise_each_image(_module: nn.Module, args: tuple) -> tuple:
    return (F.instance_norm(args[0]),) + args[1:]


# By hand, not monai's HistogramNormalize: it works on one image in numpy, this runs batched inside the model, so
# training, prediction, Grad-CAM and the ONNX graph all equalise the same way.
def _equalise_each_image(_module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    flat = x.detach().float().flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    levels = ((flat - lo) / (hi - lo).clamp_min(1e-12) * (HISTEQ_BINS - 1)).round().long()
    counts = torch.zeros(flat.shape[0], HISTEQ_BINS, dtype=flat.dtype, device=flat.device)
    counts = counts.scatter_add(1, levels, torch.ones_like(flat))
    mid_rank = (counts.cumsum(1) - counts / 2) / flat.shape[1]  # mid-rank: a flat image maps to 0.5, the mean is 0.5
    equalised = (mid_rank.gather(1, levels) - 0.5) / UNIFORM_STD
    return (equalised.reshape(x.shape).to(x.dtype),) + args[1:]


_INPUT_HOOKS = {"image": _standardise_each_image, "histeq": _equalise_each_image}


def create_model(name: str, num_classes: int, in_channels: int = 1, input_norm: str = "dataset") -> nn.Module:
    """A fresh registry model; `input_norm` "image" or "histeq" normalises each input image first (see INPUT_NORMS)."""
    if input_norm not in INPUT_NORMS:
        raise CxrError(f"unknown input_norm {input_norm!r}; choose one of {', '.join(INPUT_NORMS)}")
    net = model_spec(name).factory(in_channels, num_classes)
    if input_norm in _INPUT_HOOKS:
        # A pre-hook, not a wrapper: state-dict keys, the head's name and layer names stay the registry model's, so
        # weights files, --freeze-backbone and Grad-CAM layers work unchanged; tracing (ONNX) runs the hook too.
        net.register_forward_pre_hook(_INPUT_HOOKS[input_norm])
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
