"""`cxr compare`: two finished runs on the same test images, or two cross-validations (`cxr train --cv`) on the same
out-of-fold images. McNemar's exact test on their errors, DeLong's test on the AUC difference (binary; a paired
bootstrap for multi-class macro AUC), paired-bootstrap intervals for the differences, and a side-by-side ROC plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm, rankdata

from cxr.data.run_files import split_files
from cxr.errors import CxrError
from cxr.evaluation.bootstrap import DEFAULT_RESAMPLES, bootstrap_distribution, describe, intervals
from cxr.evaluation.metrics import compute_metrics, resampled_metrics
from cxr.evaluation.oof import is_cross_validation, read_oof
from cxr.evaluation.plots import plot_roc_compare
from cxr.inference.bundle import Bundle
from cxr.inference.predict import decide

HEADLINE = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test: under H0 the discordant pairs split 50/50 (a binomial test on them)."""
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"a_right_b_wrong": only_a, "a_wrong_b_right": only_b, "p_value": float(p), "method": "McNemar, exact"}


def delong_test(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, level: float = 0.95) -> dict:
    """DeLong et al. (1988) test for two correlated AUCs, in Sun & Xu's (2014) rank form.

    Hand-written: neither scipy nor scikit-learn has it, and the packages that do are unmaintained.
    """
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise CxrError("DeLong's test needs at least two test images of each class")
    aucs, v10, v01 = [], [], []
    for s in (np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)):
        pos, neg = s[positive], s[~positive]
        tz = rankdata(np.concatenate([pos, neg]))
        tx, ty = rankdata(pos), rankdata(neg)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)  # per positive: share of negatives scored below it
        v01.append(1 - (tz[m:] - ty) / m)  # per negative: share of positives scored above it
    s = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    diff = aucs[0] - aucs[1]
    se = float(np.sqrt(max(s[0, 0] + s[1, 1] - 2 * s[0, 1], 0.0)))
    z = diff / se if se > 0 else 0.0
    half = norm.ppf(0.5 + level / 2) * se
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": float(diff),
        "se": se,
        "z": float(z),
        "p_value": float(2 * norm.sf(abs(z))) if se > 0 else 1.0,
        "ci": [float(diff - half), float(diff + half)],
        "method": "DeLong",
    }


