"""Two-process DDP on CPU (gloo) through the real CLI, as a user would launch it, with weight averaging and refit on
(two trainings in one launch: the selection run, then the refit on train + val)."""

import json
import subprocess
import sys

import torch

from cxr.inference.bundle import BUNDLE_FILE


def test_two_process_ddp_on_cpu(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "cxr.cli",
        "train",
        "--data",
        tiny_dataset,
        "--out",
        run,
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--num-workers",
        "0",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--ema-decay",
        "0.9",
        "--refit",
    ]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / BUNDLE_FILE).is_file() and (run / "selection" / BUNDLE_FILE).is_file()
    # 20 training images: one process takes 20 // 4 = 5 steps per epoch; two ranks of 10 images take 2 each.
    selection = torch.load(run / "selection" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert selection["global_step"] == 2 * 2
    # the refit trains on all 24 (train + val): 12 per rank, 3 steps per epoch, for the epochs the selection chose
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    epochs = json.loads((run / "metrics.json").read_text())["training"]["refit"]["epochs"]
    assert ckpt["global_step"] == 3 * epochs
    # weight averaging under DDP: a checkpoint holds the average, with the raw weights beside it for --resume
    assert set(selection["current_model_state"]) == set(selection["state_dict"])
    assert any(not torch.equal(selection["current_model_state"][k], v) for k, v in selection["state_dict"].items())


def test_cross_validation_under_two_process_ddp(tiny_dataset, tmp_path):
    out = tmp_path / "cv"
    cmd = [
        sys.executable,
        "-m",
        "cxr.cli",
        "train",
        "--data",
        tiny_dataset,
        "--out",
        out,
        "--cv",
        "2",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--num-workers",
        "0",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("cross-validated 2 folds") == 1  # rank 0 alone scores and reports
    assert json.loads((out / "cv.json").read_text())["n"] == 24
    # each fold trains on the other 12 images less 2 for validation: 5 per rank, one full batch of 4 (the last dropped)
    for k in range(2):
        ckpt = torch.load(out / "folds" / str(k) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 1
