"""Shared fixtures: CPU only, a private cache dir, and tiny synthetic class-folder datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CODECADEMY = SHARED_DATA / "covid19-codecademy"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cxr-cache"))


def synthetic_image(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """Class 0: bright blob top-left; class 1: bottom-right; class 2: centre. Noise everywhere."""
    img = rng.normal(60, 15, (size, size))
    q = size // 4
    centre = [(q, q), (3 * q, 3 * q), (2 * q, 2 * q)][label]
    yy, xx = np.mgrid[:size, :size]
    img += 150 * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * (size / 10) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_class_folders(
    root: Path, classes=("normal", "pneumonia"), n_train: int = 12, n_test: int = 4, size: int = 48, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(synthetic_image(label, rng, size)).save(d / f"img{i:03d}.png")
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return make_class_folders(tmp_path / "data")
