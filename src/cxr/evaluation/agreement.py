"""Agreement with human readers: Cohen's kappa between the model and each reader (and between readers), and each
rater's accuracy, sensitivity and specificity against the folder labels, on the same images.

`readers.csv` has a `path` column and one column per reader (`label` when there is one reader); a cell holds a class
name, or is empty where that reader did not read the image. Relative paths are matched against the evaluated images
by their trailing path components, so `test/NORMAL/x.png` and `NORMAL/x.png` both work.
"""

from __future__ import annotations

import csv
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from cxr.errors import CxrError
from cxr.evaluation.bootstrap import bootstrap_distribution, percentile_interval
from cxr.evaluation.metrics import batched_confusion, cohen_kappa_from_confusion, compute_metrics

MODEL = "model"
NOT_READ = -1


def read_reference_csv(path: Path, classes: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Paths and, per reader column, class indices (NOT_READ where empty); bad cells are one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"reference file {path} not found; pass a CSV with columns path,label (or path,reader1,...)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2 or rows[0][0].strip().lower() != "path":
        raise CxrError(f"{path}: the first row must be a header `path,label` or `path,reader1,reader2,...`")
    readers = [h.strip() for h in rows[0][1:]]
    if MODEL in readers or len(set(readers)) != len(readers):
        raise CxrError(f"{path}: reader columns must be unique and not named {MODEL!r}")
    index = {c.lower(): i for i, c in enumerate(classes)}
    paths, labels = [], {r: [] for r in readers}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        row = row + [""] * (len(readers) + 1 - len(row))
        paths.append(row[0].strip())
        for r, cell in zip(readers, row[1:]):
            cell = cell.strip()
            if cell and cell.lower() not in index:
                raise CxrError(f"{path} line {line}: {r} label {cell!r} is not a class ({', '.join(classes)})")
            labels[r].append(index[cell.lower()] if cell else NOT_READ)
    return paths, {r: np.array(v, dtype=np.int64) for r, v in labels.items()}


def match_paths(reference: list[str], evaluated: list[Path], base: Path) -> np.ndarray:
    """For each reference path, the index of the evaluated image it names, or -1 when none or several do."""
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(evaluated):
        by_name.setdefault(Path(p).name, []).append(i)
    resolved = {Path(p).resolve(): i for i, p in enumerate(evaluated)}
    out = np.full(len(reference), -1, dtype=np.int64)
    for j, ref in enumerate(reference):
        ref_path = Path(ref)
        hit = resolved.get((ref_path if ref_path.is_absolute() else base / ref_path).resolve())
        if hit is None:
            parts = ref_path.parts
            cands = [i for i in by_name.get(ref_path.name, []) if Path(evaluated[i]).parts[-len(parts) :] == parts]
            hit = cands[0] if len(cands) == 1 else None
        out[j] = -1 if hit is None else hit
    return out


def kappa_with_ci(a: np.ndarray, b: np.ndarray, strata: np.ndarray, n_cls: int, n_bootstrap: int, seed: int):
    kappa = float(cohen_kappa_from_confusion(batched_confusion(a, b, n_cls))[0])
    ci = None
    if n_bootstrap > 0:
        dist = bootstrap_distribution(
            strata,
            lambda idx: {"k": cohen_kappa_from_confusion(batched_confusion(a[idx], b[idx], n_cls))},
            n_bootstrap,
            seed,
        )
        ci = percentile_interval(dist["k"])
    return (None if np.isnan(kappa) else kappa), ci


def reader_agreement(
    reference_csv: Path,
    paths: list[Path],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    n_bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Kappa for every pair of raters (model first) and every rater against the folder labels, on the listed images."""
    ref_paths, readers = read_reference_csv(reference_csv, classes)
    matched = match_paths(ref_paths, paths, Path(reference_csv).parent)
    if (matched < 0).all():
        raise CxrError(
            f"{reference_csv}: none of its {len(ref_paths)} paths is an evaluated image; "
            "use paths relative to the CSV, absolute paths, or <class>/<file> as in the data folder"
        )
    ok = matched >= 0
    in_csv = np.zeros(len(paths), dtype=bool)
    in_csv[matched[ok]] = True
    # the model is rated on the images listed in the CSV only, so every row compares like with like
    ratings = {MODEL: np.where(in_csv, np.asarray(y_pred, dtype=np.int64), NOT_READ)}
    for name, labels in readers.items():
        ratings[name] = np.full(len(paths), NOT_READ, dtype=np.int64)
        ratings[name][matched[ok]] = labels[ok]
    y_true = np.asarray(y_true, dtype=np.int64)
    n_cls = len(classes)
    pairs = []
    for a, b in combinations(ratings, 2):
        both = (ratings[a] != NOT_READ) & (ratings[b] != NOT_READ)
        kappa, ci = (None, None)
        if both.sum() >= 2:
            kappa, ci = kappa_with_ci(ratings[a][both], ratings[b][both], y_true[both], n_cls, n_bootstrap, seed)
        pairs.append({"a": a, "b": b, "n": int(both.sum()), "kappa": kappa, "ci": ci})
    vs_truth = []
    for name, r in ratings.items():
        read = r != NOT_READ
        if read.sum() < 2:
            continue
        kappa, kappa_ci = kappa_with_ci(r[read], y_true[read], y_true[read], n_cls, n_bootstrap, seed)
        onehot = np.eye(n_cls)[r[read]]
        m = compute_metrics(y_true[read], onehot, classes, n_bootstrap=n_bootstrap, seed=seed)
        keys = [k for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity") if k in m]
        row = {"rater": name, "n": int(read.sum()), "kappa": kappa, **{k: m[k] for k in keys}}
        row["ci"] = {"kappa": kappa_ci, **{k: m.get("ci", {}).get(k) for k in keys}}
        vs_truth.append(row)
    return {
        "reference": str(reference_csv),
        "readers": list(readers),
        "matched": int((matched >= 0).sum()),
        "unmatched": int((matched < 0).sum()),
        "pairs": pairs,
        "vs_truth": vs_truth,
    }
