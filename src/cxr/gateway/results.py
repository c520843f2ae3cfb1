"""What the gateway knows about one scored film: the contract between intake (which scores) and sr.py (which writes
the DICOM result). Plain data, so a result can be rebuilt from the reading room's row alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AlgorithmFacts:
    """The IHE AI Results "algorithm identification": which model made the result, and with which cxr."""

    model_id: str  # the run directory's name
    model_version: str  # first 12 hex digits of the weights' SHA-256
    architecture: str
    cxr_version: str


@dataclass(frozen=True)
class ScoredFilm:
    """One film's result as the reading room recorded it."""

    film_id: str  # the reading room's study id (/v1/studies/{film_id})
    classes: Sequence[str]
    probabilities: Sequence[float]  # calibrated, in `classes` order
    predicted: str  # the model's decision at its operating point
    threshold: float | None  # binary decision threshold on P(classes[1]); None: the most probable class
    normal_class: str  # the class triage puts last ("Normal"); every other class is a finding
    in_distribution: bool | None  # the input guard's verdict; None: the model has no guard
    guard_score: float | None
    guard_reason: str | None
    algorithm: AlgorithmFacts
    for_diagnostic_use: bool = False  # False: the SR says "not for diagnostic use" (research models)
