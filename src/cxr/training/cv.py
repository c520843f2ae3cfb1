"""k-fold cross-validation of one config (`cxr train --cv K`): an estimate of how it does, not a model.

With a few hundred images, a 15 % validation split is ~40 images, where one image moves accuracy by 2.5 points: too
coarse to choose a network, epochs or augmentation. Cross-validation scores every training image once, each with a
model that never saw it.

The folds come from the train split (and val, if the dataset has one); test is never read. They are stratified by
class, grouped by patient when ids exist, and seeded by `split_seed` (0 when unset), not by `seed`: configs and seeds
compared on one dataset meet the same folds. Each fold is an ordinary run under `OUT/folds/<k>/`, trained on a
manifest whose held-out images are its `test` split, so the run carves its own validation from the rest exactly as
`cxr train` does on the whole train split: early stopping never sees the images it is scored on. A finished fold is
kept, so `--resume` continues at the fold that stopped.

Writes `OUT/cv.json` (pooled out-of-fold figures with bootstrap intervals, log loss, each fold's accuracy),
`OUT/predictions_oof.csv` (every image's out-of-fold probabilities) and `OUT/plots/` (confusion matrix and ROC curves
out of fold). Decisions are each probability's argmax.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cxr.atomic import write_text_atomic
from cxr.config import TrainConfig, save_config
from cxr.data.folders import LabeledFiles
from cxr.data.manifest import write_manifest
from cxr.data.splits import patient_groups, patient_ids
from cxr.errors import CxrError
from cxr.evaluation.metrics import compute_metrics
from cxr.evaluation.oof import CV_FILE, OOF_FILE, write_oof
from cxr.evaluation.plots import plot_confusion_matrix, plot_roc
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.rundir import CV_ARTIFACTS, RunDir
from cxr.training.fit import fetch_start_weights
from cxr.training.prepare import load_config_data
from cxr.training.run_folder import is_rank_zero, resumable, tracking, wait_for_rank_zero
from cxr.training.train import train

log = logging.getLogger("cxr")
CV_FILES = CV_ARTIFACTS  # cxr.rundir's, by its older name here


def pooled_files(cfg: TrainConfig) -> tuple[list[str], LabeledFiles, dict[Path, str]]:
    """Classes, the images cross-validation may use (train, and val if given) and their patient ids by path."""
    ds = load_config_data(cfg)
    files = LabeledFiles(list(ds.splits["train"].paths), list(ds.splits["train"].labels))
    if "val" in ds.splits:
        files = LabeledFiles(files.paths + ds.splits["val"].paths, files.labels + ds.splits["val"].labels)
    ids = patient_ids(files.paths, cfg.patient_id_pattern, ds.patient_ids)
    return ds.classes, files, {Path(p): pid for p, pid in zip(files.paths, ids) if pid is not None}


def fold_seed(cfg: TrainConfig) -> int:
    """`split_seed`, else 0: not `seed`, so runs that differ only in their training seed meet the same folds."""
    return 0 if cfg.split_seed is None else cfg.split_seed


def held_out_folds(files: LabeledFiles, classes: list[str], k: int, seed: int, groups: list[str] | None):
    """Per fold, the indices it holds out: stratified, and grouped by patient when `groups` is given."""
    counts = np.bincount(files.labels, minlength=len(classes))
    if counts.min() < k:
        raise CxrError(
            f"class {classes[int(counts.argmin())]!r} has {counts.min()} image(s), fewer than --cv {k} "
            "folds; choose fewer folds"
        )
    splitter = (
        StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        if groups
        else StratifiedKFold(k, shuffle=True, random_state=seed)
    )
    idx = np.arange(len(files))
    return [held for _, held in splitter.split(idx, files.labels, groups)]


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CxrError(f"--out {out} is a file; pass a folder for the cross-validation")
    if (out / BUNDLE_FILE).is_file():
        raise CxrError(f"{out} holds a trained model; choose another --out for the cross-validation")
    started = RunDir(out).folds.is_dir()
    if resume and not started:
        raise CxrError(f"{out} has no cross-validation to resume; start one without --resume")
    if overwrite and not resume:
        for name in CV_FILES:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif not resume and (out / CV_FILE).is_file():
        raise CxrError(f"{out} already holds a finished cross-validation; choose another --out or pass --overwrite")
    elif not resume and started:
        raise CxrError(f"{out} holds an unfinished cross-validation; pass --resume to continue it or --overwrite")


def cross_validate(
    cfg: TrainConfig, out: str | Path, k: int, resume: bool = False, overwrite: bool = False
) -> dict | None:
    """Train one run per fold, score each on the images it held out, pool; returns what `cv.json` holds (None on
    DDP ranks > 0)."""
    if k < 2:
        raise CxrError(f"--cv {k}: cross-validation needs 2 or more folds")
    out = Path(out)
    if is_rank_zero():  # under DDP, ranks > 0 start once rank 0 has made the folders
        _check_out(out, resume, overwrite)
    fetch_start_weights(cfg)
    classes, files, ids = pooled_files(cfg)
    groups = patient_groups(files.paths, "", ids)  # the ids found above, from a manifest or the file names
    seed = fold_seed(cfg)
    folds = held_out_folds(files, classes, k, seed, groups)
    out.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        save_config(cfg, RunDir(out).config)  # `--resume` reads it back
    with tracking(cfg, out, "cv"):  # one MLflow parent run, a child per fold
        return _run_folds(cfg, out, k, classes, files, ids, folds, seed, groups)


def _run_folds(cfg: TrainConfig, out: Path, k: int, classes, files, ids, folds, seed: int, groups) -> dict | None:
    y: list[int] = []
    probs, scored, per_fold = [], [], []
    for f, held in enumerate(folds):
        log.info("fold %d of %d: %d images held out, the run trains on the rest", f + 1, k, len(held))
        run = _train_fold(cfg, out, f, files, held, classes, ids)
        wait_for_rank_zero()  # the fold's bundle is written by rank 0 after the others return
        if not is_rank_zero():
            continue  # rank 0 scores and writes
        preds = Bundle.load(run, backend="torch").predict([files.paths[i] for i in held])
        label_of = {str(files.paths[i]): files.labels[i] for i in held}
        fold_y = [label_of[str(p)] for p in preds.paths]
        per_fold.append(float(np.mean(preds.probabilities.argmax(axis=1) == np.array(fold_y))))
        y += fold_y
        probs.append(preds.probabilities)
        scored += [(str(p), f) for p in preds.paths]
    if not is_rank_zero():
        return None
    p = np.concatenate(probs)
    metrics = compute_metrics(np.array(y), p, classes, n_bootstrap=1000, seed=0)
    summary = {
        "folds": k,
        "fold_seed": seed,
        "grouped_by_patient": groups is not None,
        "n": len(y),
        "unscored": len(files) - len(y),  # unreadable images, skipped by prediction
        "fold_accuracy": per_fold,
        "log_loss": float(log_loss(y, p, labels=list(range(len(classes))))),
        **metrics,
    }
    write_oof(out / OOF_FILE, scored, y, p, classes)
    plots = RunDir(out).plots
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        classes,
        plots / "confusion_matrix_oof.png",
        f"{k}-fold cross-validation, out of fold (n={len(y)})",
    )
    plot_roc(np.array(y), p, classes, plots / "roc_oof.png", f"{k}-fold cross-validation, out of fold")
    write_text_atomic(out / CV_FILE, json.dumps(summary, indent=2))
    return summary


def _train_fold(
    cfg: TrainConfig, out: Path, f: int, files: LabeledFiles, held: np.ndarray, classes: list[str], ids: dict
) -> Path:
    """Fold f's run (trained, resumed or kept): its manifest's train rows are every image it does not hold out."""
    held_set = set(held.tolist())
    train_ix = [i for i in range(len(files)) if i not in held_set]
    subset = {
        name: LabeledFiles([files.paths[i] for i in ix], [files.labels[i] for i in ix])
        for name, ix in (("train", train_ix), ("test", held))
    }
    manifest = write_manifest(RunDir(out).manifests / f"fold{f}.csv", subset, classes, ids)
    run = RunDir(out).folds / str(f)
    if not (run / BUNDLE_FILE).is_file():
        started = resumable(run)
        train(cfg.model_copy(update={"data": manifest}), run, resume=started, overwrite=not started)
    return run
