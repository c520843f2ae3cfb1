"""Pixel pipeline shared by training and inference: uint8 image -> normalised float tensor (+ train-only aug)."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandFlip,
    RandScaleIntensity,
    RandSimulateLowResolution,
)

from cxr.config import AugmentConfig

LOW_RES_ZOOM = (0.25, 1.0)  # 224 px films seen as if they came from 56-224 px sources


def normalise(images_uint8: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N, H, W) or (H, W) uint8 -> float32 with a channel axis, scaled to 0..1 then standardised."""
    x = torch.as_tensor(images_uint8).float().div_(255.0)
    return x.unsqueeze(-3).sub_(mean).div_(std)


def train_augmentation(cfg: AugmentConfig, image_size: int, seed: int) -> Compose:
    """Small rotation, shift and zoom (MONAI RandAffine); flip, contrast, brightness, low resolution when asked for."""
    shift_px = cfg.shift * image_size  # MONAI's translate range is in pixels
    transforms = [
        RandAffine(
            prob=cfg.prob,
            rotate_range=float(np.deg2rad(cfg.rotation_deg)),
            translate_range=(shift_px, shift_px),
            scale_range=(cfg.zoom, cfg.zoom),
            padding_mode="zeros",
            mode="bilinear",
        )
    ]
    if cfg.hflip:
        transforms.append(RandFlip(prob=0.5, spatial_axis=1))
    if cfg.contrast > 0:
        transforms.append(RandAdjustContrast(prob=0.5, gamma=(1 - cfg.contrast, 1 + cfg.contrast)))
    if cfg.brightness > 0:
        transforms.append(RandScaleIntensity(factors=cfg.brightness, prob=0.5))
    if cfg.low_res > 0:
        transforms.append(RandSimulateLowResolution(
            prob=cfg.low_res, downsample_mode="area", upsample_mode="bilinear", zoom_range=LOW_RES_ZOOM))  # fmt: skip
    comp = Compose(transforms)
    comp.set_random_state(seed=seed)
    return comp
