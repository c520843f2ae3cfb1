"""`sampling: undersample` (the notebooks' third model): each epoch every minority film and as many freshly drawn of
each other class; and the dense baseline, trained with it."""

import csv
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from cxr.config import build_config
from cxr.training.prepare import UndersamplingSampler, train_sampler
from cxr.training.train import train
from tests.conftest import make_class_folders

LABELS = [0] * 30 + [1] * 7 + [2] * 12  # class 1 is the smallest


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_epoch_draws_equal_counts_with_every_minority_image():
    sampler = UndersamplingSampler(LABELS, seed=3)
    assert len(sampler) == 3 * 7
    for epoch in range(4):
        drawn = _epoch(sampler, epoch)
        assert len(drawn) == len(set(drawn)) == len(sampler)  # no image twice in an epoch
        assert Counter(LABELS[i] for i in drawn) == {0: 7, 1: 7, 2: 7}
        assert {i for i in drawn if LABELS[i] == 1} == set(range(30, 37))


def test_the_draw_changes_with_the_epoch_and_repeats_for_the_same_epoch_and_seed():
    a, b = UndersamplingSampler(LABELS, seed=3), UndersamplingSampler(LABELS, seed=3)
    majority = lambda drawn: {i for i in drawn if LABELS[i] == 0}  # noqa: E731
    assert majority(_epoch(a, 0)) != majority(_epoch(a, 1))
    assert _epoch(a, 1) == _epoch(b, 1)  # a resumed run meets the same epoch 1
    assert _epoch(a, 1) != _epoch(UndersamplingSampler(LABELS, seed=4), 1)
    seen = set().union(*(majority(_epoch(a, e)) for e in range(10)))
    assert len(seen) > 20  # over epochs the majority class is seen far beyond one fixed subset of 7


def test_sampling_names_choose_the_sampler():
    assert train_sampler("shuffle", LABELS, 0) is None
    assert isinstance(train_sampler("balanced", LABELS, 0), torch.utils.data.WeightedRandomSampler)
    assert isinstance(train_sampler("undersample", LABELS, 0), UndersamplingSampler)


def test_dense_baseline_trains_an_epoch_with_undersampling(tmp_path):
    data = make_class_folders(tmp_path / "data", n_train=14, n_test=2, size=32)
    for extra in sorted((data / "train" / "pneumonia").iterdir())[6:]:  # 14 normal, 6 pneumonia films
        extra.unlink()
    cfg = build_config(
        None,
        dict(
            data=data,
            model="dense-baseline",
            sampling="undersample",
            image_size=32,
            epochs=1,
            batch_size=4,
            num_workers=0,
            val_fraction=0.25,
            seed=1,
        ),
    )
    run = train(cfg, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    with open(run / "splits.csv", newline="") as f:
        train_labels = Counter(row["label"] for row in csv.DictReader(f) if row["split"] == "train")
    smallest = min(train_labels.values())
    assert ckpt["global_step"] == 2 * smallest // 4  # epochs of 2 x the smallest class, not of all training images
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["sampling"] == "undersample" and training["epochs_run"] == 1
    assert np.isfinite(ckpt["state_dict"]["net.features.1.weight"].numpy()).all()


@pytest.mark.slow
def test_undersampling_under_two_process_ddp_splits_one_draw_between_the_ranks(tmp_path):
    data = make_class_folders(tmp_path / "data", n_train=14, n_test=2, size=32)
    for extra in sorted((data / "train" / "pneumonia").iterdir())[6:]:
        extra.unlink()
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "cxr.cli",
        "train",
        "--data",
        data,
        "--out",
        run,
        "--model",
        "dense-baseline",
        "--sampling",
        "undersample",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "2",
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
    with open(run / "splits.csv", newline="") as f:
        smallest = min(Counter(row["label"] for row in csv.DictReader(f) if row["split"] == "train").values())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == smallest // 2  # each rank takes half of the 2 x smallest draw, in batches of 2
