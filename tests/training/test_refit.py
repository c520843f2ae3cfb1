"""Refit: a selection run chooses epochs and calibration on val, then a fresh model trains on train + val."""

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch

import cxr
from cxr.config import build_config
from cxr.errors import CxrError
from cxr.evaluation.evaluate import evaluate_run
from cxr.evaluation.history import read_history
from cxr.evaluation.report import write_report
from cxr.inference.bundle import BUNDLE_FILE
from cxr.training.module import Classifier
from cxr.training.train import train
from tests.cli.helpers import run_cli_inprocess

from .test_train import _cfg, _trainers_get


def _splits(run: Path) -> dict[str, int]:
    with open(run / "splits.csv") as f:
        rows = [r["split"] for r in csv.DictReader(f)]
    return {s: rows.count(s) for s in set(rows)}


def test_refit_trains_on_train_and_val_for_the_chosen_epochs_at_the_chosen_rates(
    tiny_dataset, tmp_path, capsys, monkeypatch
):
    config = tmp_path / "refit.yaml"
    config.write_text("lr_patience: 1\nlr_factor: 0.5\nearly_stopping_patience: 2\nlr: 0.003\nnum_workers: 0\n")
    out = tmp_path / "run"
    cli = run_cli_inprocess(
        capsys,
        monkeypatch,
        "train",
        "--config",
        config,
        "--data",
        tiny_dataset,
        "--epochs",
        5,
        "--image-size",
        32,
        "--batch-size",
        8,
        "--refit",
        "--out",
        out,
    )
    assert cli.returncode == 0, cli.stderr
    assert "epochs on train + val, as many as" in " ".join(cli.stdout.split())
    assert build_config(out / "config.yaml").refit
    selection = out / "selection"
    assert (selection / BUNDLE_FILE).is_file() and not build_config(selection / "config.yaml").refit
    sel_training = json.loads((selection / "metrics.json").read_text())["training"]
    best_epoch = int(sel_training["best_checkpoint"].split("=")[1].split(".")[0])
    sel_split = _splits(selection)
    assert _splits(out) == {"train": sel_split["train"] + sel_split["val"], "test": 8}

    refit_rows = read_history(out / "history.csv")
    assert [r["epoch"] for r in refit_rows] == list(range(best_epoch + 1))
    assert [r["lr"] for r in refit_rows] == pytest.approx(
        [r["lr"] for r in read_history(selection / "history.csv")][: best_epoch + 1]
    )
    assert not any("val_loss" in r for r in refit_rows)
    metrics = json.loads((out / "metrics.json").read_text())
    training = metrics["training"]
    assert training["refit"]["epochs"] == best_epoch + 1 and training["images"] == {"train": 24, "test": 8}
    assert "val_reference" not in metrics and "val_reference" in json.loads((selection / "metrics.json").read_text())

    refit, chosen = cxr.load(out), cxr.load(selection)
    assert refit.meta.temperature == chosen.meta.temperature  # fitted on val by the run that had not seen it
    assert refit.meta.mean != chosen.meta.mean  # normalisation from train + val pixels
    assert not torch.equal(next(refit.model.parameters()), next(chosen.model.parameters()))
    with pytest.raises(CxrError, match="no .val. split .a refit"):
        evaluate_run(out, "val")
    assert evaluate_run(out, "test")["n"] == 8
    html = " ".join(write_report(out, gradcam=False, gallery_size=2).read_text().split())
    assert f"{best_epoch + 1} on train + val (refit" in html and "validation images by the selection run" in html


def test_replayed_schedule_sets_each_epochs_rate_and_keeps_the_last():
    module = Classifier("smallnet", 2, lr=1e-3, lr_schedule=[1e-3, 5e-4, 1e-4])
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1e-3, 5e-4, 1e-4, 1e-4])


class _CrashIn(L.Callback):
    """Fails trainings whose run folder is named `folder` once their last checkpoint is written."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        if Path(trainer.default_root_dir).name == self.folder:
            raise RuntimeError(f"simulated crash in {self.folder}")


@pytest.mark.parametrize("stage", ["selection", "run"])
def test_an_interrupted_refit_resumes_from_its_saved_config(tiny_dataset, tmp_path, monkeypatch, stage):
    out = tmp_path / "run"
    _trainers_get(monkeypatch, _CrashIn(stage))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tiny_dataset, epochs=2, refit=True), out)
    assert not (out / BUNDLE_FILE).exists()
    with pytest.raises(CxrError, match="unfinished"):
        train(_cfg(tiny_dataset, epochs=2, refit=True), out)
    finished_selection = (out / "selection" / BUNDLE_FILE).stat().st_mtime_ns if stage == "run" else None
    _trainers_get(monkeypatch)
    train(build_config(out / "config.yaml"), out, resume=True)  # what `cxr train --resume --out` does
    assert (out / BUNDLE_FILE).is_file()
    if finished_selection is not None:  # a finished selection run is kept, not trained again
        assert (out / "selection" / BUNDLE_FILE).stat().st_mtime_ns == finished_selection


def test_refit_is_refused_with_an_ensemble(tiny_dataset):
    with pytest.raises(CxrError, match="refit and ensemble cannot be combined"):
        _cfg(tiny_dataset, refit=True, ensemble=2)


def test_an_ensemble_stopped_in_a_member_resumes_from_its_saved_config(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "ens"
    _trainers_get(monkeypatch, _CrashIn("1"))  # member 1's folder
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tiny_dataset, epochs=1, ensemble=2), out)
    _trainers_get(monkeypatch)
    train(build_config(out / "config.yaml"), out, resume=True)
    assert torch.load(out / BUNDLE_FILE, weights_only=True)["meta"]["model"] == "ensemble"
