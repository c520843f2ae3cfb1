"""Fit a run's input guard from its own training and validation films (splits.csv) and store it in model.pt.

Training fits the guard on the images it already holds in memory (`fit_guard`); this module serves what comes after
training: `cxr run guard RUN` for a model saved before cxr 0.6, and ensembles, whose features are their members'
together.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import nn

from cxr.data.cache import decode_cached
from cxr.data.folders import LabeledFiles
from cxr.data.images import ImageInfo, ImageReadError, describe_image
from cxr.data.splits import read_splits_csv
from cxr.errors import CxrError
from cxr.inference.bundle import Bundle, BundleMeta, save_bundle
from cxr.inference.guard import GuardFit, InputGuard, checks_the_training_films_fail, feature_taps, features_and_logits
from cxr.rundir import SPLITS, RunDir

log = logging.getLogger(__name__)


def fit_guard(
    model: nn.Module,
    meta: BundleMeta,
    train_images: np.ndarray,
    train_labels,
    val_images: np.ndarray | None,
    train_paths: list[Path] | None = None,
) -> InputGuard:
    """The guard for `model` from decoded (N, S, S) uint8 training (and validation) films; `train_paths` (the
    films' files) lets the cheap checks learn what this collection's files look like (size, colour)."""
    infos = [_describe(p) for p in train_paths] if train_paths is not None else [None] * len(train_images)
    checks_off = checks_the_training_films_fail(train_images, infos)
    taps = feature_taps(model, meta.model, meta.extra.get("members"))
    train_features, _ = features_and_logits(model, taps, train_images, meta.mean, meta.std)
    val_features = None
    if val_images is not None and len(val_images):
        val_features, _ = features_and_logits(model, taps, val_images, meta.mean, meta.std)
    return InputGuard.fit(train_features, np.asarray(train_labels), val_features, checks_off)


def _describe(path: Path) -> ImageInfo | None:
    try:
        return describe_image(path)
    except ImageReadError:  # decoded for training moments ago: only a file removed since lands here
        return None


def _decode(files: LabeledFiles, size: int, what: str) -> tuple[np.ndarray, list[int], list[Path]]:
    """(images, labels, paths) of the readable films, through the decode cache training filled at this size."""
    decoded = decode_cached(files.paths, size, desc=f"guard: decoding {what} films")
    for e in decoded.errors:
        log.warning("skipped %s", e)
    return decoded.images, [files.labels[i] for i in decoded.kept], [files.paths[i] for i in decoded.kept]


def fit_run_guard(run_dir: str | Path) -> GuardFit:
    """Fit the guard of a finished run on its splits.csv films and rewrite model.pt (weights, temperature and
    threshold untouched); the summary goes to metrics.json["guard"]."""
    run_dir = Path(run_dir)
    bundle = Bundle.load(run_dir, backend="torch")
    splits_csv = RunDir(run_dir).splits
    if not splits_csv.is_file():
        raise CxrError(
            f"{run_dir} has no {SPLITS}, so the films it was trained on are unknown; the guard is fitted "
            "on them: retrain with cxr 0.6 or later"
        )
    splits = read_splits_csv(splits_csv, bundle.classes)
    if "train" not in splits:
        raise CxrError(f"{splits_csv} lists no training films; the guard is fitted on them")
    size = bundle.meta.image_size
    train_images, train_labels, train_paths = _decode(splits["train"], size, "training")
    if not len(train_images):
        raise CxrError(f"none of the training films in {splits_csv} can be read now; the guard is fitted on them")
    val_images = None
    if "val" in splits:
        val_images, _, _ = _decode(splits["val"], size, "validation")
    guard = fit_guard(bundle.model, bundle.meta, train_images, train_labels, val_images, train_paths)
    save_bundle(run_dir, bundle.model, bundle.meta, guard)
    RunDir(run_dir).merge_metrics({"guard": guard.fitted})
    return guard.fitted
