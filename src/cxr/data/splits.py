"""Patient ids, stratified seeded splits grouped by patient (validation carve-out, `cxr data split`), `splits.csv`."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from cxr.data.folders import LabeledFiles, scan_flat_class_folders
from cxr.data.images import file_sha256
from cxr.data.manifest import CALIBRATION_SPLIT, is_manifest, load_dataset
from cxr.data.settings import KERMANY_PATIENT_PATTERN
from cxr.errors import CxrError

FOLDS = 10  # patient folds a site set is cut from: the calibration share in steps of a tenth


def _pick(files: LabeledFiles, ix: np.ndarray) -> LabeledFiles:
    ix = np.sort(ix)
    return LabeledFiles([files.paths[i] for i in ix], [files.labels[i] for i in ix])


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
    return _pick(files, train_idx), _pick(files, val_idx)


def resolve_patient_pattern(pattern: str | None) -> str:
    """The config's default (Kermany names) for None; otherwise a valid regex, '' meaning no ids from names."""
    if pattern is None:
        return KERMANY_PATIENT_PATTERN
    try:
        re.compile(pattern)
    except re.error as e:
        raise CxrError(f"--patient-pattern {pattern!r} is not a valid regular expression ({e})") from None
    return pattern


def patient_id_from_name(name: str, pattern: re.Pattern[str]) -> str | None:
    """The match of `pattern` in a file name, up to the end of its last matched group (the whole match if none).

    `person12_bacteria_3.jpeg` with `person(\\d+)_` gives `person12`: the prefix keeps numbering schemes apart.
    """
    m = pattern.search(name)
    if m is None:
        return None
    ends = [m.end(g) for g in range(1, pattern.groups + 1) if m.start(g) != -1]
    return name[m.start() : max(ends)] if ends else m.group(0)


def patient_ids(paths: Sequence[Path], pattern: str, known: Mapping[Path, str] | None = None) -> list[str | None]:
    """Per file: the id from a manifest (`known`) if given there, else from the file name, else None."""
    regex = re.compile(pattern) if pattern else None
    known = known or {}
    out: list[str | None] = []
    for p in paths:
        pid = known.get(Path(p))
        if pid is None and regex is not None:
            pid = patient_id_from_name(Path(p).name, regex)
        out.append(pid)
    return out


def patient_groups(paths: Sequence[Path], pattern: str, known: Mapping[Path, str] | None = None) -> list[str] | None:
    """Group keys for grouped splitting, or None when no file has a patient id.

    A file without an id is its own group: nothing is known to tie it to another file.
    """
    ids = patient_ids(paths, pattern, known)
    if all(pid is None for pid in ids):
        return None
    return [f"patient:{pid}" if pid is not None else f"file:{p}" for p, pid in zip(paths, ids)]


def split_train_val_test(
    files: LabeledFiles, val: float, test: float, seed: int, groups: list[str] | None = None
) -> dict[str, LabeledFiles]:
    """Stratified (and grouped) three-way split: test first, then validation from what is left."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise CxrError(f"--val {val} and --test {test} must be fractions in [0, 1) that add up to less than 1")
    group_of = dict(zip(files.paths, groups)) if groups is not None else None
    out: dict[str, LabeledFiles] = {}
    rest = files
    for name, fraction in (("test", test), ("val", val / (1 - test))):
        if fraction <= 0:
            continue
        rest_groups = [group_of[p] for p in rest.paths] if group_of is not None else None
        try:
            rest, out[name] = carve_validation(rest, fraction, seed, groups=rest_groups)
        except ValueError as e:  # too few images or patients for the requested fractions
            raise CxrError(f"cannot carve a {fraction:.0%} {name} split from {len(rest)} images: {e}") from None
    return {"train": rest, **{k: out[k] for k in ("val", "test") if k in out}}


def split_calibration_test(
    files: LabeledFiles, fraction: float, seed: int, groups: list[str] | None = None
) -> dict[str, LabeledFiles]:
    """A labelled site set cut into the films that calibrate a model and the films it is scored on (`test`):
    stratified, seeded, no patient on both sides. Grouped, it takes round(10 x fraction) of ten stratified patient
    folds, so the share is the fraction to the nearest tenth (0.3: three folds of ten, the notebook's 30 / 70 cut);
    fewer folds when a class has fewer than ten patients."""
    if not 0 < fraction < 1:
        raise CxrError(f"--calibration {fraction} must be a fraction in (0, 1), e.g. 0.3")
    labels = np.asarray(files.labels)
    if np.bincount(labels).min() < 2:
        raise CxrError("a class has fewer than 2 images; cannot cut a stratified calibration split")
    idx = np.arange(len(files))
    try:
        if groups is None:
            rest, chosen = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
        else:
            per_class = min(len({g for g, y in zip(groups, labels) if y == k}) for k in np.unique(labels))
            n_folds = max(2, min(FOLDS, per_class))  # a small site: as many folds as its rarest class has patients
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            taken = min(max(round(n_folds * fraction), 1), n_folds - 1)
            folds = splitter.split(idx, labels, groups)
            chosen = np.concatenate([test for _, (_, test) in zip(range(taken), folds)])
            rest = np.setdiff1d(idx, chosen)
    except ValueError as e:  # fewer images or patients of a class than folds
        raise CxrError(f"cannot cut a {fraction:.0%} calibration split from {len(files)} images: {e}") from None
    return {CALIBRATION_SPLIT: _pick(files, chosen), "test": _pick(files, rest)}


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


def join_identical_files(paths: Sequence[Path], groups: list[str] | None) -> list[str] | None:
    """Groups merged so that files with the same bytes share one (PneumoniaMNIST's test split holds such copies);
    None stays None when no two files are identical. Union-find by hand: a dozen lines, no graph library needed."""

    keys = list(groups) if groups is not None else [f"file:{p}" for p in paths]
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first_of: dict[str, str] = {}
    for key, path in zip(keys, paths):
        sha = file_sha256(path)
        if sha in first_of:
            parent[root(key)] = root(first_of[sha])
        else:
            first_of[sha] = key
    if groups is None and len(first_of) == len(keys):
        return None
    return [root(k) for k in keys]


@dataclass
class Resplit:
    classes: list[str]
    splits: dict[str, LabeledFiles]
    patient_ids: dict[Path, str | None]  # per file; None where no id is known
    grouped: bool  # True when patients never straddle two splits


def resplit_dataset(
    data: Path, val: float, test: float, seed: int, by_patient: bool, pattern: str, calibration: float | None = None
) -> Resplit:
    """Pool every image of `data` (class folders, flat `<class>/` folders, or a manifest) and split it afresh:
    train/val/test, or with `calibration` a site's calibration/test cut."""
    data = Path(data)
    flat = not is_manifest(data) and data.is_dir() and not (data / "train").is_dir()
    ds = scan_flat_class_folders(data) if flat else load_dataset(data, require_train=False)
    pooled = LabeledFiles()
    for files in ds.splits.values():
        pooled.paths.extend(files.paths)
        pooled.labels.extend(files.labels)
    ids = patient_ids(pooled.paths, pattern, ds.patient_ids)
    groups = patient_groups(pooled.paths, pattern, ds.patient_ids) if by_patient else None
    if calibration is not None:  # a film stored twice must not calibrate the model and be scored as well
        splits = split_calibration_test(pooled, calibration, seed, join_identical_files(pooled.paths, groups))
    else:
        splits = split_train_val_test(pooled, val, test, seed, groups)
    return Resplit(ds.classes, splits, dict(zip(pooled.paths, ids)), groups is not None)
