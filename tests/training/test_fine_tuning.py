"""Fine-tuning a started-from body: a lower learning rate than the new head, an optional warm-up with the body
frozen, and the body's batch-norm statistics kept or adapted."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cxr.config import IMAGENET_BODY_LR_FACTOR, build_config
from cxr.errors import CxrError
from cxr.models.weights import batch_norm_layers
from cxr.training.module import Classifier

HEAD = "classifier"  # smallnet's head (model_spec("smallnet").head)


def _module(**kw) -> Classifier:
    torch.manual_seed(0)
    return Classifier("smallnet", 2, lr=1e-2, channels_last=False, monitor="train_loss", **kw)


class _AfterEachEpoch(L.Callback):
    def __init__(self):
        self.bodies: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.bodies.append(_body(pl_module))


def _fit(module: Classifier, epochs: int, callbacks: list[L.Callback] = ()) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 32, 32, generator=g) * 2 + 1, torch.arange(16) % 2)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )
    trainer.fit(module, DataLoader(data, batch_size=8))


def _body(module: Classifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.net.state_dict().items() if not k.startswith(HEAD + ".")}


def _head(module: Classifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.net.state_dict().items() if k.startswith(HEAD + ".")}


def _changed(before: dict, after: dict, suffix: str = "") -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if k.endswith(suffix))


def test_body_learns_at_a_share_of_the_head_rate():
    module = _module(body_lr_factor=0.1)
    head_group, body_group = module.configure_optimizers()["optimizer"].param_groups
    assert head_group["lr"] == pytest.approx(1e-2) and body_group["lr"] == pytest.approx(1e-3)
    head_ids = {id(p) for n, p in module.net.named_parameters() if n.startswith(HEAD + ".")}
    assert {id(p) for p in head_group["params"]} == head_ids
    assert len(_module().configure_optimizers()["optimizer"].param_groups) == 1  # no share: one group, as before


def test_frozen_warmup_trains_the_head_first_then_the_body():
    module = _module(frozen_warmup_epochs=1)
    body, head, seen = _body(module), _head(module), _AfterEachEpoch()
    _fit(module, epochs=2, callbacks=[seen])
    assert not _changed(body, seen.bodies[0])  # epoch 0: body weights and batch-norm statistics untouched
    assert _changed(head, _head(module))
    assert _changed(body, seen.bodies[1], ".weight")  # epoch 1: thawed


@pytest.mark.parametrize(("mode", "stats_move"), [("keep", False), ("adapt", True)])
def test_body_batch_norm_kept_or_adapted(mode, stats_move):
    module = _module(body_batch_norm=mode)
    assert batch_norm_layers(module.net, outside=HEAD)
    body = _body(module)
    _fit(module, epochs=1)
    assert _changed(body, _body(module), "running_mean") is stats_move
    assert _changed(body, _body(module), ".weight")  # the body trains either way


def test_defaults_and_checks(tmp_path):
    (tmp_path / "d").mkdir()
    plain = build_config(None, {"data": tmp_path / "d"})
    assert plain.body_lr_share() == 1.0 and plain.frozen_warmup_epochs == 0 and plain.body_batch_norm == "adapt"
    imagenet = plain.model_copy(update={"pretrained": "imagenet"})
    assert imagenet.body_lr_share() == IMAGENET_BODY_LR_FACTOR
    assert imagenet.model_copy(update={"body_lr_factor": 0.5}).body_lr_share() == 0.5
    with pytest.raises(CxrError, match="frozen_warmup_epochs needs weights"):
        build_config(None, {"data": tmp_path / "d", "frozen_warmup_epochs": 2})
    with pytest.raises(CxrError, match="body_lr_factor"):
        build_config(None, {"data": tmp_path / "d", "body_lr_factor": 3})
