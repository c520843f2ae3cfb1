"""Initialise a model from a weights file (transfer learning without a model hub) and freeze its backbone.

Accepted files: a cxr run directory or its `model.pt`, a Lightning checkpoint (`*.ckpt`), or a plain state dict.
Tensors are matched by name and shape; the report says which layers loaded and which did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cxr.errors import CxrError


@dataclass
class WeightsReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    not_loaded: dict[str, str] = field(default_factory=dict)  # model tensor -> reason
    unused: list[str] = field(default_factory=list)  # file tensors with no home in the model

    def summary(self) -> str:
        total = len(self.loaded) + len(self.not_loaded)
        text = f"loaded {len(self.loaded)}/{total} tensors from {self.source}"
        if self.not_loaded:
            text += "; not loaded: " + ", ".join(f"{k} ({v})" for k, v in list(self.not_loaded.items())[:6])
            text += " ..." if len(self.not_loaded) > 6 else ""
        return text

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": self.loaded, "not_loaded": self.not_loaded, "unused": self.unused}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a run dir / model.pt / Lightning .ckpt / plain state dict, with Lightning's `net.` prefix removed."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise CxrError(f"weights file {path} not found; pass a cxr run directory, its model.pt, a .ckpt or a state dict")
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
    if all(k.startswith("net.") for k in tensors):  # cxr's LightningModule wraps the network as `net`
        tensors = {k[len("net."):]: v for k, v in tensors.items()}
    return tensors


def load_matching_weights(model: nn.Module, path: str | Path) -> WeightsReport:
    """Copy every tensor whose name and shape match; a file that matches nothing is an error."""
    source = read_state_dict(path)
    target = model.state_dict()
    report = WeightsReport(str(path))
    update = {}
    for name, tensor in target.items():
        if name not in source:
            report.not_loaded[name] = "not in file"
        elif source[name].shape != tensor.shape:
            report.not_loaded[name] = f"shape {tuple(source[name].shape)} vs {tuple(tensor.shape)}"
        else:
            update[name] = source[name]
            report.loaded.append(name)
    report.unused = [k for k in source if k not in target]
    if not update:
        raise CxrError(f"no tensor in {path} matches this model's layers; was it trained with another architecture?")
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


def keep_frozen_norms_in_eval(model: nn.Module, head: str) -> None:
    """Batch-norm layers of a frozen backbone use their stored statistics, as Keras does for trainable=False."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not name.startswith(head):
            m.eval()
