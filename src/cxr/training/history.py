"""Lightning callback that appends each finished epoch to `history.csv` (format in evaluation/history.py)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from cxr.evaluation.history import HISTORY_COLUMNS, read_history, write_history


class HistoryWriter(L.Callback):
    """Keeps earlier epochs on resume and drops rows from epochs that are being redone."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        row: dict[str, float] = {
            "epoch": trainer.current_epoch,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - self._t0, 3),
        }
        row.update({k: round(float(m[k]), 6) for k in HISTORY_COLUMNS[2:-1] if k in m})
        rows = [r for r in read_history(self.path) if r["epoch"] < trainer.current_epoch]
        write_history(self.path, rows + [row])
