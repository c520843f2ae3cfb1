"""The run's `history.csv` format (one row per epoch); written by training, read by plots and reports."""

from __future__ import annotations

import csv
from pathlib import Path

from cxr.atomic import atomic_path

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc", "seconds"]


def read_history(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Write all rows via a temp file, so the file is always complete up to the last finished epoch."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
