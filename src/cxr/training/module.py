"""LightningModule: one registry model, cross-entropy (optionally class-weighted, optionally on mixup blends),
Adam/AdamW, LR on plateau (or, when refitting without validation, the learning rate of each epoch given in advance)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

from cxr.models import create_model, model_spec
from cxr.models.weights import freeze_backbone as freeze_backbone_params
from cxr.models.weights import keep_frozen_norms_in_eval, load_matching_weights


class Classifier(L.LightningModule):
    def __init__(
        self,
        model_name: str,
        num_classes: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        class_weights: list[float] | None = None,
        monitor: str = "val_loss",
        lr_patience: int = 4,
        lr_factor: float = 0.3,
        channels_last: bool = True,
        weights: str | None = None,
        freeze_backbone: bool = False,
        input_norm: str = "dataset",
        lr_schedule: list[float] | None = None,
        mixup_alpha: float = 0.0,
        body_lr_factor: float = 1.0,
        frozen_warmup_epochs: int = 0,
        body_batch_norm: str = "adapt",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(model_name, num_classes, input_norm=input_norm)
        spec = model_spec(model_name)
        self.weights_report = load_matching_weights(self.net, weights, spec.foreign_names) if weights else None
        self.head = spec.head
        if freeze_backbone:
            freeze_backbone_params(self.net, self.head)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        for stage in ("train", "val"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{stage}_auc", MulticlassAUROC(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch, stage: str, target: torch.Tensor | None = None) -> torch.Tensor:
        """Loss against `y`, or against soft `target` (mixup: then `y` is the larger share, used by the metrics)."""
        x, y = batch
        logits = self(x).float()
        loss = F.cross_entropy(logits, y if target is None else target, weight=self.class_weights)
        probs = logits.softmax(dim=1)
        acc, auc = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_auc")
        acc.update(probs, y)
        auc.update(probs, y)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=not on_step)
        self.log(f"{stage}_auc", auc, on_step=False, on_epoch=True, prog_bar=not on_step)
        return loss

    def _in_frozen_warmup(self) -> bool:
        return self.current_epoch < self.hparams.frozen_warmup_epochs

    def on_train_epoch_start(self) -> None:
        """Freeze or thaw the body for this epoch; its batch norms keep their statistics while frozen or when asked."""
        hp = self.hparams
        if hp.frozen_warmup_epochs and not hp.freeze_backbone:
            warm = self._in_frozen_warmup()
            for name, p in self.net.named_parameters():
                p.requires_grad = not warm or name.startswith(self.head + ".")
        if hp.freeze_backbone or hp.body_batch_norm == "keep" or self._in_frozen_warmup():
            keep_frozen_norms_in_eval(self.net, self.head)

    def training_step(self, batch, batch_idx):
        if not self.hparams.mixup_alpha:
            return self._step(batch, "train")
        mixed, target = mixup(batch, self.hparams.mixup_alpha, self.hparams.num_classes)
        return self._step(mixed, "train", target)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        hp = self.hparams
        opt_cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls(self._parameter_groups(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule:  # epoch e trains at lr_schedule[e] (the last one beyond the list), each group in proportion
            schedule = list(hp.lr_schedule)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: schedule[min(e, len(schedule) - 1)] / hp.lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        mode = "min" if hp.monitor == "val_loss" else "max"
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=hp.lr_factor, patience=hp.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": hp.monitor}}

    def _parameter_groups(self) -> list[dict]:
        """The new head at `lr`, the body at `lr * body_lr_factor` (one group when they are equal). Parameters frozen
        for good are left out; those frozen only for the warm-up are in, and get no update until thawed."""
        hp = self.hparams
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad or not hp.freeze_backbone]
        if hp.body_lr_factor == 1.0:
            return [{"params": [p for _n, p in named]}]
        head = [p for n, p in named if n.startswith(self.head + ".")]
        body = [p for n, p in named if not n.startswith(self.head + ".")]
        return [g for g in ({"params": head}, {"params": body, "lr": hp.lr * hp.body_lr_factor}) if g["params"]]


def mixup(batch, alpha: float, num_classes: int) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mixup (Zhang et al. 2018): each image blended with another of the batch, weight ~ Beta(alpha, alpha).

    Returns ((mixed images, labels of the larger share), soft targets). Hand-written: MONAI's MixUp mixes labels
    only as images (3-4 dimensions), not class indices."""
    x, y = batch
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(y), device=y.device)
    one_hot = F.one_hot(y, num_classes).float()
    target = lam * one_hot + (1 - lam) * one_hot[perm]
    dominant = y if lam >= 0.5 else y[perm]
    return (lam * x + (1 - lam) * x[perm], dominant), target
