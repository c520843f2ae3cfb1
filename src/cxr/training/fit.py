"""Fitting one model: the Lightning Trainer with cxr's callbacks, the data loaders, and the finished bundle
(calibrated on validation, with its input guard); `train_one_run` wraps it in its run folder."""

from __future__ import annotations

import logging
import resource
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from monai.data import DataLoader
from torch.utils.data import Sampler

from cxr.config import TrainConfig, resolve_workers, save_config
from cxr.data.dataset import DecodedImageDataset, augmentation_worker_init, seed_main_process_augmentation
from cxr.data.transforms import train_augmentation
from cxr.errors import CxrError
from cxr.evaluation.calibration import apply_to_meta, calibrate_on_validation, logits_in_batches
from cxr.evaluation.history import read_epoch_seconds
from cxr.evaluation.operating_point import check_binary
from cxr.inference.bundle import BundleMeta, save_bundle
from cxr.inference.guard import InputGuard
from cxr.inference.guard_fit import fit_guard
from cxr.inference.predict import apply_temperature, decide
from cxr.models.pretrained import pretrained_file
from cxr.rundir import LOGS, VAL_REFERENCE, VAL_REFERENCE_DECIMALS, RunDir
from cxr.tracking import epoch_logger
from cxr.training.history import HistoryWriter
from cxr.training.module import Classifier
from cxr.training.prepare import balanced_class_weights, prepare_data, train_sampler
from cxr.training.run_folder import check_run_dir, run_in_folder

if TYPE_CHECKING:
    from cxr.training.refit import RefitPlan

log = logging.getLogger("cxr")


class _ProgressBar(RichProgressBar):
    """Rich bar without Lightning's logger-version column (meaningless with two loggers)."""

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def resolve_precision(cfg: TrainConfig) -> str:
    """bf16 autocast only where the hardware has native bf16 (emulated bf16 on CPU is slower than fp32).

    Kept on evidence: on a CPU with native bf16 the default recipe was no worse in bf16 than in fp32 on nested
    cross-validation (codecademy) and on PneumoniaMNIST's validation split, and 1.5x faster (`python -m benchmarks
    select codecademy-cv`, the `default-fp32` / `default-bf16` candidates). The figures still differ run for run from
    fp32's: the precision is recorded in metrics.json with the CPU.
    """
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available() and cfg.accelerator != "cpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    native = (
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bf16-mixed" if native else "32"


def cpu_model() -> str:
    """The CPU's model name (Linux), recorded with every run's figures."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def training_loader(
    dataset: DecodedImageDataset, sampler: Sampler | None, batch_size: int, workers: int, rank: int = 0
) -> DataLoader:
    """The training loader: each worker (and DDP rank) augments with its own random stream, repeatable for a seed."""
    per_epoch = len(sampler) if sampler is not None else len(dataset)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=per_epoch > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=augmentation_worker_init(rank),
    )
    if workers == 0:
        seed_main_process_augmentation(dataset, rank)
    return loader


def peak_rss_gb() -> float:
    """Peak resident memory of this process or its largest loader worker so far (Linux reports KiB)."""
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return round(peak_kib / 2**20, 2)


def _build_trainer(
    cfg: TrainConfig, out: Path, refit: RefitPlan | None = None, callbacks: Sequence[L.Callback] = ()
) -> tuple[L.Trainer, ModelCheckpoint, str]:
    """The Lightning Trainer with cxr's callbacks (and the caller's, e.g. a sweep's pruning) and loggers; a
    device/strategy Lightning refuses is a CxrError.

    A refit has no validation: it runs the planned epochs and keeps the last, with no early stopping.
    """
    mode = "min" if cfg.monitor == "val_loss" else "max"
    ckpt = ModelCheckpoint(
        dirpath=RunDir(out).checkpoints,
        filename="best-{epoch:03d}",
        monitor=None if refit else cfg.monitor,
        mode=mode,
        save_top_k=0 if refit else 1,
        save_last=True,
    )
    stopping = [] if refit else [EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.early_stopping_patience)]
    precision = resolve_precision(cfg)
    loggers = [CSVLogger(out, name=LOGS, version="csv"), TensorBoardLogger(out, name=LOGS, version="tensorboard")]
    if cfg.track:
        loggers += [logger for logger in (epoch_logger(),) if logger is not None]
    try:
        trainer = L.Trainer(
            max_epochs=refit.epochs if refit else cfg.epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            precision=precision,
            callbacks=[
                ckpt,
                *stopping,
                LearningRateMonitor(logging_interval="epoch"),
                HistoryWriter(RunDir(out).history),
                _ProgressBar(),
                # Lightning swaps the average in for validation and writes it as each checkpoint's state_dict
                *([EMAWeightAveraging(decay=cfg.ema_decay)] if cfg.ema_decay else []),
                *callbacks,
            ],
            logger=loggers,
            default_root_dir=out,
            log_every_n_steps=1,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
    except (ValueError, MisconfigurationException) as e:  # Lightning's own checks of devices/strategy/accelerator
        detail = " ".join(str(e).split())[:200]
        raise CxrError(
            f"Lightning refused accelerator={cfg.accelerator!r} devices={cfg.devices!r} "
            f"strategy={cfg.strategy!r}: {detail}"
        ) from None
    return trainer, ckpt, precision


def start_weights(cfg: TrainConfig) -> Path | None:
    """The file the model starts from: `weights`, or the `pretrained` file (downloaded and verified when needed)."""
    return cfg.weights if cfg.weights is not None else pretrained_file(cfg.pretrained, cfg.model)


def fetch_start_weights(cfg: TrainConfig) -> None:
    """Every member's start file present and verified before any data is read: offline, fail now, not after decoding."""
    for k in range(len(cfg.ensemble_members or [None])):
        start_weights(cfg.for_member(k) if cfg.ensemble_members else cfg)


