"""Evaluation plots: confusion matrix, ROC curves, training curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from cxr.figures import plt
from cxr.figures import save_figure as _save


def plot_confusion_matrix(cm: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(classes), 1.2 + 1.2 * len(classes)))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False)
    ax.set_title(title or "Confusion matrix")
    return _save(fig, path)


def _curves(y_true: np.ndarray, classes: list[str]) -> list[tuple[int, np.ndarray]]:
    """(class, is-that-class mask) per curve: the positive class if binary, else each class (one-vs-rest);
    classes absent from, or making up all of, `y_true` have no curve."""
    shown = [1] if len(classes) == 2 else range(len(classes))
    masks = [(c, np.asarray(y_true) == c) for c in shown]
    return [(c, m) for c, m in masks if 0 < m.sum() < len(m)]


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """Binary: one curve for the positive class; multi-class: one-vs-rest curve per class."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, positives in _curves(y_true, classes):
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title({"loss": "loss", "acc": "accuracy", "auc": "ROC AUC"}[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_pr(y_true: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """Precision-recall: binary for the positive class, one-vs-rest per class otherwise; dotted line = prevalence."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, positives in _curves(y_true, classes):
        PrecisionRecallDisplay.from_predictions(positives, probs[:, c], name=classes[c], ax=ax)
        ax.axhline(positives.mean(), ls=":", lw=1, c=ax.lines[-1].get_color())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(title or "Precision-recall")
    return _save(fig, path)


def plot_reliability(
    bins_before: dict[str, np.ndarray], bins_after: dict[str, np.ndarray], path: Path, title: str = ""
) -> Path:
    """Reliability diagram (top-label confidence vs accuracy per bin) before and after temperature scaling, over
    a histogram of how many images fall in each bin (so a wild point over a near-empty bin reads as noise)."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    n_bins = bins_before["count"].shape[1]
    edges = np.linspace(0, 1, n_bins + 1)
    width = 1 / n_bins / 2.2
    curves = ((bins_before, "before (T = 1)", "o"), (bins_after, "after temperature", "s"))
    for k, (bins, label, marker) in enumerate(curves):
        count = bins["count"][0]
        used = count > 0
        sizes = 12 + 120 * count[used] / count.sum()
        line = ax.plot(bins["confidence"][0][used], bins["accuracy"][0][used], "-", lw=1.2, alpha=0.8, label=label)[0]
        ax.scatter(
            bins["confidence"][0][used], bins["accuracy"][0][used], s=sizes, marker=marker, color=line.get_color()
        )
        hist.bar(edges[:-1] + width * (k + 0.6), count, width=width, color=line.get_color(), alpha=0.85)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title or "Reliability")
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("images")
    hist.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_roc_compare(y_true: np.ndarray, probs_by_model: dict[str, np.ndarray], classes: list[str], path: Path) -> Path:
    """Side by side: one panel per class (one panel for binary), every model's ROC curve in each."""
    curves = _curves(y_true, classes)
    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(5 * max(1, len(curves)), 4.8), squeeze=False)
    for ax, (c, positives) in zip(axes[0], curves):
        for name, probs in probs_by_model.items():
            RocCurveDisplay.from_predictions(positives, probs[:, c], name=name, ax=ax)
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        ax.set_title(f"ROC, {classes[c]}" + (" (positive class)" if len(classes) == 2 else " vs rest"))
    return _save(fig, path)


def plot_stress(section: dict, path: Path, title: str = "") -> Path:
    """Accuracy against severity, one line per shift (a single marker for one-level shifts); dashed: clean."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    by_shift: dict[str, list[tuple[int, float]]] = {}
    for r in section["conditions"]:
        by_shift.setdefault(r["shift"], []).append((r["severity"], r["accuracy"]))
    cmap = plt.get_cmap("tab20")
    for i, (name, points) in enumerate(by_shift.items()):
        x, y = zip(*sorted(points))
        ax.plot(x, y, marker="o", markersize=4, color=cmap(i % 20), label=name)
    ax.axhline(section["clean"]["accuracy"], color="black", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel("severity (1 = mild)")
    ax.set_ylabel("accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.set_title(title or "Acquisition shifts")
    return _save(fig, path)
