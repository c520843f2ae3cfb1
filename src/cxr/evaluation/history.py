"""The run's `history.csv` (one row per epoch: the learning curve, the same on every rerun of a seed) and
`timings.csv` (each epoch's wall seconds, which vary); written by training, read by plots, reports and benchmarks."""

from __future__ import annotations

import csv
from pathlib import Path

from cxr.atomic import atomic_path
from cxr.rundir import RunDir

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc"]
TIMING_COLUMNS = ["epoch", "seconds"]


def read_history(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def read_epoch_seconds(run_dir: Path) -> list[float]:
    """Wall seconds of each training epoch (runs before cxr 0.5 kept them in history.csv)."""
    files = RunDir(run_dir)
    rows = read_history(files.timings) or read_history(files.history)
    return [r["seconds"] for r in rows if "seconds" in r]


def write_history(path: Path, rows: list[dict[str, float]], columns: list[str] = HISTORY_COLUMNS) -> None:
    """Write all rows via a temp file, so the file is always complete up to the last finished epoch."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
