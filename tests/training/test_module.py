import json

import pytest
import torch

import cxr.training.module as module_mod
from cxr.config import build_config
from cxr.errors import CxrError
from cxr.training.module import mixup
from cxr.training.train import train


def test_mixup_blends_images_and_labels_with_the_same_weight_and_partner():
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 1, 2])
    x = y.float().view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()  # each image's pixels = its label
    weights = set()
    for _ in range(5):
        (mixed, dominant), target = mixup((x, y), alpha=0.4, num_classes=3)
        assert torch.allclose(target.sum(1), torch.ones(8))
        # a pixel of the blend = the blend of the two labels, so the image and its target were mixed alike
        assert torch.allclose(mixed[:, 0, 0, 0], target @ torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)
        assert torch.equal(target[torch.arange(8), dominant] >= 0.5, torch.ones(8, dtype=torch.bool))
        weights.add(round(float(target.max(1).values.min()), 4))
    assert len(weights) > 1  # a new Beta draw per batch


def test_training_uses_mixup_only_when_asked(tiny_dataset, tmp_path, monkeypatch):
    calls = []
    real = module_mod.mixup
    monkeypatch.setattr(module_mod, "mixup", lambda *a: calls.append(a[1]) or real(*a))
    base = dict(data=tiny_dataset, model="smallnet", image_size=32, epochs=1, batch_size=8, num_workers=0)
    train(build_config(None, {**base, "augment": {"mixup": 0.0}}), tmp_path / "plain")
    assert calls == []
    run = train(build_config(None, base), tmp_path / "mixup")  # the default recipe has mixup 0.2
    n_train = json.loads((run / "metrics.json").read_text())["training"]["images"]["train"]
    assert len(calls) == n_train // 8 >= 1 and set(calls) == {0.2}  # every training batch (drop_last), alpha 0.2
    with pytest.raises(CxrError, match="mixup"):
        build_config(None, {**base, "augment": {"mixup": -1}})
