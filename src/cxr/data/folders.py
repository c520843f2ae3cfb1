"""Class-folder datasets: `<root>/train/<class>/*`, `<root>/test/<class>/*`, optional `<root>/val/<class>/*`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cxr.data.cache import default_cache_dir
from cxr.data.images import IMAGE_EXTENSIONS, is_image_file
from cxr.data.medmnist import npz_to_class_folders
from cxr.errors import CxrError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class LabeledFiles:
    """Files and integer labels of one split; labels index into the dataset's sorted class list."""

    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ClassFolderDataset:
    root: Path
    classes: list[str]
    splits: dict[str, LabeledFiles]
    patient_ids: dict[Path, str] = field(default_factory=dict)  # known ids (from a CSV manifest), by file path


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan_split(split_dir: Path, classes: list[str]) -> LabeledFiles:
    files = LabeledFiles()
    for label, name in enumerate(classes):
        images = sorted(f for f in (split_dir / name).rglob("*") if f.is_file() and is_image_file(f))
        if not images:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise CxrError(f"{split_dir / name} has no images ({exts}); add images or remove the folder")
        files.paths.extend(images)
        files.labels.extend([label] * len(images))
    return files


def scan_class_folders(root: str | Path) -> ClassFolderDataset:
    """Find splits and classes; every layout problem becomes a one-line error saying how to fix it.

    A MedMNIST `.npz` file is accepted too: it is materialised once as class folders under the cache dir.
    """
    root = Path(root)
    if root.suffix.lower() == ".npz" and root.is_file():
        root = npz_to_class_folders(root, default_cache_dir())
    if root.is_file():
        raise CxrError(f"{root} is a file; give a folder with train/<class>/, a CSV manifest (.csv) or a MedMNIST .npz")
    if not root.is_dir():
        raise CxrError(f"data folder {root} does not exist; give a folder with train/<class>/ (or a .csv or .npz)")
    train_dir = root / "train"
    if not train_dir.is_dir():
        if len(_class_dirs(root)) >= 2:  # <class>/ folders with no split: say how to make one
            raise CxrError(
                f"{root} has class folders but no train/ folder; split it first: `cxr data split {root} --out "
                f"splits.csv`, then `cxr train --data splits.csv` (or arrange {root}/train/<class>/ and test/<class>/)"
            )
        raise CxrError(f"{root} has no train/ folder; expected {root}/train/<class>/*.png (and test/, optionally val/)")
    classes = [d.name for d in _class_dirs(train_dir)]
    if not classes:
        raise CxrError(f"{train_dir} has no class subfolders; put images in {train_dir}/<class_name>/")
    if len(classes) < 2:
        raise CxrError(f"{train_dir} has only one class ({classes[0]}); a classifier needs at least two class folders")
    splits = {"train": _scan_split(train_dir, classes)}
    for name in ("val", "test"):
        split_dir = root / name
        if not split_dir.is_dir():
            continue
        found = [d.name for d in _class_dirs(split_dir)]
        if found != classes:
            raise CxrError(
                f"{split_dir} classes {found} differ from train classes {classes}; use the same class folder names"
            )
        splits[name] = _scan_split(split_dir, classes)
    return ClassFolderDataset(root=root, classes=classes, splits=splits)


def scan_flat_class_folders(root: str | Path) -> ClassFolderDataset:
    """`<root>/<class>/*` with no split folders (a raw download), as one `train` split; for `cxr data split`."""
    root = Path(root)
    if not root.is_dir():
        raise CxrError(f"data folder {root} does not exist")
    classes = [d.name for d in _class_dirs(root)]
    if len(classes) < 2:
        raise CxrError(f"{root} needs train/<class>/ folders or at least two <class>/ folders; found {classes}")
    return ClassFolderDataset(root=root, classes=classes, splits={"train": _scan_split(root, classes)})
