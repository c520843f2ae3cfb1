"""Post-hoc calibration on the validation split: temperature scaling (Guo et al. 2017) and, for binary models,
the operating-point threshold. Called by training after the best weights are restored, and by `cxr site calibrate`
on a finished run (no retraining)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from cxr.data.run_files import split_files
from cxr.errors import CxrError
from cxr.evaluation.bootstrap import bootstrap_distribution, describe, intervals
from cxr.evaluation.metrics import expected_calibration_error
from cxr.evaluation.operating_point import check_binary, choose_threshold, parse_operating_point
from cxr.inference.bundle import Bundle, save_bundle
from cxr.inference.predict import apply_temperature, predict_logits
from cxr.rundir import RunDir

TEMPERATURE_RANGE = (0.05, 20.0)
# sd of the prior on log T when fitting on validation: lowest out-of-fold log loss of {none, 2, 1, 0.5, 0.25, T = 1} on
# codecademy's nested CV, 6 fold runs (`python -m benchmarks temperature-prior`: 0.240 against 0.583 with no prior)
TEMPERATURE_PRIOR_SIGMA = 0.25
ECE_BINS = 15
SITE_KEY = "site_calibration"  # BundleMeta.extra: the site films a bundle was calibrated on (cxr.evaluation.site)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, prior_sigma: float | None = None) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T): a bounded 1-D search.

    With `prior_sigma`, the most probable T under a normal prior on log T (centred on T = 1) instead: a few dozen
    validation images that are all classified right would otherwise drive T to its lower bound (probabilities
    sharpened 20x); with thousands of images the prior barely moves it.
    """
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(logits))
    y_true = np.asarray(y_true)
    penalty = 0.0 if prior_sigma is None else 1.0 / (2 * prior_sigma**2 * max(len(logits), 1))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean()) + penalty * log_t**2

    lo, hi = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded").x))


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    probs = apply_temperature(logits, temperature).astype(np.float64)
    return float(-np.log(np.clip(probs[np.arange(len(probs)), y_true], 1e-12, None)).mean())


def calibration_summary(
    y_true: np.ndarray, logits: np.ndarray, temperature: float, n_bootstrap: int = 0, seed: int = 0
) -> dict[str, Any]:
    """ECE (top-label, 15 bins) and NLL before (T=1) and after temperature scaling, with intervals for ECE."""
    y_true = np.asarray(y_true)
    before, after = apply_temperature(logits, 1.0), apply_temperature(logits, temperature)
    out: dict[str, Any] = {
        "temperature": temperature,
        "n_bins": ECE_BINS,
        "ece_before": float(expected_calibration_error(before, y_true, ECE_BINS)[0]),
        "ece_after": float(expected_calibration_error(after, y_true, ECE_BINS)[0]),
        "nll_before": negative_log_likelihood(logits, y_true, 1.0),
        "nll_after": negative_log_likelihood(logits, y_true, temperature),
    }
    if n_bootstrap > 0:
        dist = bootstrap_distribution(
            y_true,
            lambda idx: {
                name: expected_calibration_error(p[idx], y_true[idx], ECE_BINS)
                for name, p in (("ece_before", before), ("ece_after", after))
            },
            n_bootstrap,
            seed,
        )
        out["ci"] = intervals(dist)
        out["ci_method"] = describe(n_bootstrap, seed)
    return out


@dataclass
class Calibration:
    temperature: float
    threshold: float | None
    operating_point: str | None
    summary: dict[str, Any]  # what was fitted and how it did on validation; goes to metrics.json["calibration"]


def calibrate_on_validation(
    logits: np.ndarray,
    y_true: np.ndarray,
    classes: list[str],
    operating_point: str | None = None,
    fit_temp: bool = True,
) -> Calibration:
    """Fit the temperature, then (binary, if asked) the threshold on the temperature-scaled probabilities."""
    check_binary(operating_point, classes)
    y_true = np.asarray(y_true)
    temperature = fit_temperature(logits, y_true, TEMPERATURE_PRIOR_SIGMA) if fit_temp else 1.0
    summary = calibration_summary(y_true, logits, temperature)
    summary = {"split": "val", "n": int(len(y_true)), **summary, "operating_point": operating_point, "threshold": None}
    threshold = None
    if operating_point:
        spec = parse_operating_point(operating_point)
        probs = apply_temperature(logits, temperature)
        threshold = choose_threshold(y_true, probs[:, 1], spec)
        decided = probs[:, 1] >= threshold
        positive = y_true == 1
        summary.update(
            operating_point=str(spec),
            threshold=threshold,
            positive_class=classes[1],
            val_sensitivity=float(decided[positive].mean()),
            val_specificity=float((~decided[~positive]).mean()),
        )
    return Calibration(temperature, threshold, summary["operating_point"], summary)


def logits_in_batches(model: torch.nn.Module, images: np.ndarray, mean: float, std: float, batch: int = 128):
    """Logits for decoded uint8 images without holding every activation in memory at once."""
    model.eval()
    parts = [predict_logits(model, images[i : i + batch], mean, std) for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def calibrate_run(
    run_dir: str | Path,
    operating_point: str | None = None,
    fit_temp: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> Calibration:
    """Refit temperature and threshold of a finished run on its validation split and rewrite `model.pt`.

    With no `operating_point`, the one saved in the bundle (if any) is chosen again on the new probabilities;
    "none" removes it (argmax decisions).
    """

    run_dir = Path(run_dir)
    bundle = Bundle.load(run_dir)
    operating_point = resolve_operating_point(bundle.meta, operating_point)
    files = split_files(run_dir, "val", bundle.classes)
    preds = bundle.predict(files.paths, batch_size=batch_size, progress=progress)
    label_of = {Path(p): y for p, y in zip(files.paths, files.labels)}
    y_true = np.array([label_of[Path(p)] for p in preds.paths])
    cal = calibrate_on_validation(preds.logits, y_true, bundle.classes, operating_point, fit_temp)
    save_bundle(run_dir, bundle.model, apply_to_meta(bundle.meta, cal), bundle.guard)  # same features: same guard
    RunDir(run_dir).merge_metrics({"calibration": cal.summary})
    return cal


def resolve_operating_point(meta, operating_point: str | None) -> str | None:
    """The rule to choose the threshold again: the given one, the bundle's own for None, no rule for "none"."""
    if operating_point is None:
        operating_point = meta.extra.get("operating_point")
    elif operating_point.strip().lower() == "none":
        operating_point = None
    if operating_point:
        try:
            operating_point = str(parse_operating_point(operating_point))
        except ValueError as e:
            raise CxrError(str(e)) from None
    check_binary(operating_point, meta.classes)
    return operating_point


def apply_to_meta(meta, cal: Calibration):
    """A copy of the bundle metadata carrying the fitted temperature, threshold and the rule that chose it."""
    extra = {k: v for k, v in meta.extra.items() if k not in ("operating_point", SITE_KEY)}  # a refit replaces both
    if cal.operating_point:
        extra["operating_point"] = cal.operating_point
    return dataclasses.replace(meta, temperature=cal.temperature, threshold=cal.threshold, extra=extra)
