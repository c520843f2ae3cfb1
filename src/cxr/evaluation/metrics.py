"""Classification metrics from labels and probabilities (scikit-learn underneath), as plain JSON-able dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    roc_auc_score,
)

from cxr.evaluation.bootstrap import bootstrap_distribution, describe, intervals
from cxr.inference.predict import decide
from cxr.rundir import merge_metrics_json  # noqa: F401 (re-exported: where callers found it before cxr.rundir)


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float | None, dict[int, float | None]]:
    """Binary AUC of class 1, or macro one-vs-rest AUC; None where a class is absent (AUC undefined)."""
    n_cls = probs.shape[1]
    per_class: dict[int, float | None] = {}
    for c in range(n_cls):
        positives = y_true == c
        per_class[c] = float(roc_auc_score(positives, probs[:, c])) if 0 < positives.sum() < len(y_true) else None
    if n_cls == 2:
        return per_class[1], per_class
    defined = [v for v in per_class.values() if v is not None]
    return (float(np.mean(defined)) if len(defined) == n_cls else None), per_class


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    threshold: float | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1/support, macro/weighted averages, ROC AUC; sensitivity/specificity/PPV/NPV if binary.

    For binary models, class index 1 (the second class in sorted order) is the positive class.
    With `n_bootstrap` > 0, `ci` holds a stratified-bootstrap interval for every figure, nested like the figures.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = decide(probs, threshold)
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    auc, auc_per_class = macro_auc(y_true, probs)
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "roc_auc": auc,
        "per_class": {
            c: {
                **{k: float(v) for k, v in report[c].items() if k != "support"},
                "support": int(report[c]["support"]),
                "roc_auc": auc_per_class[i],
            }
            for i, c in enumerate(classes)
        },
        "macro_avg": {k: float(v) for k, v in report["macro avg"].items() if k != "support"},
        "weighted_avg": {k: float(v) for k, v in report["weighted avg"].items() if k != "support"},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
        "threshold": threshold,
    }
    if len(classes) == 2:
        out["positive_class"] = classes[1]
        out["sensitivity"] = out["per_class"][classes[1]]["recall"]
        out["specificity"] = out["per_class"][classes[0]]["recall"]
        out["ppv"] = out["per_class"][classes[1]]["precision"]
        out["npv"] = out["per_class"][classes[0]]["precision"]
    if n_bootstrap > 0:
        dist = bootstrap_distribution(
            y_true, lambda idx: resampled_metrics(y_true[idx], y_pred[idx], probs[idx], classes), n_bootstrap, seed
        )
        out["ci"] = intervals(dist)
        out["ci_method"] = describe(n_bootstrap, seed)
    return out


# Vectorised forms of the figures above, evaluated on many bootstrap resamples at once. Hand-written because
# scikit-learn costs ~50 ms per call: 1,000 resamples would take a minute. Tests check they equal scikit-learn.


def batched_confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, N) true and predicted labels -> (B, C, C) confusion matrices [true, predicted]."""
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    rows = np.arange(y_true.shape[0])[:, None]
    flat = (rows * n_classes + y_true) * n_classes + y_pred
    return np.bincount(flat.ravel(), minlength=y_true.shape[0] * n_classes**2).reshape(-1, n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def rates_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision/recall/F1 (B, C), accuracy and balanced accuracy (B,) from (B, C, C) matrices."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0  # balanced accuracy averages recall over the classes that occur
    return {
        "precision": precision,
        "recall": recall,
        "f1-score": f1,
        "support": support,
        "accuracy": tp.sum(axis=1) / cm.sum(axis=(1, 2)),
        "balanced_accuracy": (recall * present).sum(axis=1) / present.sum(axis=1),
    }


def rank_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    """ROC AUC per row via the Mann-Whitney rank sum (ties count half); None if a row lacks either class."""
    positive, scores = np.atleast_2d(positive).astype(bool), np.atleast_2d(scores)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    if (n_pos == 0).any() or (n_neg == 0).any():
        return None
    ranks = rankdata(scores, axis=1)
    return ((ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def cohen_kappa_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Cohen's kappa (B,) of two raters from their (B, C, C) agreement matrices; nan when chance agreement is 1."""
    n = cm.sum(axis=(1, 2)).astype(np.float64)
    observed = np.trace(cm, axis1=1, axis2=2) / n
    expected = (cm.sum(axis=2) * cm.sum(axis=1)).sum(axis=1) / n**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return (observed - expected) / (1 - expected)


def resampled_metrics(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The figures of `compute_metrics` for each row of (B, N) labels / predictions and (B, N, C) probabilities."""
    n_cls = len(classes)
    r = rates_from_confusion(batched_confusion(y_true, y_pred, n_cls))
    aucs = [rank_auc(y_true == c, probs[..., c]) for c in range(n_cls)]
    weights = r["support"] / r["support"].sum(axis=1, keepdims=True)
    out: dict[str, Any] = {
        "accuracy": r["accuracy"],
        "balanced_accuracy": r["balanced_accuracy"],
        "roc_auc": aucs[1] if n_cls == 2 else (None if any(a is None for a in aucs) else np.mean(aucs, axis=0)),
        "per_class": {
            c: {
                "precision": r["precision"][:, i],
                "recall": r["recall"][:, i],
                "f1-score": r["f1-score"][:, i],
                "roc_auc": aucs[i],
            }
            for i, c in enumerate(classes)
        },
        "macro_avg": {k: r[k].mean(axis=1) for k in ("precision", "recall", "f1-score")},
        "weighted_avg": {k: (r[k] * weights).sum(axis=1) for k in ("precision", "recall", "f1-score")},
    }
    if n_cls == 2:
        out.update(
            sensitivity=r["recall"][:, 1],
            specificity=r["recall"][:, 0],
            ppv=r["precision"][:, 1],
            npv=r["precision"][:, 0],
        )
    return out


def calibration_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Top-label reliability: per equal-width confidence bin, (B, n_bins) counts, mean confidence and accuracy.

    Accepts (N, C) / (N,) or batched (B, N, C) / (B, N) inputs.
    """
    probs = probs if probs.ndim == 3 else probs[None]
    y_true = np.atleast_2d(y_true)
    confidence = probs.max(axis=2)
    correct = (probs.argmax(axis=2) == y_true).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # (lo, hi] like torchmetrics
    flat = (np.arange(len(probs))[:, None] * n_bins + bins).ravel()
    size = len(probs) * n_bins

    def per_bin(weights):
        return np.bincount(flat, weights=weights, minlength=size).reshape(len(probs), n_bins)

    count = per_bin(None)
    return {
        "count": count,
        "confidence": _ratio(per_bin(confidence.ravel()), count),
        "accuracy": _ratio(per_bin(correct.ravel()), count),
    }


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """(B,) ECE: the count-weighted mean |accuracy - confidence| over the bins of `calibration_bins`."""
    b = calibration_bins(probs, y_true, n_bins)
    return (b["count"] * np.abs(b["accuracy"] - b["confidence"])).sum(axis=1) / b["count"].sum(axis=1)
