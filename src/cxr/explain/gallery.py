"""`cxr evaluate --gallery`: test images with predicted vs true labels, and the misclassified ones with Grad-CAM."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cxr.data.images import ImageReadError, load_grayscale
from cxr.errors import CxrError
from cxr.explain.cam import CamExplainer
from cxr.explain.grids import image_grid
from cxr.explain.overlay import CORRECT_COLOUR, WRONG_COLOUR, overlay_rgb
from cxr.inference.bundle import Bundle
from cxr.rundir import RunDir


def read_predictions_csv(path: Path) -> list[dict[str, str]]:
    """Rows of `predictions_<split>.csv` as written by `cxr evaluate` (path, label, predicted, correct, p_<class>)."""
    if not path.is_file():
        raise CxrError(f"{path} not found; run `cxr evaluate` on that split first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _pick(rows: list[dict[str, str]], n_max: int, seed: int = 0) -> list[dict[str, str]]:
    """Every wrong prediction first (up to n_max), then correct ones spread over classes, in a seeded order."""
    wrong = [r for r in rows if r["correct"] == "0"]
    right = [r for r in rows if r["correct"] != "0"]
    order = np.random.default_rng(seed).permutation(len(right))
    seen: dict[str, int] = {}
    ranked = []  # (rank within its class, class, row): sorting gives a round-robin over classes
    for i in order:
        label = right[i]["label"]
        seen[label] = seen.get(label, 0) + 1
        ranked.append((seen[label], label, i))
    return (wrong + [right[i] for _, _, i in sorted(ranked)])[:n_max]


def _title(row: dict[str, str]) -> str:
    p = float(row.get(f"p_{row['predicted']}", "nan"))
    return f"true {row['label']}\npred {row['predicted']} ({p:.2f})"


def write_gallery(
    run_dir: str | Path, split: str = "test", n_max: int = 48, n_cam: int = 24, method: str = "gradcam", bundle=None
) -> list[Path]:
    """Write `plots/gallery_<split>.png` and, when there are errors, `plots/misclassified_<split>.png` (Grad-CAM
    of the predicted class for up to `n_cam` misclassified images). Reuses `predictions_<split>.csv`."""

    run_dir = Path(run_dir)
    bundle = bundle or Bundle.load(run_dir)
    rows = _pick(read_predictions_csv(RunDir(run_dir).predictions(split)), n_max)
    tiles, titles, colours = [], [], []
    for r in rows:
        try:
            tiles.append(load_grayscale(r["path"], bundle.meta.image_size))  # what the model saw
        except ImageReadError:
            continue
        titles.append(_title(r))
        colours.append(WRONG_COLOUR if r["correct"] == "0" else CORRECT_COLOUR)
    n_wrong = sum(c == WRONG_COLOUR for c in colours)
    plots = RunDir(run_dir).plots
    written = [
        image_grid(
            tiles,
            titles,
            plots / f"gallery_{split}.png",
            colours,
            frame_colours=True,
            suptitle=f"{split}: {len(tiles)} images, {n_wrong} wrong (red, shown first)",
        )
    ]
    wrong = [r for r in rows if r["correct"] == "0"][:n_cam]
    if wrong:
        labels = {Path(r["path"]): r["label"] for r in wrong}
        explained = [
            e for e in CamExplainer(bundle, method).explain_paths(list(labels), labels=labels) if not isinstance(e, str)
        ]
        written.append(
            image_grid(
                [overlay_rgb(e.image, e.heatmap) for e in explained],
                [f"true {e.label}\npred {e.predicted} ({e.probabilities[e.predicted_index]:.2f})" for e in explained],
                plots / f"misclassified_{split}.png",
                [WRONG_COLOUR] * len(explained),
                suptitle=f"{split}: misclassified, Grad-CAM of the predicted class",
            )
        )
    return written
