"""What the first convolution layers respond to: their output channels for one image, as a grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cxr.data.transforms import normalise
from cxr.explain.grids import image_grid, to_uint8


@torch.inference_mode()
def first_conv_activations(
    model: torch.nn.Module, model_input: np.ndarray, mean: float, std: float, n_layers: int = 2
) -> list[tuple[str, np.ndarray]]:
    """(S, S) uint8 -> [(layer name, (C, h, w) outputs)] for the first `n_layers` Conv2d layers, in the order the
    forward pass runs them (definition order can differ)."""
    seen: list[tuple[str, np.ndarray]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):

            def keep(_m, _inp, out, name=name):
                if len(seen) < n_layers and all(n != name for n, _ in seen):
                    seen.append((name, out[0].detach().float().cpu().numpy().copy()))

            hooks.append(module.register_forward_hook(keep))
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(normalise(model_input[None], mean, std).to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def save_feature_maps(
    bundle, model_input: np.ndarray, path: str | Path, n_layers: int = 2, max_channels: int = 16, title: str = ""
) -> Path:
    """Grid: the input as the model sees it, then up to `max_channels` channels of each early conv layer
    (each channel scaled to its own range, bright = strong response)."""
    meta = bundle.meta
    layers = first_conv_activations(bundle.model, model_input, meta.mean, meta.std, n_layers)
    ncols = 8
    tiles: list[np.ndarray | None] = [np.repeat(model_input[..., None], 3, axis=-1)]  # RGB: stays grey
    titles = ["input (model view)"]
    for name, acts in layers:
        pad = -len(tiles) % ncols  # each layer starts on a new row
        tiles += [None] * pad
        titles += [""] * pad
        for c in range(min(max_channels, acts.shape[0])):
            tiles.append(to_uint8(acts[c]))
            titles.append(f"{name} #{c}")
    return image_grid(
        tiles,
        titles,
        path,
        ncols=ncols,
        cmap="viridis",
        tile_inches=1.6,
        suptitle=title or f"first {len(layers)} convolution layers ({meta.model})",
    )
