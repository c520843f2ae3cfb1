"""Pixel pipeline shared by training and inference: uint8 image -> normalised float tensor (+ train-only aug)."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Lambda,
    RandAdjustContrast,
    RandAffine,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandSimulateLowResolution,
)

from cxr.data.settings import AugmentConfig

LOW_RES_ZOOM = (0.25, 1.0)  # 224 px films seen as if they came from 56-224 px sources
MIN_BLUR_SIGMA = 0.25  # px at 224: the mildest blur drawn when augment.blur is on


def _clip_to_film(x: torch.Tensor) -> torch.Tensor:
    """Clamp to 0..1 after noise (MONAI's ClipIntensityPercentiles works on percentiles, not values)."""
    return x.clamp(0.0, 1.0)


def normalise(images_uint8: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N, H, W) or (H, W) uint8 -> float32 with a channel axis, scaled to 0..1 then standardised."""
    x = torch.as_tensor(images_uint8).float().div_(255.0)
    return x.unsqueeze(-3).sub_(mean).div_(std)


def train_augmentation(cfg: AugmentConfig, image_size: int, seed: int) -> Compose:
    """Small rotation, shift and zoom (MONAI RandAffine); flip, contrast, brightness, low resolution, blur and noise
    when asked for. Blur and noise come last, as a detector adds them after the anatomy is framed."""
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
        transforms.append(
            RandSimulateLowResolution(
                prob=cfg.low_res, downsample_mode="area", upsample_mode="bilinear", zoom_range=LOW_RES_ZOOM
            )
        )
    if cfg.blur > 0:
        top = cfg.blur * image_size / 224
        sigma = (min(MIN_BLUR_SIGMA, top), top)
        transforms.append(RandGaussianSmooth(sigma_x=sigma, sigma_y=sigma, prob=1 / 3))
    if cfg.noise > 0:  # clipped after: a film is 0..1 (black to white), as the battery's uint8 films are. Only
        # here: blur cannot leave 0..1, and configs with brightness alone train as they did before cxr 0.7
        transforms.append(RandGaussianNoise(prob=0.5, mean=0.0, std=cfg.noise, sample_std=True))
        transforms.append(Lambda(func=_clip_to_film))
    comp = Compose(transforms)
    comp.set_random_state(seed=seed)
    return comp
