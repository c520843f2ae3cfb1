"""Turn a config into in-memory training data: scan folders or a manifest, carve validation (grouped by patient when
ids exist), decode once, normalisation stats."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxr.config import TrainConfig
from cxr.data.cache import decode_cached
from cxr.data.folders import ClassFolderDataset, LabeledFiles
from cxr.data.manifest import load_dataset
from cxr.data.splits import carve_validation, patient_groups, write_splits_csv
from cxr.errors import CxrError
from cxr.rundir import RunDir

log = logging.getLogger("cxr")


@dataclass
class PreparedData:
    classes: list[str]
    files: dict[str, LabeledFiles]  # readable files of train/val (and test, undecoded)
    images: dict[str, np.ndarray]  # decoded uint8 (N, S, S) for train and val
    mean: float
    std: float
    skipped: list[str]  # unreadable files, one message each


def _decode_split(files: LabeledFiles, cfg: TrainConfig, name: str) -> tuple[LabeledFiles, np.ndarray, list[str]]:
    decoded = decode_cached(files.paths, cfg.image_size, cfg.cache_dir, desc=f"decoding {name}")
    if decoded.errors and cfg.strict:
        raise CxrError(f"{len(decoded.errors)} unreadable image(s) in {name} (--strict): {decoded.errors[0]}")
    kept = LabeledFiles([files.paths[i] for i in decoded.kept], [files.labels[i] for i in decoded.kept])
    return kept, decoded.images, decoded.errors


def split_seed(cfg: TrainConfig) -> int:
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def load_config_data(cfg: TrainConfig) -> ClassFolderDataset:
    """The config's dataset: class folders or a CSV manifest."""
    if cfg.data is None:
        raise CxrError(
            "no data given; pass --data FOLDER (with train/<class>/ subfolders) or set `data:` in the config"
        )
    return load_dataset(cfg.data)


def prepare_data(cfg: TrainConfig, run_dir: Path, merge_val: bool = False) -> PreparedData:
    """Decoded train and val of `cfg.data`; with `merge_val` (refit) one train split that holds both, and no val."""
    ds = load_config_data(cfg)
    if "val" in ds.splits:
        train, val = ds.splits["train"], ds.splits["val"]
    else:
        # Grouped by patient when ids exist (manifest column or file-name pattern): no patient in both train and val.
        groups = patient_groups(ds.splits["train"].paths, cfg.patient_id_pattern, ds.patient_ids)
        if groups is not None:
            log.info("validation carved by patient: %d patient groups in train", len(set(groups)))
        train, val = carve_validation(ds.splits["train"], cfg.val_fraction, split_seed(cfg), groups=groups)
    train, train_images, err_train = _decode_split(train, cfg, "train")
    val, val_images, err_val = _decode_split(val, cfg, "val")
    skipped = err_train + err_val
    for msg in skipped:
        log.warning("skipped unreadable image: %s", msg)
    for name, files in (("train", train), ("val", val)):
        missing = set(range(len(ds.classes))) - set(files.labels)
        if missing:
            raise CxrError(f"{name} split has no readable images of class {ds.classes[min(missing)]!r}")
    files, images = {"train": train, "val": val}, {"train": train_images, "val": val_images}
    if merge_val:
        files = {"train": LabeledFiles(train.paths + val.paths, train.labels + val.labels)}
        images = {"train": np.concatenate([train_images, val_images])}
    if "test" in ds.splits:
        files["test"] = ds.splits["test"]
    write_splits_csv(RunDir(run_dir).splits, files, ds.classes)
    pixels = images["train"].astype(np.float32) / 255.0
    mean, std = float(pixels.mean()), float(pixels.std()) or 1.0
    return PreparedData(ds.classes, files, images, mean, std, skipped)


def balanced_class_weights(labels: list[int], num_classes: int) -> list[float]:
    """sklearn's 'balanced' rule: n_samples / (n_classes * count_c)."""
    from sklearn.utils.class_weight import compute_class_weight

    return compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels)).tolist()


def balanced_sampler(labels: list[int], seed: int) -> torch.utils.data.WeightedRandomSampler:
    """Each image drawn with probability 1 / (its class count): every class equally often per epoch, in expectation.

    An epoch keeps its usual length (one draw per training image), so epochs, patience and LR schedules mean the same.
    """
    y = np.asarray(labels)
    per_image = 1.0 / np.bincount(y)[y]
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(
        per_image.tolist(), num_samples=len(y), replacement=True, generator=generator
    )


class UndersamplingSampler(torch.utils.data.Sampler[int]):
    """Each epoch every image of the smallest class and an equal number drawn afresh from each other class.

    The draw is seeded by (seed, epoch), so a run (and a resumed one) sees the same epochs; Lightning calls `set_epoch`
    each epoch, under DDP through its distributed wrapper, whose ranks then split one identical draw (as they split
    `balanced_sampler`'s).
    """

    def __init__(self, labels: list[int], seed: int):
        y = np.asarray(labels)
        self.by_class = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
        self.per_class = min(len(ix) for ix in self.by_class if len(ix))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_class * sum(1 for ix in self.by_class if len(ix))

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = [rng.choice(ix, self.per_class, replace=False) for ix in self.by_class if len(ix)]
        return iter(rng.permutation(np.concatenate(drawn)).tolist())


def train_sampler(sampling: str, labels: list[int], seed: int) -> torch.utils.data.Sampler | None:
    """The sampler of `sampling` (config key); None: shuffle each epoch."""
    if sampling == "balanced":
        return balanced_sampler(labels, seed)
    if sampling == "undersample":
        return UndersamplingSampler(labels, seed)
    return None
