"""Classification metrics from labels and probabilities (scikit-learn underneath), as plain JSON-able dicts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    roc_auc_score,
)

from cxr.inference.predict import decide


def _auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float | None, dict[int, float | None]]:
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
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float | None = None
) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1/support, macro/weighted averages, ROC AUC; sensitivity/specificity if binary.

    For binary models, class index 1 (the second class in sorted order) is the positive class.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = decide(probs, threshold)
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    auc, auc_per_class = _auc(y_true, probs)
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "roc_auc": auc,
        "per_class": {
            c: {**{k: float(v) for k, v in report[c].items() if k != "support"}, "support": int(report[c]["support"]),
                "roc_auc": auc_per_class[i]}
            for i, c in enumerate(classes)
        },  # fmt: skip
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
    return out


def merge_metrics_json(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    """metrics.json holds one section per split (plus `training`); replace the given sections atomically."""
    path = Path(path)
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(update)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(current, indent=2))
    os.replace(tmp, path)
    return current
