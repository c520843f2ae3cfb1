"""The input guard: says when a film is unlike the films the model was trained on, before its answer is trusted.

Two layers. Cheap checks on the file and its pixels catch what is plainly not a chest film (under 64 px on a side, an
aspect beyond 1:3, a colour photograph, NaN pixels, a nearly constant image). A score on the network's own features
catches the rest: Mahalanobis distances to the nearest class mean, with one covariance shared by the classes (Lee et
al., NeurIPS 2018), at three depths of the network (two convolutions' channel statistics, which see noise and texture,
and the pooled features entering the head), fitted on the training films after training. The threshold on the
largest of the three is the 99th percentile over the validation films, so 99 % of validation passes.

Why features and not the output: the softmax of a small CNN is confident far from its data (a black square got 0.994
in cxr 0.5), and energy / max-probability scores rank such inputs as in-distribution; distances in feature space do
not depend on the head's confidence (docs/stress-and-guard.md; `python -m benchmarks stress-guard` measures the guard).

The state is a few tensors saved in model.pt (key "guard"); nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

import numpy as np
import torch
from torch import nn

from cxr.data.images import ImageInfo
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.models import model_spec
from cxr.models.ensemble import ENSEMBLE
from cxr.rundir import MODEL

GUARD_FORMAT = "cxr-guard/1"
VAL_PASS_RATE = 0.99  # the share of validation films the threshold lets through
MIN_SIDE = 64  # pixels: smaller than any radiograph worth reading
MAX_ASPECT = 3.0  # a chest film is roughly square; beyond 1:3 it is a strip, a banner or a crop
MAX_COLOURFULNESS = 20.0  # Hasler & Suesstrunk: ~15 is "slightly colourful"; tinted gray scans stay well under it
MIN_PIXEL_STD = 2.0  # gray levels: a film with less spread than this is blank (black, white or one value)


class GuardFit(TypedDict):
    """What a guard was fitted on (`InputGuard.fitted`): saved in model.pt, and metrics.json["guard"]."""

    method: str
    train_images: int
    threshold_from: str  # "val", or "train" when there is no validation split (a refit)
    threshold_images: int
    pass_rate: float  # the share of those films under the threshold (at least VAL_PASS_RATE)
    feature_dims: list[int]  # per tap
    checks_off: NotRequired[list[str]]  # cheap checks the training films fail themselves (absent in older bundles)


@dataclass
class GuardResult:
    """Per image: `score` = feature distance / threshold (over 1 is unlike the training films), the verdict, and why."""

    scores: np.ndarray  # (N,) float
    in_distribution: np.ndarray  # (N,) bool
    reasons: list[str]  # "" when in distribution

    def warning(self, i: int) -> str | None:
        if self.in_distribution[i]:
            return None
        return (
            f"this image is unlike the films the model was trained on ({self.reasons[i]}); do not trust its prediction"
        )


def feature_taps(model: nn.Module, model_name: str, members: list[dict[str, Any]] | None = None) -> list[Tap]:
    """Where the guard reads each network (each ensemble member): two convolutions, a third and two thirds of the
    way in (the mean and spread of every channel: texture, noise, contrast), and the input of the classification
    head (the pooled features the decision is made from)."""

    nets = (
        list(zip(model.members, [m["model"] for m in members or []]))
        if model_name == ENSEMBLE
        else [(model, model_name)]
    )
    taps = []
    for net, name in nets:
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]  # none in dense-baseline: the head alone
        taps += [Tap(convs[i], "output") for i in sorted({len(convs) // 3, 2 * len(convs) // 3}) if convs]
        taps.append(Tap(net.get_submodule(model_spec(name).head), "input"))
    return taps


@dataclass(frozen=True)
class Tap:
    module: nn.Module
    where: str  # "output" of a convolution (channel mean and std) or "input" of the head (pooled features)


def _pooled(x: torch.Tensor, with_spread: bool) -> torch.Tensor:
    x = x.float()
    if x.ndim != 4:
        return x.flatten(1)
    mean = x.mean(dim=(2, 3))
    return torch.cat([mean, x.std(dim=(2, 3), correction=0)], dim=1) if with_spread else mean


@contextmanager
def capturing(taps: list[Tap]) -> Iterator[dict[int, torch.Tensor]]:
    """Hooks that put each tap's pooled features (by tap index) into the yielded dict on every forward pass, removed
    on exit. One definition for the PyTorch pass and the ONNX export's extra outputs, so both compute the same."""
    captured: dict[int, torch.Tensor] = {}

    def hook(index: int, tap: Tap):
        if tap.where == "input":
            return tap.module.register_forward_pre_hook(
                lambda _m, args: captured.__setitem__(index, _pooled(args[0], False))
            )
        return tap.module.register_forward_hook(lambda _m, _args, out: captured.__setitem__(index, _pooled(out, True)))

    handles = [hook(i, t) for i, t in enumerate(taps)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


class TappedNetwork(nn.Module):
    """`model` returning (logits, tap 0 features, tap 1 features, ...): what ONNX export traces, so that one ONNX
    Runtime call gives the logits and the guard's features (no second, PyTorch pass when serving)."""

    def __init__(self, model: nn.Module, taps: list[Tap]):
        super().__init__()
        self.model = model
        self.taps = taps  # plain list: the tapped modules are the model's own, registered once under `model`

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with capturing(self.taps) as captured:
            logits = self.model(x)
        return (logits, *(captured[i] for i in range(len(self.taps))))


@torch.inference_mode()
def features_and_logits(
    model: nn.Module, taps: list[Tap], images_uint8: np.ndarray, mean: float, std: float, batch: int = 128
) -> tuple[list[np.ndarray], np.ndarray]:
    """(N, S, S) uint8 -> (one (N, D_t) array per tap, logits (N, C)) in one forward pass, through hooks."""
    device = next(model.parameters()).device
    feats: list[list[np.ndarray]] = [[] for _ in taps]
    logits = []
    model.eval()
    with capturing(taps) as captured:
        for i in range(0, len(images_uint8), batch):
            captured.clear()
            out = model(normalise(images_uint8[i : i + batch], mean, std).to(device))
            for t in range(len(taps)):
                feats[t].append(captured[t].double().cpu().numpy())
            logits.append(out.float().cpu().numpy())
    if not logits:
        return [np.zeros((0, 0)) for _ in taps], np.zeros((0, 0), np.float32)
    return [np.concatenate(f) for f in feats], np.concatenate(logits)


def _squared_distances(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N, D) -> (N,) squared Mahalanobis distance to the nearest class mean."""
    diff = features[:, None, :] - means[None, :, :]  # (N, C, D)
    return np.einsum("ncd,de,nce->nc", diff, precision, diff).min(axis=1)


@dataclass
class TapModel:
    """Class means, shared precision and the distance scale (median over validation) at one tap."""

    means: np.ndarray
    precision: np.ndarray
    scale: float

    def distances(self, features: np.ndarray) -> np.ndarray:
        d2 = _squared_distances(np.asarray(features, np.float64), self.means, self.precision)
        return np.sqrt(np.maximum(d2, 0)) / self.scale


class InputGuard:
    """Fitted state + the checks; `assess` gives one GuardResult for a batch."""

    def __init__(self, taps: list[TapModel], threshold: float, fitted: GuardFit):
        self.taps = taps
        self.threshold = float(threshold)  # on the largest of the taps' scaled distances
        self.fitted = fitted  # what it was fitted on: counts, pass rate on validation, checks turned off
        self.val_scores: np.ndarray | None = None  # after `fit` with validation: its films' scores, as `assess`

    @classmethod
    def fit(
        cls,
        train_features: list[np.ndarray],
        train_labels: np.ndarray,
        val_features: list[np.ndarray] | None = None,
        checks_off: list[str] | None = None,
    ) -> InputGuard:
        """Per tap, class means and a shared, shrunk covariance from the training films, its distances scaled by
        their validation median; the score is the largest scaled distance over the taps, and its threshold lets 99 %
        of the validation films pass (of the training films when there is no validation split, as after a refit).
        `checks_off`: cheap checks the training films themselves fail (checks_the_training_films_fail)."""
        from sklearn.covariance import LedoitWolf  # shrinkage: a covariance from a few hundred films of 96-2048 dims

        y = np.asarray(train_labels)
        classes = np.unique(y)
        held_out = val_features is not None and len(val_features[0]) > 0
        taps = []
        for t, train in enumerate(train_features):
            x = np.asarray(train, np.float64)
            means = np.stack([x[y == c].mean(axis=0) for c in classes])
            centred = x - means[np.searchsorted(classes, y)]
            precision = LedoitWolf(assume_centered=True).fit(centred).precision_
            tap = TapModel(means, precision, 1.0)
            tap.scale = float(np.median(tap.distances(val_features[t] if held_out else x))) or 1.0
            taps.append(tap)
        guard = cls(taps, 1.0, cast(GuardFit, {}))  # filled in below, once the threshold is known
        scores = guard.scores(val_features if held_out else train_features)
        guard.threshold = float(np.quantile(scores, VAL_PASS_RATE, method="higher"))  # at least 99 % pass
        if held_out:  # not saved in model.pt: training records them in metrics.json for `cxr monitor`
            guard.val_scores = (scores / guard.threshold).astype(np.float32)
        guard.fitted = {
            "method": "Mahalanobis distance (shared covariance, Ledoit-Wolf) at two convolutions and the head input",
            "train_images": int(len(y)),
            "threshold_from": "val" if held_out else "train",
            "threshold_images": int(len(scores)),
            "pass_rate": float((scores <= guard.threshold).mean()),
            "feature_dims": [int(np.asarray(f).shape[1]) for f in train_features],
            "checks_off": list(checks_off or []),
        }
        return guard

    def scores(self, features: list[np.ndarray]) -> np.ndarray:
        """The largest of the taps' distances, each in units of its validation median."""
        return np.max([tap.distances(f) for tap, f in zip(self.taps, features)], axis=0)

    def assess(
        self, images_uint8: np.ndarray, features: list[np.ndarray], infos: list[ImageInfo | None] | None = None
    ) -> GuardResult:
        scores = self.scores(features) / self.threshold
        reasons = []
        off = set(self.fitted.get("checks_off", []))
        for i in range(len(scores)):
            info = infos[i] if infos is not None else None
            why = [words for name, words in cheap_checks(images_uint8[i], info) if name not in off]
            if not why and scores[i] > 1.0:
                why = [f"feature distance {scores[i]:.1f}x the threshold that 99 % of validation films pass"]
            reasons.append("; ".join(why))
        return GuardResult(scores.astype(np.float32), np.array([r == "" for r in reasons]), reasons)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": GUARD_FORMAT,
            "taps": [
                {"means": torch.from_numpy(t.means), "precision": torch.from_numpy(t.precision), "scale": t.scale}
                for t in self.taps
            ],
            "threshold": self.threshold,
            "fitted": self.fitted,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> InputGuard | None:
        if payload is None:
            return None
        if payload.get("format") != GUARD_FORMAT:
            raise CxrError(
                f"{MODEL} holds an input guard of format {payload.get('format')!r}, not {GUARD_FORMAT}; "
                "fit it again with `cxr run guard RUN`"
            )
        taps = [TapModel(t["means"].numpy(), t["precision"].numpy(), float(t["scale"])) for t in payload["taps"]]
        return cls(taps, payload["threshold"], payload["fitted"])


def cheap_checks(image_uint8: np.ndarray, info: ImageInfo | None) -> list[tuple[str, str]]:
    """What makes an input plainly not a chest film: (check, words) pairs; empty when nothing does."""
    why = []
    if info is not None:
        short, long = sorted((info.width, info.height))
        if short < MIN_SIDE:
            why.append(("small", f"only {info.width}x{info.height} pixels, under {MIN_SIDE} on a side"))
        elif long / short > MAX_ASPECT:
            why.append(("aspect", f"aspect ratio {long / short:.1f}:1, beyond 1:{MAX_ASPECT:g}"))
        if info.mode == "CMYK":
            why.append(("cmyk", "a CMYK print image, not a radiograph"))
        elif info.colourfulness > MAX_COLOURFULNESS:
            why.append(("colour", f"a colour image (colourfulness {info.colourfulness:.0f}); radiographs are gray"))
        if info.nonfinite:
            why.append(("nonfinite", "non-finite pixel values (NaN or infinity)"))
    spread = float(np.asarray(image_uint8, np.float32).std())
    if spread < MIN_PIXEL_STD:
        why.append(("constant", f"nearly constant pixels (spread {spread:.1f} gray levels)"))
    return why


def checks_the_training_films_fail(images_uint8: np.ndarray, infos: list[ImageInfo | None]) -> list[str]:
    """Cheap checks that more than 1 % of the training films fail: they describe this collection, not a mistake
    (covid19-codecademy's films carry green overlays, so "a colour image" is normal there), and are turned off."""
    counts: dict[str, int] = {}
    for image, info in zip(images_uint8, infos):
        for name, _ in cheap_checks(image, info):
            counts[name] = counts.get(name, 0) + 1
    return sorted(name for name, n in counts.items() if n > (1 - VAL_PASS_RATE) * len(images_uint8))
