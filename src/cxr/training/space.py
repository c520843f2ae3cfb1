"""The search space of `cxr sweep`: config keys with ranges or choices, checked against TrainConfig before any trial.

A space file is YAML, one entry per config key (dotted for sections, e.g. `augment.mixup`):

    lr: {low: 1.0e-4, high: 3.0e-3, log: true}     # a float range (log-uniform)
    epochs: {low: 10, high: 40, step: 10}          # integers: both ends whole numbers
    model: {choices: [smallnet, resnet18]}         # a categorical choice
    augment.mixup: {choices: [0.0, 0.2]}

or named candidates, each a set of keys changed together, tried once each (a grid when every entry is a choice):

    candidates:
      recipe: {}                                     # the base config as it is
      acquisition: {augment.noise: 0.08, augment.blur: 1.5, augment.low_res: 0.5}

Every end of a range and every choice is validated as part of the base config, so a value TrainConfig would refuse
(lr 5, an unknown model) is a one-line error before the first trial, not a failed trial an hour in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cxr.config import AugmentConfig, TrainConfig, format_validation_error
from cxr.errors import CxrError

# keys a sweep must not vary: they decide which data is read and how it is split, not how a model is trained
FIXED_KEYS = frozenset(
    {
        "data",
        "val_fraction",
        "split_seed",
        "patient_id_pattern",
        "cache_dir",
        "strict",
        "track",
        "tracking_uri",
        "experiment",
        "accelerator",
        "devices",
        "strategy",
        "num_workers",
    }
)
RANGE_KEYS = {"low", "high", "log", "step"}
CANDIDATES_KEY = "candidates"  # the space entry of named candidates (a categorical over sets of changes)


@dataclass(frozen=True)
class Param:
    """One searched key: a range (low..high, log or stepped) or a list of choices."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None
    presets: dict[str, dict[str, Any]] | None = None  # candidates: name -> {dotted key: value}

    @property
    def is_int(self) -> bool:
        ends = (self.low, self.high)
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool) for v in ends)

    def suggest(self, trial) -> Any:
        """The value Optuna's sampler picks for this key (`trial` is an optuna.Trial)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def changes(self, value: Any) -> dict[str, Any]:
        """The config keys this parameter's value sets: itself, or a named candidate's whole set."""
        return dict(self.presets[value]) if self.presets is not None else {self.key: value}


def expand(params: list[Param], values: dict[str, Any]) -> dict[str, Any]:
    """Sampled values -> the config keys they set (a candidate name becomes its changes)."""
    changes: dict[str, Any] = {}
    for p in params:
        if p.key in values:
            changes.update(p.changes(values[p.key]))
    return changes


def _known_key(key: str) -> None:
    head, _, tail = key.partition(".")
    if head == "augment" and tail in AugmentConfig.model_fields:
        return
    if tail or head not in TrainConfig.model_fields or head == "augment":
        hint = ", ".join(sorted(k for k in TrainConfig.model_fields if k not in FIXED_KEYS | {"augment"}))
        augment = ", ".join(f"augment.{k}" for k in AugmentConfig.model_fields)
        raise CxrError(f"space: unknown config key {key!r}; searchable keys are {hint}, {augment}")
    if head in FIXED_KEYS:
        raise CxrError(
            f"space: {key!r} cannot be searched: it fixes the data, its split or where the sweep runs; "
            "set it once in --config"
        )


def _flatten(entries: dict[str, Any]) -> dict[str, Any]:
    """`augment: {mixup: ...}` is read as augment.mixup."""
    flat: dict[str, Any] = {}
    for key, spec in entries.items():
        if key == "augment" and isinstance(spec, dict) and not set(spec) & (RANGE_KEYS | {"choices"}):
            flat.update({f"augment.{k}": v for k, v in spec.items()})
        else:
            flat[str(key)] = spec
    return flat


def _parse_candidates(spec: Any) -> Param:
    if not isinstance(spec, dict) or not spec:
        raise CxrError(
            f"space: {CANDIDATES_KEY} must map names to the keys each changes, e.g. "
            "{recipe: {}, noisy: {augment.noise: 0.08}}"
        )
    presets = {}
    for name, changes in spec.items():
        if not isinstance(changes, dict):
            raise CxrError(f"space: candidate {name!r} must be a mapping of config keys to values, not {changes!r}")
        presets[str(name)] = _flatten(changes)
        for key in presets[str(name)]:
            _known_key(key)
    return Param(CANDIDATES_KEY, choices=tuple(presets), presets=presets)


def _parse_entry(key: str, spec: Any) -> Param:
    if key == CANDIDATES_KEY:
        return _parse_candidates(spec)
    _known_key(key)
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise CxrError(f"space: {key!r} must be a range {{low: A, high: B}} or {{choices: [...]}}, not {spec!r}")
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        choices = spec["choices"]
        if extra or not isinstance(choices, list) or not choices:
            raise CxrError(f"space: {key!r}: choices must be a non-empty list and alone, e.g. {{choices: [a, b]}}")
        return Param(key, choices=tuple(choices))
    unknown = set(spec) - RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise CxrError(f"space: {key!r}: a range takes low, high and optionally log, step (got {sorted(spec)})")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise CxrError(f"space: {key!r}: low and high must be numbers, not {low!r} and {high!r}")
    if low > high:
        raise CxrError(f"space: {key!r}: low {low} is above high {high}; swap them")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and (low <= 0 or step is not None):
        raise CxrError(f"space: {key!r}: a log range needs low > 0 and no step")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise CxrError(f"space: {key!r}: step must be a positive number, not {step!r}")
    return Param(key, low=low, high=high, log=log, step=step)


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The base config's values with the searched keys set (dotted keys into their section)."""
    values = dict(base)
    for key, value in params.items():
        head, _, tail = key.partition(".")
        if tail:  # a copy: the base's section stays as it was
            values[head] = {**(values.get(head) or {}), tail: value}
        else:
            values[key] = value
    return values


def load_space(path: str | Path, base: TrainConfig) -> list[Param]:
    """Parse and check a space file against `base`: every range end and choice must make a valid config."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"space file {path} not found; pass a YAML file of config keys with ranges or choices")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CxrError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise CxrError(
            f"{path}: expected a mapping of config keys to ranges or choices, e.g. lr: {{low: 1e-4, high: 1e-2}}"
        )
    return parse_space(loaded, base, str(path))


def parse_space(entries: dict[str, Any], base: TrainConfig, source: str = "space") -> list[Param]:
    """Check a space (as loaded from YAML) against `base`: every range end, choice and candidate must be valid."""
    params = [_parse_entry(key, spec) for key, spec in _flatten(entries).items()]
    candidates = [p for p in params if p.presets is not None]
    varied = {p.key for p in params if p.presets is None}
    clash = sorted(varied & {k for p in candidates for preset in p.presets.values() for k in preset})
    if clash:
        raise CxrError(f"{source}: {', '.join(clash)} is both searched and set by a candidate; keep it in one place")
    values = base.given_values()
    for p in params:
        for value in p.values_to_check():
            try:
                TrainConfig.model_validate(apply_params(values, p.changes(value)))
            except ValidationError as e:
                raise CxrError(format_validation_error(e, f"{source}: {p.key}={value!r}")) from None
    return params
