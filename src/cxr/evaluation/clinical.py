"""The parts of `evaluate` that judge a screening model clinically: calibration before/after temperature scaling,
the operating-point table (binary), agreement with readers, and their plots (PR curve, reliability diagram)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxr.evaluation.agreement import reader_agreement
from cxr.evaluation.calibration import ECE_BINS, SITE_KEY, calibration_summary
from cxr.evaluation.metrics import calibration_bins
from cxr.evaluation.operating_point import operating_point_table
from cxr.evaluation.plots import plot_pr, plot_reliability
from cxr.inference.bundle import BundleMeta
from cxr.inference.predict import Predictions, apply_temperature, decide

DEFAULT_THRESHOLD_NAME = "0.5 (default)"


def clinical_sections(
    y_true: np.ndarray,
    preds: Predictions,
    meta: BundleMeta,
    split: str,
    plots_dir: Path,
    n_bootstrap: int,
    seed: int,
    reference: Path | None = None,
) -> dict[str, Any]:
    """Sections added to `metrics.json[split]`; writes `plots/pr_<split>.png` and `plots/reliability_<split>.png`."""
    out: dict[str, Any] = {
        "calibration": calibration_summary(y_true, preds.logits, meta.temperature, n_bootstrap, seed)
    }
    before, after = apply_temperature(preds.logits, 1.0), preds.probabilities
    plot_reliability(
        calibration_bins(before, y_true, ECE_BINS),
        calibration_bins(after, y_true, ECE_BINS),
        plots_dir / f"reliability_{split}.png",
        title=f"Reliability ({split}, T = {meta.temperature:.2f})",
    )
    plot_pr(
        y_true, preds.probabilities, meta.classes, plots_dir / f"pr_{split}.png", title=f"Precision-recall ({split})"
    )
    if len(meta.classes) == 2:
        thresholds = {DEFAULT_THRESHOLD_NAME: 0.5}
        if meta.threshold is not None:
            rule = meta.extra.get("operating_point", "chosen")
            where = "site" if meta.extra.get(SITE_KEY) else "val"  # chosen on a site's own films
            thresholds[f"{rule} ({where})"] = meta.threshold
        out["operating_points"] = operating_point_table(
            y_true, preds.probabilities, meta.classes, thresholds, n_bootstrap, seed
        )
    if reference is not None:
        y_pred = decide(preds.probabilities, meta.threshold)
        out["agreement"] = reader_agreement(reference, preds.paths, y_true, y_pred, meta.classes, n_bootstrap, seed)
    return out
