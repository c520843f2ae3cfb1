"""CSV manifests (`path,label[,patient_id][,split]`, paths relative to the CSV) and `load_dataset`, which takes
either a manifest or a class-folder root, so train, evaluate, split and audit accept both."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from cxr.atomic import atomic_path
from cxr.data.folders import SPLIT_NAMES, ClassFolderDataset, LabeledFiles, scan_class_folders
from cxr.errors import CxrError

REQUIRED_COLUMNS = ("path", "label")
MANIFEST_HEADER = "path,label[,patient_id][,split]"
CALIBRATION_SPLIT = "calibration"  # a site's films that calibrate a model (`cxr data split --calibration`); not scored
MANIFEST_SPLITS = (*SPLIT_NAMES, CALIBRATION_SPLIT)


def is_manifest(data: str | Path) -> bool:
    return Path(data).suffix.lower() == ".csv"


def load_dataset(data: str | Path, require_train: bool = True) -> ClassFolderDataset:
    """A CSV manifest or a class-folder root (`train/<class>/`, `test/<class>/`, optional `val/<class>/`).

    `require_train=False`: a manifest of another site's films (calibration/test rows only) is accepted too.
    """
    return read_manifest(data, require_train) if is_manifest(data) else scan_class_folders(data)


def _rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise CxrError(f"manifest {csv_path} not found; pass an existing CSV with columns {MANIFEST_HEADER}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise CxrError(f"{csv_path}: missing column {missing[0]!r}; expected a header {MANIFEST_HEADER}")
            reader.fieldnames = columns
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise CxrError(f"{csv_path}: not a readable CSV file ({e})") from None
    if not rows:
        raise CxrError(f"{csv_path} has a header but no rows; add one row per image: {MANIFEST_HEADER}")
    return rows


def read_manifest(csv_path: str | Path, require_train: bool = True) -> ClassFolderDataset:
    """Validate every row (one-line errors naming the line); classes are the sorted distinct labels.

    Rows without a split go to `train`; `cxr train` then carves validation from them as from a train/ folder.
    """
    csv_path = Path(csv_path)
    base = csv_path.parent
    entries: list[tuple[str, Path, str]] = []
    patient_ids: dict[Path, str] = {}
    missing_files: list[str] = []
    for line, row in enumerate(_rows(csv_path), start=2):
        rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        split = (row.get("split") or "").strip().lower() or "train"
        if not rel or not label:
            raise CxrError(f"{csv_path} line {line}: empty path or label; every row needs both")
        if split not in MANIFEST_SPLITS:
            allowed = ", ".join(MANIFEST_SPLITS)
            raise CxrError(f"{csv_path} line {line}: split {split!r} must be one of {allowed} (or empty)")
        path = base / rel
        if not path.is_file():
            missing_files.append(f"line {line}: {rel}")
        pid = (row.get("patient_id") or "").strip()
        if pid:
            patient_ids[path] = pid
        entries.append((split, path, label))
    if missing_files:
        raise CxrError(
            f"{csv_path}: {len(missing_files)} listed file(s) do not exist (paths are relative to the CSV's folder), "
            f"first {missing_files[0]}"
        )
    classes = sorted({label for _, _, label in entries})
    if len(classes) < 2:
        raise CxrError(f"{csv_path}: only one label ({classes[0]!r}); a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, LabeledFiles] = {}
    for split in MANIFEST_SPLITS:
        rows = [(p, index[label]) for s, p, label in entries if s == split]
        if rows:
            splits[split] = LabeledFiles([p for p, _ in rows], [y for _, y in rows])
    if require_train and "train" not in splits:
        raise CxrError(f"{csv_path}: no rows in the train split; mark training rows split=train (or leave it empty)")
    return ClassFolderDataset(root=base, classes=classes, splits=splits, patient_ids=patient_ids)


def write_manifest(
    csv_path: str | Path, splits: dict[str, LabeledFiles], classes: list[str], patient_ids: Mapping[Path, str | None]
) -> Path:
    """Write `path,label,patient_id,split`, paths relative to the CSV's folder so the manifest moves with the data.

    `patient_ids` maps each path to its id (None or missing: unknown, written empty).
    """
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.parent.resolve()
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:  # never half a manifest
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id", "split"])
        for split, files in splits.items():
            for p, y in zip(files.paths, files.labels):
                rel = Path(os.path.relpath(Path(p).resolve(), base)).as_posix()
                w.writerow([rel, classes[y], patient_ids.get(Path(p)) or "", split])
    return csv_path
