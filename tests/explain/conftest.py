"""A small model trained in seconds on synthetic images whose class is decided by a bright blob: a known answer
for where Grad-CAM must look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.data.transforms import normalise
from cxr.inference.bundle import Bundle, BundleMeta
from cxr.models import create_model

SIZE = 48
CLASSES = ["clear", "opacity"]  # sorted, like class folders
MEAN, STD = 0.3, 0.2


def blob_image(has_blob: bool, rng: np.random.Generator, height: int, width: int, at=None) -> np.ndarray:
    """Noise; with a blob, a bright Gaussian spot at `at` = (row, col) as fractions of the height and width."""
    img = rng.normal(70, 20, (height, width))
    if has_blob:
        r, c = at if at is not None else rng.uniform(0.05, 0.95, 2)
        yy, xx = np.mgrid[:height, :width]
        dist2 = ((yy - r * height) / (0.06 * height)) ** 2 + ((xx - c * width) / (0.06 * width)) ** 2
        img += 150 * np.exp(-dist2 / 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def train_blob_model(steps: int = 24, seed: int = 0) -> torch.nn.Module:
    """vanilla-cnn (a registry model) learns 'is there a blob anywhere'; its 6x6 last feature map can localise it."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.arange(64) % 2
    x = normalise(np.stack([blob_image(bool(y), rng, SIZE, SIZE) for y in labels]), MEAN, STD)
    y = torch.as_tensor(labels)
    model = create_model("vanilla-cnn", len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (16,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def blob_model() -> torch.nn.Module:
    return train_blob_model()


def make_bundle(model: torch.nn.Module, run_dir: Path = Path("."), threshold=None) -> Bundle:
    meta = BundleMeta("vanilla-cnn", list(CLASSES), SIZE, MEAN, STD, threshold=threshold)
    return Bundle(Path(run_dir), meta, model, {})
