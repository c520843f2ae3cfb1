"""Cross-validation (`cxr train --cv K`): every train image scored once by a model that never saw it; test unread."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cxr.data.folders import LabeledFiles
from cxr.errors import CxrError
from cxr.inference.bundle import BUNDLE_FILE
from cxr.training.cv import cross_validate, fold_seed, held_out_folds
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess

from .test_refit import _CrashIn
from .test_train import _cfg, _trainers_get


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cv_scores_each_train_image_once_with_a_model_that_never_saw_it(tiny_dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cv"
    args = [
        "train",
        "--data",
        tiny_dataset,
        "--cv",
        3,
        "--epochs",
        1,
        "--image-size",
        32,
        "--batch-size",
        8,
        "--num-workers",
        0,
        "--out",
        out,
    ]
    _trainers_get(monkeypatch, _CrashIn("1"))  # stops in fold 1, after fold 0 has finished
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli_inprocess(capsys, monkeypatch, *args)
    fold0 = (out / "folds" / "0" / BUNDLE_FILE).stat().st_mtime_ns
    assert run_cli_inprocess(capsys, monkeypatch, *args).returncode == 2  # unfinished: --resume or --overwrite
    _trainers_get(monkeypatch)
    cli = run_cli_inprocess(capsys, monkeypatch, "train", "--resume", "--cv", 3, "--out", out)
    assert cli.returncode == 0, cli.stderr
    assert "cross-validated 3 folds, 24 images" in " ".join(cli.stdout.split())
    assert (out / "folds" / "0" / BUNDLE_FILE).stat().st_mtime_ns == fold0  # a finished fold is kept

    oof = _rows(out / "predictions_oof.csv")
    train_images = {str(p.resolve()) for p in (tiny_dataset / "train").rglob("*.png")}
    assert sorted(str(Path(r["path"]).resolve()) for r in oof) == sorted(train_images)  # each once; test never
    for k in range(3):
        used = _rows(out / "folds" / str(k) / "splits.csv")
        held = {str(Path(r["path"]).resolve()) for r in oof if r["fold"] == str(k)}
        assert held == {r["path"] for r in used if r["split"] == "test"}
        assert not held & {r["path"] for r in used if r["split"] in ("train", "val")}  # never trained or validated on
        assert {r["split"] for r in used} == {"train", "val", "test"}  # each fold carves its own validation
    summary = json.loads((out / "cv.json").read_text())
    probs = np.array([[float(r["p_normal"]), float(r["p_pneumonia"])] for r in oof])
    labels = np.array([r["label"] == "pneumonia" for r in oof])
    assert summary["accuracy"] == pytest.approx(np.mean((probs[:, 1] > probs[:, 0]) == labels))
    assert summary["n"] == 24 and len(summary["fold_accuracy"]) == 3 and "ci" in summary
    assert summary["accuracy"] == pytest.approx(np.mean(summary["fold_accuracy"]))  # equal folds of 8
    assert np.sum(summary["confusion_matrix"]) == 24
    assert_one_line_error(
        run_cli_inprocess(capsys, monkeypatch, "predict", out, tiny_dataset / "test"), "is a cross-validation (cv.json)"
    )
    assert all((out / "plots" / f"{name}_oof.png").stat().st_size > 1000 for name in ("confusion_matrix", "roc"))


def test_folds_keep_each_patient_in_one_fold_and_every_class_in_each():
    labels = [0, 1] * 15
    groups = [f"patient:{i // 3}" for i in range(30)]  # 10 patients, 3 images each
    files = LabeledFiles([Path(f"{i}.png") for i in range(30)], labels)
    folds = held_out_folds(files, ["a", "b"], 3, seed=0, groups=groups)
    assert sorted(np.concatenate(folds).tolist()) == list(range(30))
    fold_of_patient = {}
    for k, held in enumerate(folds):
        assert {labels[i] for i in held} == {0, 1}
        for i in held:
            assert fold_of_patient.setdefault(groups[i], k) == k


def test_cv_refuses_what_it_cannot_do(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, epochs=1)
    with pytest.raises(CxrError, match="class 'normal' has 12 image.*fewer than --cv 13 folds"):
        cross_validate(cfg, tmp_path / "a", 13)
    with pytest.raises(CxrError, match="no cross-validation to resume"):
        cross_validate(cfg, tmp_path / "b", 3, resume=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / BUNDLE_FILE).write_bytes(b"")
    with pytest.raises(CxrError, match="holds a trained model"):
        cross_validate(cfg, run, 3)
    assert fold_seed(_cfg(tiny_dataset, seed=5)) == 0 and fold_seed(_cfg(tiny_dataset, seed=5, split_seed=3)) == 3


def test_cv_pools_train_and_val_and_reads_patient_ids_from_a_manifest(tiny_dataset, tmp_path):
    from cxr.training.cv import pooled_files

    for name in ("normal", "pneumonia"):
        (tiny_dataset / "val" / name).mkdir(parents=True)
        (tiny_dataset / "train" / name / "img000.png").rename(tiny_dataset / "val" / name / "img000.png")
    classes, files, ids = pooled_files(_cfg(tiny_dataset))
    assert len(files) == 24 and any(p.parent.parent.name == "val" for p in files.paths) and ids == {}
    manifest = tmp_path / "m.csv"
    rows = [
        f"{p.relative_to(tmp_path)},{classes[y]},patient{i // 2},train"
        for i, (p, y) in enumerate(zip(files.paths, files.labels))
    ]
    manifest.write_text("path,label,patient_id,split\n" + "\n".join(rows) + "\n")
    _, from_manifest, ids = pooled_files(_cfg(manifest))
    assert len(from_manifest) == 24 and len(set(ids.values())) == 12  # two images per patient
