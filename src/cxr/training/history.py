"""Lightning callback that appends each finished epoch to `history.csv` and its wall time to `timings.csv`
(formats in evaluation/history.py)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from cxr.evaluation.history import HISTORY_COLUMNS, TIMING_COLUMNS, read_history, write_history
from cxr.rundir import TIMINGS


class HistoryWriter(L.Callback):
    """Keeps earlier epochs on resume and drops rows from epochs that are being redone."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.timings = self.path.with_name(TIMINGS)
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m, epoch = trainer.callback_metrics, trainer.current_epoch
        row: dict[str, float] = {"epoch": epoch, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        row.update({k: round(float(m[k]), 6) for k in HISTORY_COLUMNS[2:] if k in m})
        timing = {"epoch": epoch, "seconds": round(time.perf_counter() - self._t0, 3)}
        for path, new, columns in ((self.path, row, HISTORY_COLUMNS), (self.timings, timing, TIMING_COLUMNS)):
            rows = [r for r in read_history(path) if r["epoch"] < epoch]
            write_history(path, rows + [new], columns)
