"""The same command on the same machine gives the same run: history, weights, calibration and out-of-fold scores,
with everything the default recipe turns on (a loader worker, augmentation, low-resolution simulation, balanced
sampling, mixup, early stopping, LR on plateau), and under ensembles, refit and cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cxr.config import TrainConfig, build_config
from cxr.training.cv import cross_validate
from cxr.training.train import train

# one worker as `auto` gives on two cores; patience short enough that early stopping and the plateau schedule act
RECIPE = dict(
    model="smallnet",
    image_size=32,
    epochs=4,
    batch_size=8,
    num_workers=1,
    lr=3e-2,
    early_stopping_patience=2,
    lr_patience=1,
)


def _cfg(data: Path, **kw) -> TrainConfig:
    cfg = build_config(None, {"data": data, **RECIPE, **kw})
    assert cfg.sampling == "balanced" and cfg.augment.low_res > 0 and cfg.augment.mixup > 0  # the default's extras
    return cfg


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _calibration(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["calibration"]


def _assert_same_run(a: Path, b: Path) -> None:
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    assert (a / "splits.csv").read_bytes() == (b / "splits.csv").read_bytes()
    assert _same_weights(a, b)
    assert _calibration(a) == _calibration(b)


@pytest.fixture
def three_classes(tmp_path):
    from tests.conftest import make_class_folders

    return make_class_folders(tmp_path / "data", classes=("a", "b", "c"), n_train=10, n_test=2)


def test_same_seed_same_run_and_another_seed_another(three_classes, tmp_path):
    slow = dict(lr=1e-6, epochs=5)  # validation loss barely moves: the plateau schedule must act
    first = train(_cfg(three_classes, **slow), tmp_path / "first")
    second = train(_cfg(three_classes, **slow), tmp_path / "second")
    _assert_same_run(first, second)
    lrs = [line.split(",")[1] for line in (first / "history.csv").read_text().splitlines()[1:]]
    assert len(set(lrs)) > 1 or len(lrs) < slow["epochs"]  # the plateau schedule or early stopping acted

    other = train(_cfg(three_classes, seed=1, **slow), tmp_path / "seed1")
    assert (other / "history.csv").read_bytes() != (first / "history.csv").read_bytes()
    assert not _same_weights(first, other)


@pytest.mark.parametrize("extra", [dict(ensemble=2), dict(refit=True)], ids=["ensemble", "refit"])
def test_ensemble_and_refit_repeat_exactly(three_classes, tmp_path, extra):
    first = train(_cfg(three_classes, epochs=3, **extra), tmp_path / "first")
    second = train(_cfg(three_classes, epochs=3, **extra), tmp_path / "second")
    assert _same_weights(first, second) and _calibration(first) == _calibration(second)
    inner = "members/1" if "ensemble" in extra else "selection"
    _assert_same_run(first / inner, second / inner)


def test_cross_validation_repeats_exactly(three_classes, tmp_path):
    first = cross_validate(_cfg(three_classes, epochs=3), tmp_path / "first", 2)
    second = cross_validate(_cfg(three_classes, epochs=3), tmp_path / "second", 2)
    assert (tmp_path / "first" / "predictions_oof.csv").read_text() == (
        tmp_path / "second" / "predictions_oof.csv"
    ).read_text()
    assert first["log_loss"] == second["log_loss"] and first["fold_accuracy"] == second["fold_accuracy"]