def paired_differences(
    y_true: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    classes: list[str],
    thresholds: tuple[float | None, float | None],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """A - B for the headline figures on the same resamples; two-sided bootstrap p-value for each."""
    pred_a, pred_b = decide(probs_a, thresholds[0]), decide(probs_b, thresholds[1])

    def stat(idx):
        ma = resampled_metrics(y_true[idx], pred_a[idx], probs_a[idx], classes)
        mb = resampled_metrics(y_true[idx], pred_b[idx], probs_b[idx], classes)
        return {k: ma[k] - mb[k] for k in HEADLINE if k in ma and ma[k] is not None and mb[k] is not None}

    dist = bootstrap_distribution(y_true, stat, n_bootstrap, seed)
    out = {}
    for k, ci in intervals(dist).items():
        d = dist[k]
        # two-sided, with the +1 correction so a finite number of resamples never claims p = 0
        p = min(1.0, (1 + 2 * min((d <= 0).sum(), (d >= 0).sum())) / (1 + len(d)))
        out[k] = {"ci": ci, "p_value": float(p)}
    return out


def compare_runs(
    run_a: Path,
    run_b: Path,
    data: Path | None = None,
    split: str = "test",
    out: Path | None = None,
    n_bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Run both models on `split` of `data` (default: run A's data), or pair two cross-validations' out-of-fold
    predictions; write comparison.json and the ROC plot."""
    run_a, run_b = Path(run_a), Path(run_b)
    if is_cross_validation(run_a) or is_cross_validation(run_b):
        classes, y_true, probs_a, probs_b = _paired_out_of_fold(run_a, run_b)
        thresholds: tuple[float | None, float | None] = (None, None)  # argmax, as cv.json decides
        split = "out-of-fold"
    else:
        classes, y_true, probs_a, probs_b, thresholds = _paired_predictions(
            run_a, run_b, data, split, batch_size, progress
        )
    names = _display_names(run_a, run_b)
    result: dict[str, Any] = {
        "split": split,
        "n": len(y_true),
        "classes": classes,
        "runs": {names[0]: str(run_a), names[1]: str(run_b)},
        "metrics": {
            names[0]: compute_metrics(y_true, probs_a, classes, thresholds[0], n_bootstrap, seed),
            names[1]: compute_metrics(y_true, probs_b, classes, thresholds[1], n_bootstrap, seed),
        },
        "mcnemar": mcnemar_exact(decide(probs_a, thresholds[0]) == y_true, decide(probs_b, thresholds[1]) == y_true),
    }
    if len(classes) == 2:
        result["auc_test"] = delong_test(y_true == 1, probs_a[:, 1], probs_b[:, 1])
    if n_bootstrap > 0:
        result["differences"] = paired_differences(y_true, probs_a, probs_b, classes, thresholds, n_bootstrap, seed)
        result["ci_method"] = describe(n_bootstrap, seed)
        if len(classes) > 2 and "roc_auc" in result["differences"]:
            d = result["differences"]["roc_auc"]
            auc = [result["metrics"][n]["roc_auc"] for n in names]
            result["auc_test"] = {
                "auc_a": auc[0],
                "auc_b": auc[1],
                "difference": auc[0] - auc[1],
                "ci": d["ci"],
                "p_value": d["p_value"],
                "method": "paired stratified bootstrap (macro AUC)",
            }
    out = Path(out) if out is not None else run_a.parent / f"compare_{run_a.name}_vs_{run_b.name}"
    out.mkdir(parents=True, exist_ok=True)
    plot_roc_compare(y_true, {names[0]: probs_a, names[1]: probs_b}, classes, out / f"roc_compare_{split}.png")
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    result["out"] = str(out)
    return result


def _paired_out_of_fold(cv_a: Path, cv_b: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both cross-validations' out-of-fold probabilities on the images both scored."""
    if not (is_cross_validation(cv_a) and is_cross_validation(cv_b)):
        raise CxrError(f"compare two cross-validations (cv.json) or two models, not one of each: {cv_a}, {cv_b}")
    (classes, a), (classes_b, b) = read_oof(cv_a), read_oof(cv_b)
    if classes != classes_b:
        raise CxrError(f"{cv_a} classes {classes} differ from {cv_b} classes {classes_b}; compare like with like")
    common = sorted(a.keys() & b.keys())
    if not common:
        raise CxrError(f"{cv_a} and {cv_b} scored no image in common; cross-validate the same data")
    y_true = np.array([a[p][0] for p in common])
    return classes, y_true, np.stack([a[p][1] for p in common]), np.stack([b[p][1] for p in common])


def _paired_predictions(run_a: Path, run_b: Path, data: Path | None, split: str, batch_size: int, progress: bool):
    """Labels, both models' probabilities on the readable images of `split`, and their decision thresholds."""

    a, b = Bundle.load(run_a), Bundle.load(run_b)
    if a.classes != b.classes:
        raise CxrError(f"{run_a} classes {a.classes} differ from {run_b} classes {b.classes}; compare like with like")
    files = split_files(run_a, split, a.classes, data)
    pa = a.predict(files.paths, batch_size=batch_size, progress=progress)
    pb = b.predict(files.paths, batch_size=batch_size, progress=progress)
    common = sorted(set(map(Path, pa.paths)) & set(map(Path, pb.paths)))
    if not common:
        raise CxrError(f"no readable images in the {split} split")
    row_a = {Path(p): i for i, p in enumerate(pa.paths)}
    row_b = {Path(p): i for i, p in enumerate(pb.paths)}
    probs_a = pa.probabilities[[row_a[p] for p in common]]
    probs_b = pb.probabilities[[row_b[p] for p in common]]
    label_of = {Path(p): y for p, y in zip(files.paths, files.labels)}
    y_true = np.array([label_of[p] for p in common])
    return a.classes, y_true, probs_a, probs_b, (a.meta.threshold, b.meta.threshold)


def _display_names(run_a: Path, run_b: Path) -> tuple[str, str]:
    """Run folder names, made distinct when both are called the same (e.g. a/best and b/best)."""
    if run_a.name != run_b.name:
        return run_a.name, run_b.name
    return f"A: {run_a}", f"B: {run_b}"
