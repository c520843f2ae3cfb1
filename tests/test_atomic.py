"""Atomic writes: the target is either the old complete file or the new complete one, and no temp file is left."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr.atomic import atomic_path, write_text_atomic
from cxr.inference import bundle as bundle_module


def test_success_replaces_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failure_midway_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("epoch 1 and 2")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("epoch 1, 2 and half of")
        raise KeyboardInterrupt  # Ctrl-C halfway through the write
    assert target.read_text() == "epoch 1 and 2"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_failed_folder_write_is_removed_and_suffix_kept(tmp_path):
    with pytest.raises(OSError), atomic_path(tmp_path / "dataset") as tmp:
        (tmp / "train").mkdir(parents=True)
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "cache.npz") as tmp:
        assert tmp.suffix == ".npz"  # np.savez appends .npz to any other name, which would then never be renamed
        np.savez(tmp, a=np.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_interrupted_model_save_keeps_previous_model(tmp_path, monkeypatch):
    target = tmp_path / bundle_module.BUNDLE_FILE
    target.write_bytes(b"previous model")

    def save_half_then_fail(obj, path):
        path.write_bytes(b"half a model")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    meta = bundle_module.BundleMeta(model="smallnet", classes=["a", "b"], image_size=32, mean=0.5, std=0.25)
    model = bundle_module.build_model(meta)
    with pytest.raises(OSError):
        bundle_module.save_bundle(tmp_path, model, meta)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == [bundle_module.BUNDLE_FILE]


def test_temp_left_by_a_killed_process_is_removed_by_the_next_write(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "metrics.json"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from cxr.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)",
            str(target),
        ],
    )
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = tmp_path.iterdir()  # SIGKILL runs no cleanup: the temp file stays ...
    assert leftover.name.startswith(".metrics.tmp")

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        writing_now = tmp_path / leftover.name.replace(leftover.name.split("-")[-1], f"{alive.pid}.json")
        other_host = tmp_path / ".metrics.tmpanother_node-1.json"  # a pid on another machine says nothing here
        writing_now.write_text("a live process is writing")
        other_host.write_text("written from another node")
        write_text_atomic(target, "new")  # ... until the next write of the same file
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["metrics.json", writing_now.name, other_host.name])
    finally:
        alive.kill()
