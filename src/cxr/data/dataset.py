"""Torch dataset over decoded uint8 images held in memory (decoded once per run by `cache.py`)."""

from __future__ import annotations

import numpy as np
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from cxr.data.transforms import normalise


class DecodedImageDataset(Dataset):
    """Yields (normalised 1xHxW tensor, label); `augment` (MONAI Compose) runs on training items only."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float, augment=None):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mean, self.std = mean, std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = normalise(self.images[i], 0.0, 1.0)  # 0..1, so affine padding is black
        if self.augment is not None:
            x = convert_to_tensor(self.augment(x), track_meta=False)
        return (x - self.mean) / self.std, int(self.labels[i])
