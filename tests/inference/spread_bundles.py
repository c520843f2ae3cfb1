"""Model bundles for inference and serving tests, fitted in seconds with a few plain optimiser steps.

An untrained network outputs nearly uniform probabilities, so agreement checks between backends, or between the
API and the page, would pass trivially. A few Adam steps on a handful of real X-rays spread them like a trained
model's; the full Lightning pipeline (~20 s and more) is tested elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cxr.data.images import find_images, load_grayscale
from cxr.data.transforms import normalise
from cxr.inference.bundle import BundleMeta, save_bundle
from cxr.inference.guard_fit import fit_guard
from cxr.models import create_model
from tests.conftest import CODECADEMY

MEAN, STD = 0.5, 0.25


def codecademy_sample(split: str, per_class: int, size: int) -> tuple[list[str], list[Path], np.ndarray, np.ndarray]:
    """The first `per_class` images of each class: (classes, paths, uint8 images (N, size, size), labels)."""
    classes = sorted(d.name for d in (CODECADEMY / split).iterdir() if d.is_dir())
    paths = [p for c in classes for p in find_images([CODECADEMY / split / c])[:per_class]]
    labels = np.array([classes.index(p.parent.name) for p in paths])
    return classes, paths, np.stack([load_grayscale(p, size) for p in paths]), labels


def make_bundle(
    run_dir: Path,
    model: str = "smallnet",
    image_size: int = 64,
    steps: int = 12,
    seed: int = 0,
    guard: bool = False,
    **meta,
) -> Path:
    """Write model.pt for `model` fitted briefly on 8 codecademy train images per class; returns run_dir.
    `guard`: also fit the input guard, on those images and (threshold) the next 8 per class."""
    classes, paths, sample, sample_labels = codecademy_sample("train", 16 if guard else 8, image_size)
    first = np.concatenate([np.flatnonzero(sample_labels == c)[:8] for c in range(len(classes))])
    rest = np.setdiff1d(np.arange(len(sample)), first)
    images, labels = sample[first], sample_labels[first]
    torch.manual_seed(seed)
    net = create_model(model, num_classes=len(classes), input_norm=meta.get("input_norm", "dataset"))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = normalise(images, MEAN, STD), torch.as_tensor(labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is as fast, and far faster when other jobs share the CPU
    try:
        net.train()
        for _ in range(steps):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    bundle_meta = BundleMeta(model, classes, image_size, MEAN, STD, **meta)
    fitted = (
        fit_guard(net.eval(), bundle_meta, images, labels, sample[rest], [paths[i] for i in first]) if guard else None
    )
    save_bundle(run_dir, net.eval(), bundle_meta, fitted)
    return run_dir
