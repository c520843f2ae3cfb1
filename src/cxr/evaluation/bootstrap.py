"""Stratified bootstrap: resample each true class with replacement, keep its size, read intervals off percentiles.

Hand-written rather than `scipy.stats.bootstrap`: scipy does not stratify, and here one set of resamples feeds every
metric at once (and both models of a paired comparison), which its one-statistic interface cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
_CHUNK = 200  # resamples evaluated together: bounds memory at about _CHUNK x N x C floats

Statistic = Callable[[np.ndarray], dict[str, Any]]


def stratified_resamples(labels: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield (b, N) index arrays, b <= _CHUNK; every row holds as many images of each class as `labels` does.

    Rows list the classes in a fixed order, so `labels[idx]` is the same for every row.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for start in range(0, n_resamples, _CHUNK):
        b = min(_CHUNK, n_resamples - start)
        yield np.concatenate([m[rng.integers(0, len(m), size=(b, len(m)))] for m in members], axis=1)


def bootstrap_distribution(labels: np.ndarray, statistic: Statistic, n_resamples: int, seed: int) -> dict[str, Any]:
    """Run `statistic` (index rows -> nested dict of (b, ...) arrays) on all resamples; concatenate the results."""
    parts = [statistic(idx) for idx in stratified_resamples(labels, n_resamples, seed)]
    return _concat(parts)


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return None if parts[0] is None else np.concatenate(parts, axis=0)


def percentile_interval(values: np.ndarray | None, level: float = DEFAULT_LEVEL) -> list[float] | None:
    """[low, high] percentile interval of a (B,) sample; None when the metric is undefined (e.g. AUC, one class)."""
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def intervals(distribution: Any, level: float = DEFAULT_LEVEL) -> Any:
    """Map a nested dict of bootstrap samples to the same nesting of [low, high] intervals."""
    if isinstance(distribution, dict):
        return {k: intervals(v, level) for k, v in distribution.items()}
    return percentile_interval(distribution, level)


def describe(n_resamples: int, seed: int, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """How the intervals were made, stored next to them in metrics.json."""
    return {"method": "stratified bootstrap, percentile", "resamples": n_resamples, "seed": seed, "level": level}
