"""`cxr stress`: a model's figures under the acquisition-shift battery (cxr.evaluation.shifts), before it is trusted.

The films of a split are decoded once; each shift and severity is applied to all of them and predicted through the
bundle (either backend, ensembles alike). Results go to metrics.json[<split>]["stress"], plots/stress_<split>.png and
stress_<split>.csv; a re-run of `cxr evaluate` keeps them.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from rich.progress import Progress

from cxr.data.cache import decode_cached
from cxr.data.run_files import evaluation_key, split_files
from cxr.errors import CxrError
from cxr.evaluation.metrics import expected_calibration_error, macro_auc
from cxr.evaluation.plots import plot_stress
from cxr.evaluation.shifts import apply_shift, choose_shifts
from cxr.inference.bundle import Bundle
from cxr.inference.onnx_export import export_onnx
from cxr.inference.predict import decide
from cxr.rundir import RunDir

log = logging.getLogger(__name__)


class StressFigures(TypedDict):
    """The figures of one condition (the clean films, or one shift at one severity)."""

    accuracy: float
    auc: float | None
    recall: dict[str, float | None]  # per class; None for a class absent from the split
    ece: float


class StressSection(TypedDict):
    """metrics.json[<split key>]["stress"], as `run_stress` writes and returns it."""

    n: int
    backend: str  # torch | onnx
    seed: int
    seconds: float
    clean: StressFigures
    conditions: list[dict[str, Any]]  # shift, severity, parameter, unit and the StressFigures of each condition
    summary: dict[str, Any]  # `summarise`: means over the conditions, the weakest shift, the worst condition
    key: NotRequired[str]  # returned only (not written): the evaluation key the section went under


def figures(y_true: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float | None) -> StressFigures:
    """Accuracy, AUC (binary, or macro one-vs-rest), recall per class and ECE of one condition."""
    predicted = decide(probs, threshold)
    auc, _ = macro_auc(y_true, probs)
    recall = {
        c: (float((predicted[y_true == i] == i).mean()) if (y_true == i).any() else None) for i, c in enumerate(classes)
    }
    return {
        "accuracy": float((predicted == y_true).mean()),
        "auc": auc,
        "recall": recall,
        "ece": float(expected_calibration_error(probs, y_true)[0]),
    }


def _decode_split(paths: list[Path], labels: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The split's readable films, decoded once (and cached) at the model's size, with their labels."""
    decoded = decode_cached(list(paths), size, desc="decoding")
    if not len(decoded.kept):
        raise CxrError("no readable images in the split; nothing to stress")
    return decoded.images, np.asarray(labels)[decoded.kept]


def _probabilities(bundle: Bundle, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([bundle.probabilities(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def summarise(clean: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over every shifted condition, the shift whose mean is lowest, and the single worst condition."""
    by_shift: dict[str, list[float]] = {}
    for r in rows:
        by_shift.setdefault(r["shift"], []).append(r["accuracy"])
    shift_means = {name: float(np.mean(v)) for name, v in by_shift.items()}
    worst = min(rows, key=lambda r: r["accuracy"])
    weakest = min(shift_means, key=shift_means.get)
    aucs = [r["auc"] for r in rows if r["auc"] is not None]
    return {
        "clean_accuracy": clean["accuracy"],
        "mean_accuracy": float(np.mean([r["accuracy"] for r in rows])),
        "mean_auc": float(np.mean(aucs)) if aucs else None,
        "mean_ece": float(np.mean([r["ece"] for r in rows])),
        "shift_means": shift_means,
        "worst_shift": {"shift": weakest, "mean_accuracy": shift_means[weakest]},
        "worst_condition": {k: worst[k] for k in ("shift", "severity", "parameter", "accuracy")},
    }


def export_for_stress(run_dir: Path) -> bool:
    """61 conditions of every film: ONNX Runtime runs them ~9x faster than PyTorch on CPU (`python -m benchmarks speed
    stress`), so a run is exported before a long battery; a model that cannot be exported is stressed on PyTorch
    (False). A run that already holds an export of its current weights (a reused sweep trial) keeps it."""

    if Bundle.load(run_dir).backend == "onnx":
        return True
    try:
        export_onnx(run_dir)
    except CxrError as e:
        log.warning("%s: stressed on PyTorch (%s)", run_dir, e)
        return False
    return True


def run_stress(
    run_dir: str | Path,
    split: str = "test",
    data: Path | None = None,
    backend: str = "auto",
    shifts: list[str] | None = None,
    severity: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    device: str = "cpu",
) -> StressSection:
    """Run the battery; returns (and writes) the `stress` section of metrics.json under the split's evaluation key.
    `device`: where the PyTorch backend runs the model (e.g. cuda, where training ran; the shifts are made on CPU)."""

    pairs = choose_shifts(shifts, severity)  # a bad name or severity fails before the model is loaded
    run_dir = Path(run_dir)
    bundle = Bundle.load(run_dir, backend=backend)
    if device != "cpu" and bundle.backend == "torch":
        bundle.model.to(device)
    key = evaluation_key(run_dir, split, data)
    files = split_files(run_dir, split, bundle.classes, data)
    t0 = time.perf_counter()
    images, y = _decode_split(files.paths, files.labels, bundle.meta.image_size)
    classes, threshold = bundle.classes, bundle.meta.threshold
    clean = figures(y, _probabilities(bundle, images, batch_size), classes, threshold)
    rows = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("stressing", total=len(pairs))
        for shift, k in pairs:
            shifted = apply_shift(shift, k, images, seed)
            probs = _probabilities(bundle, shifted, batch_size)
            row = {"shift": shift.name, "severity": k, "parameter": shift.levels[k - 1], "unit": shift.unit}
            rows.append({**row, **figures(y, probs, classes, threshold)})
            bar.advance(task)
    section: StressSection = {
        "n": int(len(y)),
        "backend": bundle.backend,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "clean": clean,
        "conditions": rows,
        "summary": summarise(clean, rows),
    }
    files = RunDir(run_dir)
    current = files.read_metrics().get(key, {})
    files.merge_metrics({key: {**current, "stress": section}})
    _write_csv(files.stress(key), clean, rows, classes)
    plot_stress(section, files.plots / f"stress_{key}.png", title=f"Acquisition shifts ({key}, n={len(y)})")
    section["key"] = key
    return section


def _write_csv(path: Path, clean: dict[str, Any], rows: list[dict[str, Any]], classes: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shift", "severity", "parameter", "accuracy", "auc", "ece", *[f"recall_{c}" for c in classes]])
        for r in [{"shift": "clean", "severity": 0, "parameter": "", **clean}, *rows]:
            auc = "" if r["auc"] is None else f"{r['auc']:.4f}"
            recalls = ["" if r["recall"][c] is None else f"{r['recall'][c]:.4f}" for c in classes]
            w.writerow(
                [r["shift"], r["severity"], r["parameter"], f"{r['accuracy']:.4f}", auc, f"{r['ece']:.4f}", *recalls]
            )
