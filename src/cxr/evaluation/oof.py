"""`predictions_oof.csv`, the out-of-fold predictions of a cross-validation (`cxr train --cv`): written by
cxr.training.cv, read by `cxr compare` to compare two cross-validated configs image by image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cxr.atomic import atomic_path
from cxr.errors import CxrError
from cxr.rundir import CV, OOF_PREDICTIONS

OOF_FILE = OOF_PREDICTIONS  # cxr.rundir's names, by their older names here
CV_FILE = CV


def is_cross_validation(folder: Path) -> bool:
    return (Path(folder) / CV_FILE).is_file()


def write_oof(path: Path, scored: list[tuple[str, int]], y: list[int], probs: np.ndarray, classes: list[str]) -> None:
    """One row per image: path, true label, the fold that held it out, one probability per class."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "fold", *(f"p_{c}" for c in classes)])
        for (image, fold), label, row in zip(scored, y, probs):
            w.writerow([image, classes[label], fold, *(f"{v:.6f}" for v in row)])


def read_oof(folder: Path) -> tuple[list[str], dict[str, tuple[int, np.ndarray, str]]]:
    """Classes and, per image path, (label index, probabilities, the fold that held it out) of a finished
    cross-validation."""
    path = Path(folder) / OOF_FILE
    if not path.is_file():
        raise CxrError(f"{folder} has no {OOF_FILE}; finish the cross-validation with `cxr train --resume --cv K`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        classes = [c.removeprefix("p_") for c in reader.fieldnames or [] if c.startswith("p_")]
        rows = {
            r["path"]: (classes.index(r["label"]), np.array([float(r[f"p_{c}"]) for c in classes]), r["fold"])
            for r in reader
        }
    return classes, rows
