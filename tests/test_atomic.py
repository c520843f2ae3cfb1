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
