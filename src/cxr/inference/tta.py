"""Test-time augmentation: average a model's logits over a fixed set of small geometric views of each image.

The views are deterministic (not random draws), so the same image always gets the same prediction, and they stay
inside the training augmentation's range (rotation 10 deg, shift 0.1, zoom 0.1), so the model has seen such films.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from monai.transforms import Affine

# (rotation in degrees, shift x and y as a fraction of the image side, scale): identity first
TTA_VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 0.0, 1.0),
    (5.0, 0.0, 0.0, 1.0),
    (-5.0, 0.0, 0.0, 1.0),
    (0.0, 0.05, 0.0, 1.0),
    (0.0, -0.05, 0.0, 1.0),
    (0.0, 0.0, 0.05, 1.0),
    (0.0, 0.0, -0.05, 1.0),
    (0.0, 0.0, 0.0, 0.95),
    (0.0, 0.0, 0.0, 1.05),
)


def view(images_uint8: np.ndarray, rotation_deg: float, shift_x: float, shift_y: float, scale: float) -> np.ndarray:
    """(N, S, S) uint8 -> the same batch rotated, shifted and scaled; black padding, as in training."""
    if (rotation_deg, shift_x, shift_y, scale) == (0.0, 0.0, 0.0, 1.0):
        return images_uint8
    size = images_uint8.shape[-1]
    affine = Affine(
        rotate_params=float(np.deg2rad(rotation_deg)),
        translate_params=(shift_y * size, shift_x * size),  # MONAI: pixels, (rows, columns)
        scale_params=(scale, scale),
        padding_mode="zeros",
        mode="bilinear",
        image_only=True,
    )
    # the batch axis stands in for MONAI's channel axis: one call moves every image the same way
    moved = np.asarray(affine(images_uint8.astype(np.float32)))
    return np.clip(np.rint(moved), 0, 255).astype(np.uint8)


def tta_logits(logits_fn: Callable[[np.ndarray], np.ndarray], images_uint8: np.ndarray) -> np.ndarray:
    """Mean of `logits_fn` over TTA_VIEWS: (N, S, S) uint8 -> (N, C)."""
    return np.mean([logits_fn(view(images_uint8, *v)) for v in TTA_VIEWS], axis=0)
