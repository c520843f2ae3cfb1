"""The drift tests `cxr monitor` runs on each window (a day or a week of served films), fixed before any data was seen
(docs/reading-room.md, "Monitoring"). Every test is a standard one from SciPy; none is written here by hand:

- class mix: Pearson's chi-square goodness of fit (`scipy.stats.chisquare`) of the window's predicted-class counts
  against the reference mix;
- confidence, guard score, input statistics: the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`) of the
  window's values against the reference sample;
- guard flag rate: an exact one-sided binomial test (`scipy.stats.binomtest`) against the rate the bundle's guard
  threshold lets through on validation (1 - pass rate): more flags than that is the alarm;
- readers' agreement with the model: an exact one-sided binomial test against the reference agreement (the
  bundle's test accuracy, else the baseline period's): fewer agreeing reads is the alarm.

A window's tests form one family: each runs at ALPHA / m (Bonferroni, m = the tests that ran), so on a stream that has
not drifted a window raises an alarm with probability at most ALPHA. A test needs MIN_FILMS films (MIN_READS reads)
in the window; with fewer it does not run and is not counted in m.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from cxr.rundir import VAL_REFERENCE_DECIMALS

ALPHA = 0.01  # the family false-alarm rate per window
MIN_FILMS = 30  # a window with fewer films is reported, not tested
MIN_READS = 20  # reads in a window before agreement is tested
MIN_SHARE = 1e-3  # a class the reference never predicted still gets this share (chi-square needs expected > 0)
INPUT_STATS = ("pixel_mean", "pixel_std", "colourfulness")


@dataclass
class Reference:
    """What each window is compared with; `source` says where each part came from ("bundle" or "baseline")."""

    classes: list[str]
    mix: np.ndarray | None = None  # predicted-class shares, in `classes` order
    confidence: np.ndarray | None = None  # max probability per film
    guard_scores: np.ndarray | None = None
    flag_rate: float | None = None  # the share of films the guard is expected to flag
    agreement: float | None = None  # the share of reads expected to name the model's class
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)


@dataclass
class WindowData:
    """One window's films: predicted class index and probabilities per film, guard scores and verdicts where known,
    input statistics, and (model class, read class) index pairs for the current reads that name a class."""

    probabilities: np.ndarray  # (n, C)
    predicted: np.ndarray  # (n,) int
    guard_scores: np.ndarray  # finite scores only
    guard_flags: int
    guard_known: int  # films with a verdict
    inputs: dict[str, np.ndarray]
    reads: np.ndarray  # (r, 2) int: (model's class, reader's class)


@dataclass(frozen=True)
class TestResult:
    name: str
    statistic: float
    p_value: float
    alarm: bool  # p below ALPHA / m
    detail: str


def class_mix_p(counts: Sequence[int], reference_mix: np.ndarray) -> tuple[float, float]:
    """Chi-square goodness of fit of predicted-class counts to the reference shares: (statistic, p)."""
    counts = np.asarray(counts, float)
    shares = np.maximum(np.asarray(reference_mix, float), MIN_SHARE)
    expected = counts.sum() * shares / shares.sum()
    result = stats.chisquare(counts, f_exp=expected)
    return float(result.statistic), float(result.pvalue)


def two_sample_p(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, p)."""
    result = stats.ks_2samp(np.asarray(values, float), np.asarray(reference, float))
    return float(result.statistic), float(result.pvalue)


def rate_p(successes: int, trials: int, expected: float, alternative: str) -> tuple[float, float]:
    """Exact binomial test of successes / trials against `expected`: (observed rate, p)."""
    expected = min(max(expected, 1e-9), 1 - 1e-9)
    result = stats.binomtest(int(successes), int(trials), expected, alternative=alternative)
    return successes / trials, float(result.pvalue)


def expected_accuracy(probabilities: np.ndarray) -> float:
    """Label-free accuracy estimate from calibrated probabilities: the mean of the largest (confidence-based
    performance estimation, as NannyML's CBPE for a multiclass model's accuracy). Sound only while the
    calibration holds: a shift that breaks it (the guard's flags, the KS tests) makes this optimistic."""
    return float(np.max(probabilities, axis=1).mean()) if len(probabilities) else float("nan")


def _as_recorded(values: np.ndarray) -> np.ndarray:
    """Values as the bundle records its reference (VAL_REFERENCE_DECIMALS). Comparing full-precision served values
    with a rounded reference is a KS test of the rounding: a confident model's 0.99996 is 1.0 in the reference, so
    every window "drifted" (found by the replay benchmark, docs/reading-room.md)."""
    return np.round(np.asarray(values, float), VAL_REFERENCE_DECIMALS)


def window_tests(w: WindowData, ref: Reference, alpha: float = ALPHA) -> list[TestResult]:
    """Every test the window has data for, each judged at alpha / m."""
    raw: list[tuple[str, float, float, str]] = []
    n = len(w.predicted)
    if n >= MIN_FILMS:
        if ref.mix is not None:
            counts = np.bincount(w.predicted, minlength=len(ref.classes))
            stat, p = class_mix_p(counts, ref.mix)
            raw.append(("class_mix", stat, p, f"chi-square, {len(ref.classes) - 1} df"))
        if ref.confidence is not None and len(ref.confidence):
            stat, p = two_sample_p(_as_recorded(w.probabilities.max(axis=1)), _as_recorded(ref.confidence))
            raw.append(("confidence", stat, p, "KS on the largest probability"))
        if ref.guard_scores is not None and len(ref.guard_scores) and len(w.guard_scores) >= MIN_FILMS:
            stat, p = two_sample_p(_as_recorded(w.guard_scores), _as_recorded(ref.guard_scores))
            raw.append(("guard_score", stat, p, "KS on the guard's score"))
        if ref.flag_rate is not None and w.guard_known >= MIN_FILMS:
            stat, p = rate_p(w.guard_flags, w.guard_known, ref.flag_rate, "greater")
            raw.append(("guard_flag_rate", stat, p, f"binomial, expected {ref.flag_rate:.3f}"))
        for name in INPUT_STATS:
            values, reference = w.inputs.get(name), ref.inputs.get(name)
            if values is not None and reference is not None and len(values) >= MIN_FILMS and len(reference):
                stat, p = two_sample_p(values, reference)
                raw.append((f"input_{name}", stat, p, f"KS on {name}"))
    if ref.agreement is not None and len(w.reads) >= MIN_READS:
        agree = int((w.reads[:, 0] == w.reads[:, 1]).sum())
        stat, p = rate_p(agree, len(w.reads), ref.agreement, "less")
        raw.append(("agreement", stat, p, f"binomial, expected {ref.agreement:.3f}"))
    m = max(len(raw), 1)
    return [TestResult(name, stat, p, p < alpha / m, detail) for name, stat, p, detail in raw]


def overrule_rates(reads: np.ndarray, classes: Sequence[str], normal: int) -> dict[str, float | None]:
    """Per class, the share of reads that overrule the model when it predicts that class ("overrules a positive"
    for a disease class, "a negative" for the normal class); None without reads."""
    out: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        on = reads[reads[:, 0] == c] if len(reads) else reads
        out[name] = float((on[:, 1] != c).mean()) if len(on) else None
    return out
