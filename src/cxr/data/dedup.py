"""Drop from one dataset every image that (nearly) duplicates an image of another dataset.

Public chest X-ray collections reuse each other's films (COVID-19 Radiography's Viral Pneumonia images are Kermany's),
so pretraining on one and testing on the other leaks test images into training unless the copies are removed first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cxr.data.audit import DEFAULT_THRESHOLD, inspect_all, near_pairs, phash_matrix
from cxr.data.folders import LabeledFiles
from cxr.data.manifest import load_dataset
from cxr.data.splits import patient_ids


@dataclass
class DedupResult:
    classes: list[str]
    splits: dict[str, LabeledFiles]  # what is kept, per split of the source
    patient_ids: dict[Path, str | None]
    removed: list[tuple[Path, Path, int]] = field(
        default_factory=list
    )  # (source file, its copy in `against`, distance)
    unreadable: list[str] = field(default_factory=list)  # files of either dataset that could not be compared


def exclude_near_duplicates(
    data: str | Path,
    against: str | Path,
    threshold: int = DEFAULT_THRESHOLD,
    pattern: str = "",
    workers: int | None = None,
    progress: bool = False,
) -> DedupResult:
    """Every split of `data` minus the files within pHash distance `threshold` (or byte-identical) of any file of
    `against`."""
    source, other = load_dataset(data), load_dataset(against)
    src_files = [(split, p, y) for split, files in source.splits.items() for p, y in zip(files.paths, files.labels)]
    everything = [p for _, p, _ in src_files] + [p for files in other.splits.values() for p in files.paths]
    facts = inspect_all(everything, workers, progress)
    n_src = len(src_files)

    match: dict[int, tuple[int, int]] = {}  # source index -> (closest index in `against`, distance)
    other_by_sha = {facts[j].sha256: j for j in range(n_src, len(facts)) if facts[j].sha256}
    for i in range(n_src):
        if facts[i].sha256 in other_by_sha:
            match[i] = (other_by_sha[facts[i].sha256], 0)
    readable, hashes = phash_matrix(facts)
    for a, b, d in near_pairs(hashes, threshold):
        i, j = readable[a], readable[b]  # i < j, so a cross pair always has the source file first
        if i < n_src <= j and (i not in match or d < match[i][1]):
            match[i] = (j, d)

    kept: dict[str, LabeledFiles] = {split: LabeledFiles() for split in source.splits}
    for i, (split, p, y) in enumerate(src_files):
        if i not in match:
            kept[split].paths.append(p)
            kept[split].labels.append(y)
    ids: dict[Path, str | None] = {}
    for files in kept.values():
        ids.update(zip(files.paths, patient_ids(files.paths, pattern, source.patient_ids)))
    removed = [(everything[i], everything[j], d) for i, (j, d) in sorted(match.items())]
    unreadable = [f"{everything[i]}: {f.error}" for i, f in enumerate(facts) if not f.phash]
    return DedupResult(source.classes, kept, ids, removed, unreadable)
