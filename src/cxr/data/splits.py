"""Validation carve-out from train (stratified, seeded, optionally grouped by patient) and `splits.csv`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from cxr.data.folders import LabeledFiles
from cxr.errors import CxrError


def carve_validation(
    files: LabeledFiles, fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[LabeledFiles, LabeledFiles]:
    """Split `files` into (train, val) with class proportions kept; no group appears on both sides."""
    labels = np.asarray(files.labels)
    idx = np.arange(len(files))
    counts = np.bincount(labels)
    if counts.min() < 2:
        raise CxrError("a class has fewer than 2 training images; cannot carve a stratified validation split")
    if groups is not None:
        n_splits = max(2, round(1 / fraction))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(splitter.split(idx, labels, groups))
    else:
        train_idx, val_idx = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)

    def pick(ix: np.ndarray) -> LabeledFiles:
        ix = np.sort(ix)
        return LabeledFiles([files.paths[i] for i in ix], [files.labels[i] for i in ix])

    return pick(train_idx), pick(val_idx)


def write_splits_csv(path: Path, splits: dict[str, LabeledFiles], classes: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for split, files in splits.items():
            for p, y in zip(files.paths, files.labels):
                w.writerow([str(Path(p).resolve()), classes[y], split])


def read_splits_csv(path: Path, classes: list[str]) -> dict[str, LabeledFiles]:
    out: dict[str, LabeledFiles] = {}
    index = {c: i for i, c in enumerate(classes)}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            files = out.setdefault(row["split"], LabeledFiles())
            files.paths.append(Path(row["path"]))
            files.labels.append(index[row["label"]])
    return out
