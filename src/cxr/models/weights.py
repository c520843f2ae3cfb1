"""Initialise a model from a weights file (transfer learning without a model hub) and freeze its backbone.

Accepted files: a cxr run directory or its `model.pt`, a Lightning checkpoint (`*.ckpt`), or a plain state dict,
including another library's ImageNet file for the same architecture (torchvision ResNet-18 / DenseNet-121 / VGG-16,
EfficientNet-PyTorch B0): names are translated by the registry's `foreign_names`, and an RGB input convolution is
summed over its colour channels to take one grayscale channel (timm's `adapt_input_conv` does the same; a gray film
is R = G = B, so the summed filter gives the RGB filter's response). Tensors are matched by name and shape; the
report says which layers loaded, which were adapted and which did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cxr.errors import CxrError
from cxr.rundir import MODEL


@dataclass
class WeightsReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    not_loaded: dict[str, str] = field(default_factory=dict)  # model tensor -> reason
    unused: list[str] = field(default_factory=list)  # file tensors with no home in the model
    adapted: dict[str, str] = field(default_factory=dict)  # model tensor -> how it was made to fit (also in loaded)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.not_loaded)
        text = f"loaded {len(self.loaded)}/{total} tensors from {self.source}"
        if self.adapted:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in self.adapted.items()) + ")"
        if self.not_loaded:
            text += "; not loaded: " + ", ".join(f"{k} ({v})" for k, v in list(self.not_loaded.items())[:6])
            text += " ..." if len(self.not_loaded) > 6 else ""
        return text

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "adapted": self.adapted,
            "not_loaded": self.not_loaded,
            "unused": self.unused,
        }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a run dir / model.pt / Lightning .ckpt / plain state dict (wrapper prefixes are removed later)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise CxrError(
            f"weights file {path} not found; pass a cxr run directory, its model.pt, a .ckpt or a state dict"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many unrelated types for foreign files
        raise CxrError(f"{path}: not a readable PyTorch weights file ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not tensors:
        raise CxrError(f"{path}: holds no tensors (expected a state dict)")
    return tensors


# `net.`: cxr's LightningModule; `module.`: DataParallel / DDP; `model.`: a common LightningModule attribute
WRAPPER_PREFIXES = ("net.", "module.", "model.")


def _strip_wrapper_prefixes(source: dict[str, torch.Tensor], target: dict) -> dict[str, torch.Tensor]:
    """Drop prefixes every file tensor shares and no model tensor has (repeatedly: `module.net.` too)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in source) and not any(k.startswith(prefix) for k in target):
                source = {k[len(prefix) :]: v for k, v in source.items()}
                stripped = True
    return source


def _name_in_file(name: str, source: dict, foreign_names: tuple[tuple[str, str], ...]) -> str | None:
    """The file's name for the model tensor `name`: itself, or another library's spelling of it."""
    if name in source:
        return name
    for pattern, replacement in foreign_names:
        candidate, n = re.subn(pattern, replacement, name)
        if n and candidate in source:
            return candidate
    return None


def _fit_input_channels(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """An RGB (or any k-channel) conv kernel summed to the one input channel of `shape`; None when that is not it."""
    if tensor.ndim == 4 and len(shape) == 4 and shape[1] == 1 and tensor.shape[1] > 1:
        if tensor.shape[0] == shape[0] and tensor.shape[2:] == shape[2:]:
            return tensor.sum(dim=1, keepdim=True)
    return None


def load_matching_weights(
    model: nn.Module, path: str | Path, foreign_names: tuple[tuple[str, str], ...] = ()
) -> WeightsReport:
    """Copy every tensor whose name (or foreign name) and shape match; a file that fits under half is an error."""
    target = model.state_dict()
    source = _strip_wrapper_prefixes(read_state_dict(path), target)
    report = WeightsReport(str(path))
    update, used = {}, set()
    for name, tensor in target.items():
        key = _name_in_file(name, source, foreign_names)
        if key is None:
            report.not_loaded[name] = "not in file"
            continue
        used.add(key)
        value = source[key]
        if value.shape != tensor.shape:
            fitted = _fit_input_channels(value, tensor.shape)
            if fitted is None:
                report.not_loaded[name] = f"shape {tuple(value.shape)} vs {tuple(tensor.shape)}"
                continue
            report.adapted[name] = f"{value.shape[1]} input channels summed to 1"
            value = fitted
        update[name] = value.to(tensor.dtype)
        report.loaded.append(name)
    report.unused = [k for k in source if k not in used]
    if len(update) < len(target) / 2:  # a head of another size is a few tensors; most missing = another network
        raise CxrError(
            f"only {len(update)} of {len(target)} tensors in {path} match this model's layers; was it saved from "
            "another architecture? Pass a file of the same --model"
        )
    model.load_state_dict(update, strict=False)
    return report


def freeze_backbone(model: nn.Module, head: str) -> list[str]:
    """Freeze every parameter outside `head` (the classic frozen base + new head); returns trainable names."""
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(head + ".")
        if p.requires_grad:
            trainable.append(name)
    if not trainable:
        raise CxrError(f"no parameters under head {head!r}; cannot freeze the backbone of this model")
    return trainable


def batch_norm_layers(model: nn.Module, outside: str | None = None) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of `model`, leaving out those whose name starts with `outside` (e.g. the head)."""
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not (outside and name.startswith(outside))
    ]


def keep_frozen_norms_in_eval(model: nn.Module, head: str) -> None:
    """Batch-norm layers of a frozen backbone use their stored statistics, as Keras does for trainable=False."""
    for m in batch_norm_layers(model, outside=head):
        m.eval()
