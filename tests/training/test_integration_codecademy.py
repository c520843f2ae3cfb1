"""One short epoch on a real subset of covid19-codecademy, then evaluate and predict through the CLI."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CODECADEMY

pytestmark = pytest.mark.skipif(not CODECADEMY.is_dir(), reason="../shared/data/covid19-codecademy not present")
CLASSES = ["Covid", "Normal", "Viral Pneumonia"]


def _subset(root, n_train=8, n_test=3):
    """Symlink a few real images per class (mixed JPEG/PNG, RGB/grayscale, sizes) into a small dataset."""
    for split, n in (("train", n_train), ("test", n_test)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for src in sorted((CODECADEMY / split / c).iterdir())[:n]:
                (root / split / c / src.name).symlink_to(src)
    return root


def cxr(*args):
    proc = subprocess.run([sys.executable, "-m", "cxr.cli", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_evaluate_predict_on_real_xrays(tmp_path):
    data = _subset(tmp_path / "data")
    run = tmp_path / "run"
    cxr(
        "train",
        "--data",
        data,
        "--out",
        run,
        "--model",
        "smallnet",
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--val-fraction",
        "0.25",
    )
    proc = cxr("evaluate", run, "--split", "test")
    assert "accuracy" in proc.stdout and "Viral Pneumonia" in proc.stdout

    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 9 and test["classes"] == CLASSES
    assert np.asarray(test["confusion_matrix"]).sum() == 9
    assert [test["per_class"][c]["support"] for c in CLASSES] == [3, 3, 3]
    assert 0 <= test["accuracy"] <= 1 and 0 <= test["roc_auc"] <= 1
    assert set(test["macro_avg"]) == {"precision", "recall", "f1-score"}
    assert metrics["training"]["epochs_run"] == 1
    for plot in ("confusion_matrix_test.png", "roc_test.png", "training_curves.png"):
        assert (run / "plots" / plot).stat().st_size > 1000

    out_csv = tmp_path / "preds.csv"
    one_file = next((data / "test" / "Covid").iterdir())
    cxr("predict", run, one_file, data / "test" / "Normal", "--out", out_csv)
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert rows[0]["path"].endswith(one_file.name)
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in CLASSES]
        assert abs(sum(probs) - 1) < 1e-4
        assert r["predicted"] == CLASSES[int(np.argmax(probs))]
