"""Refit (`refit: true`): choose the epochs on validation, then train once more on train + val.

With a few hundred images, the 15 % held out for early stopping is data the final model never learns from. A refit
first trains an ordinary run under `OUT/selection/`: validation picks its best epoch and fits its temperature (and
binary threshold). Then a fresh model, same seed and config, trains on train + val for as many epochs as the
selection run's best checkpoint had, at the learning rate the selection run had in each of those epochs (its plateau
schedule replayed: with no validation left there is no plateau to detect). That model is the bundle in `OUT/`.

The refit model has seen the validation images, so nothing is fitted or measured on them again: it keeps the
selection run's temperature and threshold, and the figures on validation are the selection run's. `OUT/splits.csv`
lists the merged images as train, so `cxr evaluate OUT --split val` is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cxr.config import TrainConfig, save_config
from cxr.errors import CxrError
from cxr.evaluation.calibration import Calibration
from cxr.evaluation.history import read_history
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.rundir import SELECTION, RunDir
from cxr.training.fit import fit_one, train_one_run
from cxr.training.run_folder import check_run_dir, run_in_folder, wait_for_rank_zero


@dataclass
class RefitPlan:
    epochs: int  # epochs the selection run's best checkpoint had trained
    lrs: list[float]  # the learning rate of each of those epochs
    calibration: Calibration  # the selection run's, fitted on validation
    selection_best: str  # its best checkpoint, for the run summary
    selection_seconds: float  # its training time: the refit run's wall time counts it

    def summary(self) -> dict:
        return {"from": SELECTION, "epochs": self.epochs, "lrs": self.lrs, "selection_best": self.selection_best}


def refit_plan(selection: Path) -> RefitPlan:
    """Epochs, learning rates and calibration to copy from a finished selection run."""
    files = RunDir(selection)
    metrics = json.loads(files.metrics.read_text())
    best = metrics["training"]["best_checkpoint"]
    match = re.search(r"epoch=(\d+)", best)
    epochs = int(match.group(1)) + 1 if match else int(metrics["training"]["epochs_run"])
    lrs = [row["lr"] for row in read_history(files.history) if row["epoch"] < epochs]
    if len(lrs) != epochs:
        raise CxrError(f"{files.history} lacks epochs before {best}; retrain with --overwrite")
    meta = Bundle.load(selection, backend="torch").meta
    summary = {**metrics.get("calibration", {}), "fitted_by": f"{SELECTION} (the refit model trained on val)"}
    calibration = Calibration(meta.temperature, meta.threshold, meta.extra.get("operating_point"), summary)
    return RefitPlan(epochs, lrs, calibration, best, float(metrics["training"].get("wall_seconds") or 0.0))


def check_refit_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """`check_run_dir`'s rules, where a started selection run is something to resume too."""
    if not resume or (out / BUNDLE_FILE).is_file() or not (out / SELECTION).is_dir():
        check_run_dir(out, resume, overwrite)  # its one-line errors: finished, nothing to resume, unfinished


def train_refit(cfg: TrainConfig, out: Path) -> Path:
    """The selection run (kept once finished, resumed if started), then the refit (resumed if started)."""
    save_config(cfg, RunDir(out).config)  # `--resume` reads it back, even if the selection run stops
    selection = RunDir(out).selection
    if not (selection / BUNDLE_FILE).is_file():
        started = RunDir(selection).last_checkpoint.is_file()
        train_one_run(cfg.model_copy(update={"refit": False}), selection, resume=started, overwrite=not started)
    wait_for_rank_zero()  # the plan reads the selection's bundle and metrics, which rank 0 writes after the others
    return fit_one(cfg, out, RunDir(out).last_checkpoint.is_file(), refit_plan(selection))


def train_refit_run(cfg: TrainConfig, out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """A refit in its run folder: the selection run (validated), then the model trained on train + val."""
    return run_in_folder(cfg, out, resume, overwrite, check_refit_dir, "refit", lambda folder: train_refit(cfg, folder))
