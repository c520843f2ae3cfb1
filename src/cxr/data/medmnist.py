"""MedMNIST `.npz` source (`{train,val,test}_{images,labels}`), materialised once as a class-folder dataset.

Why folders: every downstream step (splits.csv, evaluate, predict, audit, explain) then works on files unchanged.
The folders live under the cache dir, keyed by the npz's content hash, never beside the read-only dataset.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.atomic import atomic_path
from cxr.errors import CxrError

# Class names of MedMNIST sets we know; others get class0, class1, ... (label order kept by sorted names).
KNOWN_CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"], "chestmnist": None}
SPLITS = ("train", "val", "test")


def _class_names(npz_path: Path, n_classes: int) -> list[str]:
    known = KNOWN_CLASS_NAMES.get(npz_path.stem.lower())
    if known and len(known) == n_classes:
        return known
    return [f"class{i}" for i in range(n_classes)] if n_classes <= 10 else [f"class{i:03d}" for i in range(n_classes)]


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def npz_to_class_folders(npz_path: str | Path, cache_dir: Path) -> Path:
    """Write `<cache>/medmnist/<stem>-<hash>/{train,val,test}/<class>/<index>.png` once; return that root."""
    npz_path = Path(npz_path)
    root = Path(cache_dir) / "medmnist" / f"{npz_path.stem}-{_file_digest(npz_path)}"
    if (root / ".complete").is_file():
        return root
    try:
        z = np.load(npz_path)
    except (OSError, ValueError) as e:
        raise CxrError(f"{npz_path}: not a readable .npz file ({e})") from None
    missing = [f"{s}_{k}" for s in ("train", "test") for k in ("images", "labels") if f"{s}_{k}" not in z.files]
    if missing:
        raise CxrError(f"{npz_path}: not in MedMNIST format, missing arrays {missing}")
    labels = {s: z[f"{s}_labels"].reshape(len(z[f"{s}_labels"]), -1) for s in SPLITS if f"{s}_labels" in z.files}
    if any(v.shape[1] != 1 for v in labels.values()):
        raise CxrError(f"{npz_path}: multi-label MedMNIST sets are not supported (labels must be one class per image)")
    n_classes = int(max(v.max() for v in labels.values())) + 1
    names = _class_names(npz_path, n_classes)
    with atomic_path(root) as tmp:  # readers never see a half-written dataset
        shutil.rmtree(tmp, ignore_errors=True)
        for split, y in labels.items():
            images = np.asarray(z[f"{split}_images"])
            for c in names:
                (tmp / split / c).mkdir(parents=True, exist_ok=True)
            for i, (img, label) in enumerate(zip(images, y[:, 0])):
                Image.fromarray(img.astype(np.uint8)).save(tmp / split / names[label] / f"{i:06d}.png")
        (tmp / ".complete").write_text(str(npz_path.resolve()))
        shutil.rmtree(root, ignore_errors=True)  # an incomplete earlier one: a folder cannot be renamed over
    return root
