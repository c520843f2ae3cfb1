"""Each loader worker and each DDP rank augments with its own random stream, repeatable for a seed and worker count;
the worker count is part of what identifies a trained model (0 and 1 worker train the same one)."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader as TorchDataLoader

from cxr.config import AugmentConfig, augmentation_streams, build_config, save_config, trained_as
from cxr.data.dataset import DecodedImageDataset
from cxr.data.transforms import train_augmentation
from cxr.training.train import training_loader

N_FILMS, BATCH = 8, 4  # two batches: with two workers, worker 0 loads batch 0 and worker 1 batch 1


def _identical_films() -> DecodedImageDataset:
    film = (np.add.outer(np.arange(48), np.arange(48)) * 2 % 256).astype(np.uint8)  # one film, eight times
    aug = train_augmentation(AugmentConfig(), 48, seed=0)
    return DecodedImageDataset(np.stack([film] * N_FILMS), np.zeros(N_FILMS), 0.5, 0.25, aug)


def _batches(workers: int, rank: int = 0, seed: int = 0, epochs: int = 1) -> list[torch.Tensor]:
    L.seed_everything(seed, workers=True, verbose=False)
    loader = training_loader(_identical_films(), None, BATCH, workers, rank)
    return [x for _ in range(epochs) for x, _y in loader]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_plain_loader_repeats_draws_across_workers():
    """The failure this guards against: copies of one augmentation draw alike in every worker."""
    L.seed_everything(0, workers=True, verbose=False)
    loader = TorchDataLoader(_identical_films(), batch_size=BATCH, num_workers=2)
    first, second = [x for x, _y in loader]
    assert torch.equal(first, second)


def test_two_workers_draw_differently_and_repeat_for_the_seed():
    first, second = _batches(workers=2)
    assert not torch.equal(first, second)  # same films, different workers: different augmentation
    assert _same(_batches(workers=2), [first, second])  # the same seed and worker count: the same draws
    assert not _same(_batches(workers=2, seed=1), [first, second])


def test_epochs_draw_anew_with_persistent_workers():
    batches = _batches(workers=2, epochs=2)
    assert not torch.equal(batches[0], batches[2]) and not torch.equal(batches[1], batches[3])


def test_zero_and_one_worker_draw_alike_and_ranks_differ():
    assert _same(_batches(workers=0), _batches(workers=1))
    assert _same(_batches(workers=0, rank=1), _batches(workers=1, rank=1))
    assert not torch.equal(_batches(workers=1, rank=1)[0], _batches(workers=1, rank=0)[0])  # DDP ranks: own streams


def test_worker_count_identifies_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    cfg = build_config(None, {"data": "data", "num_workers": 1})
    save_config(cfg, tmp_path / "config.yaml")
    for ran_with, same_model_as_one in ((0, True), (1, True), (2, False)):
        (tmp_path / "metrics.json").write_text(json.dumps({"training": {"num_workers": ran_with}}))
        assert trained_as(tmp_path, cfg) is same_model_as_one
    (tmp_path / "metrics.json").write_text(json.dumps({"training": {"num_workers": 2}}))
    assert trained_as(tmp_path, cfg.model_copy(update={"num_workers": 2}))


@pytest.mark.parametrize(("cores", "streams"), [(1, 1), (2, 1), (3, 2), (16, 4)])
def test_auto_workers_resolve_per_machine(monkeypatch, cores, streams):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert augmentation_streams("auto") == streams
