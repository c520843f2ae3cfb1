"""`evaluate_run`: run a finished bundle on a split, write `metrics.json[split]`, plots and per-image CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

import numpy as np

from cxr.data.run_files import evaluation_key, split_files
from cxr.errors import CxrError
from cxr.evaluation.bootstrap import DEFAULT_RESAMPLES
from cxr.evaluation.clinical import clinical_sections
from cxr.evaluation.history import read_history
from cxr.evaluation.metrics import compute_metrics
from cxr.evaluation.plots import plot_confusion_matrix, plot_roc, plot_training_curves
from cxr.evaluation.site import SITE_KEY, check_not_calibration_films
from cxr.inference.bundle import Bundle
from cxr.inference.predict import Predictions
from cxr.rundir import RunDir
from cxr.tracking import log_evaluation

if TYPE_CHECKING:
    from cxr.evaluation.stress import StressSection


class SplitMetrics(TypedDict):
    """metrics.json[<split key>] as `evaluate_run` writes and returns it: `compute_metrics`' figures, then the
    clinical sections; deep parts stay plain dicts."""

    n: int
    accuracy: float
    balanced_accuracy: float
    roc_auc: float | None  # binary: of the positive class; else macro one-vs-rest (None when a class is absent)
    per_class: dict[str, dict[str, Any]]  # precision, recall, f1-score, support, roc_auc per class
    macro_avg: dict[str, float]
    weighted_avg: dict[str, float]
    confusion_matrix: list[list[int]]
    classes: list[str]
    threshold: float | None
    positive_class: NotRequired[str]  # binary models: classes[1], and the four figures below
    sensitivity: NotRequired[float]
    specificity: NotRequired[float]
    ppv: NotRequired[float]
    npv: NotRequired[float]
    ci: NotRequired[dict[str, Any]]  # with bootstrap resamples: an interval per figure, nested like the figures
    ci_method: NotRequired[dict[str, Any]]
    skipped_unreadable: list[str]
    tta: bool
    guard: dict[str, Any] | None  # guard_section: None for a model without an input guard
    calibration: dict[str, Any]
    operating_points: NotRequired[list[dict[str, Any]]]  # binary models
    agreement: NotRequired[dict[str, Any]]  # with a reference reading (--reference)
    site_calibration: NotRequired[dict[str, Any]]  # SITE_KEY: a site-calibrated model scored on that site's films
    stress: NotRequired[StressSection]  # `cxr stress` figures of the same films, kept by a re-evaluation


def write_predictions_csv(path: Path, preds: Predictions, y_true: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "predicted", "correct", *[f"p_{c}" for c in preds.classes]])
        for p, y, yhat, probs in zip(preds.paths, y_true, preds.predicted_index, preds.probabilities):
            w.writerow([str(p), preds.classes[y], preds.classes[yhat], int(y == yhat), *[f"{x:.6f}" for x in probs]])


def guard_section(preds: Predictions) -> dict[str, Any] | None:
    """How many of the scored films the input guard would flag, and why (None for a model without a guard)."""
    if preds.in_distribution is None:
        return None
    flagged = [i for i, ok in enumerate(preds.in_distribution) if not ok]
    return {
        "flagged": len(flagged),
        "share": len(flagged) / max(1, len(preds.paths)),
        "median_score": float(np.median(preds.ood_score)) if len(preds.ood_score) else None,
        "examples": [
            {"path": str(preds.paths[i]), "score": float(preds.ood_score[i]), "reason": preds.ood_reason[i]}
            for i in flagged[:20]
        ],
    }


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    data: Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
    n_bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    reference: Path | None = None,
    key: str | None = None,
    tta: bool = False,
) -> SplitMetrics:
    """Metrics with bootstrap intervals (`n_bootstrap` 0 = none), calibration, operating points, reader agreement.

    Written under `key` (default `evaluation_key(...)`): metrics.json[key], plots/*_<key>.png, predictions_<key>.csv.
    """
    run_dir = Path(run_dir)
    key = key or evaluation_key(run_dir, split, data, tta)
    bundle = Bundle.load(run_dir)
    files = split_files(run_dir, split, bundle.classes, data)
    site = check_not_calibration_films(bundle.meta, files.paths)  # a film the model was calibrated on is refused
    label_of = {Path(p): y for p, y in zip(files.paths, files.labels)}
    preds = bundle.predict(files.paths, batch_size=batch_size, progress=progress, tta=tta)
    if not preds.paths:
        raise CxrError(f"no readable images in the {split} split")
    y_true = np.array([label_of[Path(p)] for p in preds.paths])
    metrics = cast(
        SplitMetrics,
        compute_metrics(y_true, preds.probabilities, bundle.classes, bundle.meta.threshold, n_bootstrap, seed),
    )
    metrics["skipped_unreadable"] = preds.errors
    metrics["tta"] = tta
    metrics["guard"] = guard_section(preds)
    if site is not None:
        metrics[SITE_KEY] = site  # type: ignore[literal-required]  # SITE_KEY is "site_calibration"

    files = RunDir(run_dir)
    plots = files.plots
    metrics.update(clinical_sections(y_true, preds, bundle.meta, key, plots, n_bootstrap, seed, reference))
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        bundle.classes,
        plots / f"confusion_matrix_{key}.png",
        title=f"Confusion matrix ({key}, n={metrics['n']})",
    )
    plot_roc(y_true, preds.probabilities, bundle.classes, plots / f"roc_{key}.png", title=f"ROC ({key})")
    plot_training_curves(read_history(files.history), plots / "training_curves.png")
    write_predictions_csv(files.predictions(key), preds, y_true)
    previous = files.read_metrics().get(key, {})
    if "stress" in previous:  # `cxr stress` figures of the same films: a re-evaluation keeps them
        metrics["stress"] = previous["stress"]
    files.merge_metrics({key: metrics})
    if files.mlflow.is_file():  # a tracked run (`--track`): the split's figures join its MLflow run
        try:
            log_evaluation(run_dir, key, metrics)
        except CxrError as e:  # the figures are written above; an unreachable store must not read as a failure
            logging.getLogger("cxr").warning("not logged to MLflow: %s", e)
    return metrics
