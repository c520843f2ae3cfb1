"""A finished run without Lightning: a smallnet fitted for a few steps in plain torch on synthetic class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxr.config import build_config, save_config
from cxr.data.folders import scan_class_folders
from cxr.data.images import load_grayscale
from cxr.data.splits import carve_validation, write_splits_csv
from cxr.data.transforms import normalise
from cxr.inference.bundle import BundleMeta, save_bundle
from cxr.models import create_model
from tests.conftest import make_class_folders

SIZE = 32
_TRAINED: dict[tuple, dict[str, torch.Tensor]] = {}


def make_run(
    tmp: Path,
    classes=("normal", "pneumonia"),
    steps: int = 40,
    seed: int = 0,
    n_train: int = 16,
    n_test: int = 10,
    **meta_kw,
) -> Path:
    data = tmp / ("data" if len(classes) == 2 else f"data{len(classes)}")
    if not data.exists():
        make_class_folders(data, classes=classes, n_train=n_train, n_test=n_test, size=SIZE, seed=0)
    ds = scan_class_folders(data)
    train, val = carve_validation(ds.splits["train"], 0.5, seed=0)
    run = tmp / f"run{len(classes)}_{seed}_{steps}"
    run.mkdir(parents=True)
    write_splits_csv(run / "splits.csv", {"train": train, "val": val, "test": ds.splits["test"]}, ds.classes)
    save_config(build_config(None, {"data": data, "image_size": SIZE}), run / "config.yaml")
    model = create_model("smallnet", len(classes))
    key = (tuple(classes), steps, seed, n_train)
    if key not in _TRAINED:  # the data are deterministic, so one fit per key serves the whole session
        torch.manual_seed(seed)
        x = normalise(np.stack([load_grayscale(p, SIZE) for p in train.paths]), 0.3, 0.2)
        y = torch.tensor(train.labels)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        _TRAINED[key] = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(_TRAINED[key])
    save_bundle(run, model.eval(), BundleMeta("smallnet", ds.classes, SIZE, mean=0.3, std=0.2, **meta_kw))
    return run