def val_reference(val_logits: np.ndarray, meta: BundleMeta, guard: InputGuard) -> dict:
    """What `cxr monitor` compares the served films with, from the validation films as the bundle serves them:
    the predicted-class counts (calibrated, with a binary model's threshold), and per film the largest calibrated
    probability and the guard's score (4 decimals: a few thousand films stay a few tens of kB)."""
    probs = apply_temperature(val_logits, meta.temperature)
    counts = np.bincount(decide(probs, meta.threshold), minlength=len(meta.classes))
    reference: dict = {
        "n": int(len(probs)),
        "predicted_counts": {c: int(k) for c, k in zip(meta.classes, counts)},
        "max_probability": [round(float(p), VAL_REFERENCE_DECIMALS) for p in probs.max(axis=1)],
    }
    if guard.val_scores is not None:
        reference["guard_scores"] = [round(float(x), VAL_REFERENCE_DECIMALS) for x in guard.val_scores]
    return reference


def fit_one(
    cfg: TrainConfig, out: Path, resume: bool, refit: RefitPlan | None = None, callbacks: Sequence[L.Callback] = ()
) -> Path:
    """Fit one model in `out` (a folder run_in_folder prepared) and write its bundle; `refit`: train+val, no
    validation, the planned epochs."""
    for name in ("lightning.pytorch", "lightning.fabric"):  # hardware banners and tips; keep warnings
        logging.getLogger(name).setLevel(logging.WARNING)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t_start = time.perf_counter()
    init = None if resume else start_weights(cfg)
    trainer, ckpt, precision = _build_trainer(cfg, out, refit, callbacks)  # before decoding: a bad device fails now
    data = prepare_data(cfg, out, merge_val=refit is not None)
    run = RunDir(out)
    save_config(cfg, run.config)

    n_cls = len(data.classes)
    check_binary(cfg.operating_point, data.classes)  # refuse now, not after hours of training
    weights = balanced_class_weights(data.files["train"].labels, n_cls) if cfg.class_weight == "balanced" else None
    module = Classifier(
        cfg.model,
        n_cls,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        optimizer=cfg.optimizer,
        class_weights=weights,
        monitor=cfg.monitor,
        lr_patience=cfg.lr_patience,
        lr_factor=cfg.lr_factor,
        channels_last=cfg.channels_last,
        weights=str(init) if init else None,
        freeze_backbone=cfg.freeze_backbone,
        input_norm=cfg.input_norm,
        lr_schedule=refit.lrs if refit else None,
        mixup_alpha=cfg.augment.mixup,
        body_lr_factor=cfg.body_lr_share(),
        frozen_warmup_epochs=cfg.frozen_warmup_epochs,
        body_batch_norm=cfg.body_batch_norm,
    )
    if module.weights_report is not None:
        log.info(module.weights_report.summary())
    aug = train_augmentation(cfg.augment, cfg.image_size, cfg.seed)
    train_ds = DecodedImageDataset(data.images["train"], data.files["train"].labels, data.mean, data.std, aug)
    workers = resolve_workers(cfg.num_workers)
    loader_kw = dict(batch_size=cfg.batch_size, num_workers=workers, persistent_workers=workers > 0)
    sampler = train_sampler(cfg.sampling, data.files["train"].labels, cfg.seed)
    per_epoch = len(sampler) if sampler is not None else len(train_ds)
    train_loader = training_loader(train_ds, sampler, cfg.batch_size, workers, trainer.global_rank)
    val_loader = None
    if refit is None:
        val_ds = DecodedImageDataset(data.images["val"], data.files["val"].labels, data.mean, data.std)
        val_loader = DataLoader(val_ds, shuffle=False, **loader_kw)

    with warnings.catch_warnings():
        if refit:  # no validation, by design
            warnings.filterwarnings("ignore", "You defined a `validation_step`", PossibleUserWarning)
        last = str(run.last_checkpoint) if resume else None
        trainer.fit(module, train_loader, val_loader, ckpt_path=last)
    if trainer.interrupted:
        raise CxrError(f"training interrupted; continue it with `cxr train --resume --out {out}`")
    if not trainer.is_global_zero:
        return out

    best_path = ckpt.best_model_path or str(run.last_checkpoint)
    state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    module.net.to(memory_format=torch.contiguous_format)
    meta = BundleMeta(
        model=cfg.model,
        classes=data.classes,
        image_size=cfg.image_size,
        mean=data.mean,
        std=data.std,
        input_norm=cfg.input_norm,
    )
    if refit is None:
        val_logits = logits_in_batches(module.net, data.images["val"], data.mean, data.std)
        calibration = calibrate_on_validation(val_logits, data.files["val"].labels, data.classes, cfg.operating_point)
    else:
        calibration = refit.calibration  # this model has trained on the validation images: nothing to fit on
    meta = apply_to_meta(meta, calibration)  # temperature (and threshold) fitted on validation
    summary = {
        "epochs_run": trainer.current_epoch,
        "best_checkpoint": Path(best_path).name,
        "monitor": cfg.monitor,
        "best_score": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "images": {k: len(v) for k, v in data.files.items()},
        "skipped_unreadable": data.skipped,
        "init_weights": module.weights_report.to_dict() if module.weights_report else None,
        "freeze_backbone": cfg.freeze_backbone,
        "fine_tuning": {
            "body_lr_factor": cfg.body_lr_share(),
            "frozen_warmup_epochs": cfg.frozen_warmup_epochs,
            "body_batch_norm": cfg.body_batch_norm,
        },
        "sampling": cfg.sampling,
        "ema_decay": cfg.ema_decay,
        "refit": refit.summary() if refit else None,
        "precision": precision,
        "cpu": cpu_model(),  # with the precision: another CPU (or bf16 support) can give other figures
        "num_workers": workers,
        "wall_seconds": round(time.perf_counter() - t_start + (refit.selection_seconds if refit else 0.0), 1),
        "train_images_per_second": None,
        "peak_rss_gb": peak_rss_gb(),
    }
    epochs_seconds = sum(read_epoch_seconds(out))
    if epochs_seconds:
        summary["train_images_per_second"] = round(per_epoch * trainer.current_epoch / epochs_seconds, 1)
    module.net.eval()
    guard = fit_guard(
        module.net,
        meta,
        data.images["train"],
        data.files["train"].labels,
        data.images["val"] if refit is None else None,
        data.files["train"].paths,
    )
    sections = {"training": summary, "calibration": calibration.summary, "guard": guard.fitted}
    if refit is None and len(val_logits):  # a refit has no validation films: `cxr monitor` falls back on the stream
        sections[VAL_REFERENCE] = val_reference(val_logits, meta, guard)
    run.merge_metrics(sections)
    save_bundle(out, module.net, meta, guard)  # last: its presence marks the run as finished
    return out


def train_one_run(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> Path:
    """One model in its own run folder (no ensemble, no refit): what ensembles and refits call for each model."""
    return run_in_folder(
        cfg,
        out,
        resume,
        overwrite,
        check_run_dir,
        "run",
        lambda folder: fit_one(cfg, folder, resume, callbacks=callbacks),
    )
