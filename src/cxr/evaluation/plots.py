"""Evaluation plots: confusion matrix, ROC curves, training curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion_matrix(cm: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(classes), 1.2 + 1.2 * len(classes)))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False)
    ax.set_title(title or "Confusion matrix")
    return _save(fig, path)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """Binary: one curve for the positive class; multi-class: one-vs-rest curve per class."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    shown = [1] if len(classes) == 2 else range(len(classes))
    for c in shown:
        positives = np.asarray(y_true) == c
        if 0 < positives.sum() < len(positives):
            RocCurveDisplay.from_predictions(positives, probs[:, c], name=classes[c], ax=ax)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_title(title or "ROC")
    return _save(fig, path)


def plot_training_curves(history: list[dict[str, float]], path: Path) -> Path | None:
    """Loss, accuracy and AUC per epoch for train and val, side by side."""
    if not history:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    epochs = [int(r["epoch"]) + 1 for r in history]
    for ax, metric in zip(axes, ("loss", "acc", "auc")):
        for stage, style in (("train", "-o"), ("val", "-s")):
            ys = [r.get(f"{stage}_{metric}", np.nan) for r in history]
            ax.plot(epochs, ys, style, ms=3, label=stage)
        ax.set_xlabel("epoch")
        ax.set_title({"loss": "loss", "acc": "accuracy", "auc": "ROC AUC"}[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)
