"""Binary operating point: pick the decision threshold on validation (`sensitivity=0.95`, `specificity=0.90`, `youden`)
and tabulate sensitivity, specificity, PPV and NPV at each threshold, with intervals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from cxr.errors import CxrError
from cxr.evaluation.metrics import compute_metrics

_SPEC = re.compile(r"^\s*(sensitivity|specificity)\s*=\s*([0-9]*\.?[0-9]+)\s*$|^\s*(youden)\s*$", re.IGNORECASE)
OPERATING_POINT_HELP = "sensitivity=0.95 | specificity=0.90 | youden"


@dataclass(frozen=True)
class OperatingPoint:
    kind: str  # "sensitivity" | "specificity" | "youden"
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"


def parse_operating_point(text: str) -> OperatingPoint:
    """'sensitivity=0.95' -> OperatingPoint('sensitivity', 0.95); ValueError says what is accepted."""
    m = _SPEC.match(str(text))
    if not m:
        raise ValueError(f"operating point {text!r} not understood; use {OPERATING_POINT_HELP}")
    if m.group(3):
        return OperatingPoint("youden")
    target = float(m.group(2))
    if not 0 < target <= 1:
        raise ValueError(f"operating point target {target:g} must be in (0, 1], e.g. sensitivity=0.95")
    return OperatingPoint(m.group(1).lower(), target)


def check_binary(operating_point: str | None, classes: list[str]) -> None:
    """An operating point is a binary notion: refuse it up front (before training) for more classes."""
    if operating_point and len(classes) != 2:
        raise CxrError(
            f"--operating-point needs a binary model, but the data has {len(classes)} classes ({', '.join(classes)}); "
            "drop --operating-point"
        )


def choose_threshold(y_true: np.ndarray, p_positive: np.ndarray, spec: OperatingPoint) -> float:
    """Threshold on P(positive) (positive when P >= threshold) meeting `spec` on these data.

    sensitivity=S: the highest threshold whose sensitivity is >= S (so specificity is as high as it can be);
    specificity=S: the lowest threshold whose specificity is >= S (so sensitivity is as high as it can be);
    youden: the threshold maximising sensitivity + specificity - 1.
    The value returned lies halfway to the next lower score: the same decisions on these data, with a margin
    against rounding when the probabilities are recomputed elsewhere. It is exactly representable in the dtype of
    `p_positive` (float32 from `predict`), because numpy compares a float32 array with a Python float in float32.
    """
    positive = np.asarray(y_true) == 1
    if positive.all() or not positive.any():
        raise CxrError("choosing an operating point needs validation images of both classes")
    p_positive = np.asarray(p_positive)
    ftype = np.float32 if p_positive.dtype == np.float32 else np.float64
    fpr, tpr, thresholds = roc_curve(positive, p_positive.astype(np.float64), drop_intermediate=False)
    if spec.kind == "sensitivity":
        i = int(np.argmax(tpr >= spec.target - 1e-12))
    elif spec.kind == "specificity":
        i = int(np.flatnonzero(1 - fpr >= spec.target - 1e-12)[-1])
    else:
        i = int(np.argmax(tpr - fpr))
    if i == 0:  # thresholds[0] is +inf: call nothing positive; any value above the top score does that
        return float(np.nextafter(ftype(thresholds[1]), ftype(np.inf)))
    hi = ftype(thresholds[i])
    lo = ftype(thresholds[i + 1]) if i + 1 < len(thresholds) else ftype(0.0)
    mid = ftype((float(hi) + float(lo)) / 2)
    return float(mid if lo < mid <= hi else hi)  # adjacent floats have no midpoint: keep the score itself


def operating_point_table(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    thresholds: dict[str, float],
    n_bootstrap: int = 0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per named threshold: sensitivity, specificity, PPV, NPV and their intervals (via compute_metrics)."""

    rows = []
    for name, t in thresholds.items():
        m = compute_metrics(y_true, probs, classes, threshold=t, n_bootstrap=n_bootstrap, seed=seed)
        keys = ("sensitivity", "specificity", "ppv", "npv", "accuracy")
        row: dict[str, Any] = {"name": name, "threshold": t, **{k: m[k] for k in keys}}
        if "ci" in m:
            row["ci"] = {k: m["ci"][k] for k in keys}
        rows.append(row)
    return rows
