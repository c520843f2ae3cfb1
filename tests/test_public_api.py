"""The small public API (`cxr.load`, `train`, `evaluate`, `TrainConfig`, `create_model`, `Bundle`): light to import,
and one tiny run through it end to end."""

from __future__ import annotations

import subprocess
import sys

import cxr


def test_import_cxr_loads_no_torch():
    code = "import sys, cxr; assert cxr.__version__; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_public_names_and_a_tiny_run_through_them(tiny_dataset, tmp_path):
    assert set(cxr.__all__) >= {"load", "train", "evaluate", "TrainConfig", "create_model", "Bundle", "__version__"}
    assert cxr.create_model("smallnet", num_classes=3)(__import__("torch").zeros(2, 1, 32, 32)).shape == (2, 3)
    cfg = cxr.TrainConfig(data=tiny_dataset, epochs=1, image_size=32, batch_size=8, num_workers=0)
    run = cxr.train(cfg, tmp_path / "run")
    figures = cxr.evaluate(run, split="test", n_bootstrap=0)
    assert 0.0 <= figures["accuracy"] <= 1.0
    bundle = cxr.load(run)
    assert isinstance(bundle, cxr.Bundle) and bundle.classes == figures["classes"]
    preds = bundle.predict([tiny_dataset / "test"])
    assert len(preds.paths) == len(list((tiny_dataset / "test").rglob("*.png"))) > 0
