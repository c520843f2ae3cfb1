"""Shared bits for benchmark scripts: where data lives, machine description, writing results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from cxr.config import TrainConfig
from cxr.training.train import cpu_model, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def cv_scores(y, probs, classes: list[str]) -> dict:
    """Pooled out-of-fold scores of a candidate: accuracy, macro-F1, AUC and log loss (the cv_*.json fields)."""
    from sklearn.metrics import log_loss

    from cxr.evaluation.metrics import compute_metrics

    m = compute_metrics(y, probs, classes)
    return {
        "cv_accuracy": m["accuracy"],
        "cv_macro_f1": m["macro_avg"]["f1-score"],
        "cv_auc": m["roc_auc"],
        "cv_log_loss": float(log_loss(y, probs, labels=list(range(len(classes))))),
    }


def site_scores(y, probs, classes: list[str], threshold: float | None = None) -> dict:
    """A model's figures on another site's films: accuracy, balanced accuracy, AUC (binary: sens/spec), recalls."""
    from cxr.evaluation.metrics import compute_metrics

    m = compute_metrics(y, probs, classes, threshold=threshold)
    reported = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")
    return {k: m[k] for k in reported if k in m} | {"recall": {c: m["per_class"][c]["recall"] for c in classes}}


def predict_site(run: Path, data: Path, split: str):
    """A run's model on another dataset's labeled split: (bundle, labels in the model's class order, paths, probs)."""
    from cxr.evaluation.evaluate import split_files
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run, backend="torch")
    files = split_files(run, split, bundle.classes, data)  # COVID/ counts as Covid
    preds = bundle.predict(files.paths)
    label_of = {str(p): y for p, y in zip(files.paths, files.labels)}
    return bundle, np.array([label_of[str(p)] for p in preds.paths]), [str(p) for p in preds.paths], preds.probabilities


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "auto_precision": resolve_precision(TrainConfig())}  # fmt: skip


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2))
    print(json.dumps(result, indent=2))
    return path
