"""Audit figures: images per split and class (the notebooks' bar plot), and suspected leaks side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cxr.data.images import ImageReadError, load_grayscale
from cxr.figures import save_figure as _save


def plot_class_counts(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """Grouped bars: one group per split, one bar per class, each bar labelled with its count."""
    splits = list(counts)
    classes = list(next(iter(counts.values()))) if counts else []
    width = 0.8 / max(1, len(classes))
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(splits), 3.6))
    x = np.arange(len(splits))
    for k, cls in enumerate(classes):
        values = [counts[s][cls] for s in splits]
        bars = ax.bar(x + (k - (len(classes) - 1) / 2) * width, values, width, label=cls)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, splits)
    ax.set_ylabel("images")
    ax.set_title("Images per split and class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pairs(pairs: list[tuple[Path, Path, str]], path: Path, size: int = 160) -> Path:
    """One row per suspected leak: the two images, captioned with split/class/name and the hash distance."""
    fig, axes = plt.subplots(len(pairs), 2, figsize=(5.6, 2.9 * len(pairs)), squeeze=False)
    for row, (a, b, note) in enumerate(pairs):
        for col, p in enumerate((a, b)):
            ax = axes[row][col]
            try:
                ax.imshow(load_grayscale(p, size=size), cmap="gray", vmin=0, vmax=255)
            except ImageReadError:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
            ax.set_title(f"{'/'.join(p.parts[-3:])}" + (f"\n{note}" if col == 1 else "\n"), fontsize=7)
            ax.axis("off")
    return _save(fig, path)
