"""The run directory (the model bundle): the contract between training and everything after it.

Every file a run holds is named here and nowhere else, as MONAI declares a bundle's contents in one place: training
writes them, evaluation, serving, sweeps and benchmarks read them. `RunDir(path)` gives each file's path, says whether
the run is finished (what a complete bundle must hold) and merges figures into metrics.json atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cxr.atomic import write_text_atomic
from cxr.errors import CxrError

MODEL = "model.pt"  # weights, meta (classes, size, normalisation, calibration) and input guard: written last
CONFIG = "config.yaml"  # the resolved training config, with its config_version
METRICS = "metrics.json"  # one section per split evaluated, plus `training`, `calibration`, `guard`, `val_reference`
VAL_REFERENCE = "val_reference"  # metrics.json: the validation films' figures `cxr monitor` compares the stream with
VAL_REFERENCE_DECIMALS = 4  # its per-film values are rounded so; `cxr monitor` rounds the stream alike before comparing
SPLITS = "splits.csv"  # every film with its split: what the model trained, validated and was tested on
HISTORY = "history.csv"  # one row per epoch
TIMINGS = "timings.csv"  # seconds per epoch
CHECKPOINTS = "checkpoints"  # Lightning's: last.ckpt (resume) and the best one
LAST_CHECKPOINT = "last.ckpt"
LOGS = "logs"  # CSV and TensorBoard loggers
PLOTS = "plots"
ONNX = "model.onnx"  # `cxr run export`
MLFLOW = "mlflow.json"  # the MLflow run id of a tracked run
CV = "cv.json"  # `cxr train --cv K`: the fold figures
OOF_PREDICTIONS = "predictions_oof.csv"
REPORT = "report.html"
AUDIT = "audit"
MEMBERS = "members"  # an ensemble's member runs
SELECTION = "selection"  # a refit's first (validation) run
FOLDS = "folds"  # `cxr train --cv K`: one run per fold
MANIFESTS = "manifests"  # `cxr train --cv K`: each fold's films
PREVIOUS_RUN = ".previous-run"  # where --overwrite keeps the old run until the new one has finished

REQUIRED = (MODEL, CONFIG, METRICS, SPLITS)  # what a finished run holds; MODEL is written last and marks it finished
DATA_FILES = (CONFIG, SPLITS)  # which films a run saw: a run made from others (adapted, ensemble) copies them
NESTED_RUNS = {MEMBERS: "ensemble", SELECTION: "refit"}  # runs inside a run: ensemble members, refit's first
CV_ARTIFACTS = (CV, OOF_PREDICTIONS, PLOTS, FOLDS, MANIFESTS, CONFIG, MLFLOW)  # what a cross-validation writes


def predictions_csv(split_key: str) -> str:
    """`predictions_<split>.csv`: one row per film of an evaluated split (or another dataset's key)."""
    return f"predictions_{split_key}.csv"


def stress_csv(split_key: str) -> str:
    """`stress_<split>.csv`: `cxr stress` figures per shift and severity."""
    return f"stress_{split_key}.csv"


def report_html(split: str) -> str:
    """`report.html` for the test split, `report_<split>.html` for another."""
    return REPORT if split == "test" else f"report_{split}.html"


# what `cxr train --overwrite` sets aside (in PREVIOUS_RUN) until the new run finishes, and a failed new run clears
RUN_ARTIFACTS = (
    MODEL,
    CHECKPOINTS,
    LOGS,
    PLOTS,
    HISTORY,
    TIMINGS,
    METRICS,
    SPLITS,
    CONFIG,
    *(predictions_csv(split) for split in ("train", "val", "test")),
    AUDIT,
    ONNX,
    MEMBERS,
    SELECTION,
    MLFLOW,
)


def merge_metrics_json(path: str | Path, update: dict[str, Any]) -> dict[str, Any]:
    """metrics.json holds one section per split (plus `training`); replace the given sections atomically."""
    path = Path(path)
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(update)
    write_text_atomic(path, json.dumps(current, indent=2))
    return current


@dataclass(frozen=True)
class RunDir:
    """A run directory's files by role: `RunDir(out).metrics`, `.model`, `.config`..."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def splits(self) -> Path:
        return self.path / SPLITS

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def timings(self) -> Path:
        return self.path / TIMINGS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.path / CHECKPOINTS / LAST_CHECKPOINT

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def onnx(self) -> Path:
        return self.path / ONNX

    @property
    def mlflow(self) -> Path:
        return self.path / MLFLOW

    @property
    def cv(self) -> Path:
        return self.path / CV

    @property
    def oof_predictions(self) -> Path:
        return self.path / OOF_PREDICTIONS

    @property
    def audit(self) -> Path:
        return self.path / AUDIT

    @property
    def members(self) -> Path:
        return self.path / MEMBERS

    @property
    def selection(self) -> Path:
        return self.path / SELECTION

    @property
    def folds(self) -> Path:
        return self.path / FOLDS

    @property
    def manifests(self) -> Path:
        return self.path / MANIFESTS

    @property
    def previous_run(self) -> Path:
        return self.path / PREVIOUS_RUN

    def predictions(self, split_key: str) -> Path:
        return self.path / predictions_csv(split_key)

    def stress(self, split_key: str) -> Path:
        return self.path / stress_csv(split_key)

    def report(self, split: str = "test") -> Path:
        return self.path / report_html(split)

    @property
    def resumable(self) -> bool:
        """A checkpoint `--resume` can continue from: the run's own, an ensemble member's or a refit's selection run."""
        members = self.members.glob(f"*/{CHECKPOINTS}/{LAST_CHECKPOINT}")
        return self.last_checkpoint.is_file() or RunDir(self.selection).last_checkpoint.is_file() or any(members)

    @property
    def finished(self) -> bool:
        return self.model.is_file()

    def missing(self) -> list[str]:
        """The files of REQUIRED that this run lacks (empty for a complete bundle)."""
        return [name for name in REQUIRED if not (self.path / name).is_file()]

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json, or {} before anything was recorded."""
        return json.loads(self.metrics.read_text()) if self.metrics.is_file() else {}

    def merge_metrics(self, update: dict[str, Any]) -> dict[str, Any]:
        return merge_metrics_json(self.metrics, update)

    def config_values(self) -> dict[str, Any]:
        """config.yaml as saved (plain values; `cxr.config.load_run_config` gives the validated TrainConfig)."""
        if not self.config.is_file():
            raise CxrError(f"{self.path} has no {CONFIG}; pass a run directory made by `cxr train`")
        values = yaml.safe_load(self.config.read_text())
        if not isinstance(values, dict):
            raise CxrError(f"{self.config} is not a config (a YAML mapping of keys)")
        return values

    def data_path(self) -> Path | None:
        """The dataset the run trained on, as its config names it."""
        data = self.config_values().get("data")
        return Path(data) if data else None
