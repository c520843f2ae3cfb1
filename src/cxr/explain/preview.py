"""`cxr data preview`: training images after augmentation, exactly as the training data set hands them over."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr.data.dataset import DecodedImageDataset
from cxr.data.folders import scan_class_folders
from cxr.data.images import ImageReadError, load_grayscale
from cxr.data.transforms import train_augmentation
from cxr.errors import CxrError
from cxr.explain.grids import image_grid

if TYPE_CHECKING:
    from cxr.config import TrainConfig

log = logging.getLogger("cxr")


def preview_training_images(
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    per_class: int = 6,
    seed: int = 0,
    augment: bool = True,
) -> Path:
    """Grid of `per_class` random training images per class, resized and (unless `augment=False`) augmented with
    the config's settings (`cfg.image_size`, `cfg.augment`) through the training dataset class itself, labelled with
    class and file name."""
    if per_class < 1:
        raise CxrError(f"--per-class must be at least 1, not {per_class}")
    ds = scan_class_folders(data)
    train = ds.splits["train"]
    rng = np.random.default_rng(seed)
    images, labels, names = [], [], []
    for label in range(len(ds.classes)):
        candidates = [p for p, y in zip(train.paths, train.labels) if y == label]
        for i in rng.permutation(len(candidates)):
            if sum(1 for y in labels if y == label) >= per_class:
                break
            try:
                images.append(load_grayscale(candidates[i], cfg.image_size))
            except ImageReadError as e:
                log.warning(f"skipped {e}")  # preview what trains: `cxr train` skips it too
                continue
            labels.append(label)
            names.append(candidates[i].name)
    if not images:
        raise CxrError(f"no readable training images under {ds.root}/train")
    transform = train_augmentation(cfg.augment, cfg.image_size, seed) if augment else None
    dataset = DecodedImageDataset(np.stack(images), np.array(labels), mean=0.0, std=1.0, augment=transform)
    tiles = [np.round(255 * dataset[i][0][0].clamp(0, 1).numpy()).astype(np.uint8) for i in range(len(dataset))]
    titles = [f"{ds.classes[y]}\n{name[:22]}" for y, name in zip(labels, names)]
    a = cfg.augment
    what = (
        (
            f"augmented: rotate <= {a.rotation_deg:g} deg, shift <= {a.shift:g}, zoom <= {a.zoom:g}, "
            f"hflip {'on' if a.hflip else 'off'}, p={a.prob:g}"
        )
        if augment
        else "not augmented"
    )
    suptitle = f"{Path(data).name} train, {cfg.image_size} px, {what}"
    return image_grid(tiles, titles, out, ncols=min(per_class, 8), suptitle=suptitle)
