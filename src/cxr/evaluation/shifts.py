"""The acquisition-shift battery of `cxr stress`: what another scanner, protocol or PACS does to a film.

Each shift has 4 severities, mild to severe (inverted polarity has one: a film is inverted or not). Shifts act on
the decoded uint8 films at the model's input size, the pixels `cxr predict` would feed it, so the battery costs one
prediction per film and severity on either backend. Libraries do the transforms that need care (MONAI the geometry,
Pillow JPEG and text, SciPy the blur, torch resampling and Poisson draws); the one-liners written here (gamma,
Gaussian noise, contrast about the mean, borders, inversion) act on the whole batch at once, which MONAI's per-image
intensity transforms do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxr.errors import CxrError
from cxr.inference.tta import view

Images = np.ndarray  # (N, S, S) uint8


@dataclass(frozen=True)
class Shift:
    name: str
    levels: tuple[float, ...]  # the parameter at severity 1, 2, ...
    unit: str  # what the parameter means, for tables and plots
    apply: Callable[[Images, float, np.random.Generator], Images]


def _to_uint8(x: np.ndarray | torch.Tensor) -> Images:
    return np.clip(np.rint(np.asarray(x, dtype=np.float32)), 0, 255).astype(np.uint8)


def _gamma(images: Images, gamma: float, _rng) -> Images:
    """MONAI AdjustContrast's formula (each film's own range to the power gamma, as another detector response
    curve would give), vectorised over the batch: MONAI's transform takes one image per call, 100x slower here."""
    x = images.astype(np.float32)
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    span = np.maximum(hi - lo, 1e-7)
    return _to_uint8(lo + ((x - lo) / span) ** gamma * span)


def _contrast(images: Images, factor: float, _rng) -> Images:
    mean = images.reshape(len(images), -1).mean(axis=1)[:, None, None]
    return _to_uint8(mean + (images - mean) * factor)  # a flatter film (under-exposed, over-processed)


def _brightness(images: Images, offset: float, _rng) -> Images:
    return _to_uint8(images.astype(np.float32) + 255.0 * offset)  # a brighter film; highlights clip


def _blur(images: Images, sigma_at_224: float, _rng) -> Images:
    from scipy.ndimage import gaussian_filter

    sigma = sigma_at_224 * images.shape[-1] / 224  # the same physical blur at any input size
    return _to_uint8(gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma)))  # not across the batch


def _gaussian_noise(images: Images, std: float, rng: np.random.Generator) -> Images:
    return _to_uint8(images + rng.normal(0.0, std, images.shape))


def _poisson_noise(images: Images, photons_at_white: float, rng: np.random.Generator) -> Images:
    # quantum noise of a low-dose exposure: counts ~ Poisson(intensity x dose), scaled back (torch: 2x numpy's speed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    counts = torch.poisson(torch.from_numpy(images / 255.0 * photons_at_white), generator=generator)
    return _to_uint8(counts.numpy() / photons_at_white * 255.0)


def _jpeg(images: Images, quality: float, _rng) -> Images:
    import io

    from PIL import Image

    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    return np.stack(out)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def _low_resolution(images: Images, factor: float, _rng) -> Images:
    side = images.shape[-1]
    small = max(4, round(side * factor))
    x = torch.from_numpy(images.astype(np.float32))[:, None]  # area down, bilinear up, as training's simulation does
    return _to_uint8(_resize(_resize(x, (small, small), "area"), (side, side), "bilinear")[:, 0])


def _letterbox(images: Images, aspect: float, _rng) -> Images:
    """A film narrower than tall, padded with black to a square (as a viewer or converter would)."""
    side = images.shape[-1]
    width = max(2, round(side * aspect))
    narrow = _resize(torch.from_numpy(images.astype(np.float32))[:, None], (side, width), "bilinear")[:, 0]
    out = np.zeros_like(images)
    left = (side - width) // 2
    out[:, :, left : left + width] = _to_uint8(narrow)
    return out


def _squash(images: Images, aspect: float, _rng) -> Images:
    """A portrait film (width = aspect x height) squashed to a square: the anatomy comes out wider than in training."""
    side = images.shape[-1]
    width = max(2, round(side * aspect))
    left = (side - width) // 2
    middle = torch.from_numpy(images[:, :, left : left + width].astype(np.float32))[:, None]
    return _to_uint8(_resize(middle, (side, side), "bilinear")[:, 0])


def _rotation(images: Images, degrees: float, _rng) -> Images:
    return view(images, degrees, 0.0, 0.0, 1.0)


def _translation(images: Images, fraction: float, _rng) -> Images:
    return view(images, 0.0, fraction, fraction, 1.0)


def _zoom(images: Images, zoom: float, _rng) -> Images:
    return view(images, 0.0, 0.0, 0.0, 1.0 / zoom)  # MONAI's scale < 1 magnifies: a tighter crop


def _invert(images: Images, _level: float, _rng) -> Images:
    return 255 - images  # a MONOCHROME1 film read as MONOCHROME2


def _marker(images: Images, height: float, _rng) -> Images:
    """A burned-in laterality letter and label in the top-left corner, white, `height` x the side."""
    from PIL import Image, ImageDraw, ImageFont

    side = images.shape[-1]
    font = ImageFont.load_default(size=max(6, round(side * height)))
    out = []
    for im in images:
        pil = Image.fromarray(im)
        ImageDraw.Draw(pil).text((round(side * 0.04), round(side * 0.04)), "L PORT", fill=255, font=font)
        out.append(np.asarray(pil))
    return np.stack(out)


def _collimation(images: Images, fraction: float, _rng) -> Images:
    out = images.copy()
    k = max(1, round(images.shape[-1] * fraction))
    out[:, :k], out[:, -k:], out[:, :, :k], out[:, :, -k:] = 0, 0, 0, 0  # shutters closed further than in training
    return out


SHIFTS: dict[str, Shift] = {
    s.name: s
    for s in (
        Shift("gamma", (1.3, 1.6, 2.0, 2.8), "gamma", _gamma),
        Shift("contrast", (0.8, 0.6, 0.45, 0.3), "contrast factor", _contrast),
        Shift("brightness", (0.08, 0.16, 0.25, 0.4), "offset (share of white)", _brightness),
        Shift("blur", (0.75, 1.5, 2.5, 4.0), "sigma (px at 224)", _blur),
        Shift("gaussian_noise", (5.0, 10.0, 20.0, 35.0), "std (gray levels)", _gaussian_noise),
        Shift("poisson_noise", (300.0, 100.0, 40.0, 15.0), "photons at white", _poisson_noise),
        Shift("jpeg", (50.0, 25.0, 12.0, 5.0), "JPEG quality", _jpeg),
        Shift("low_resolution", (0.5, 0.33, 0.25, 0.15), "resolution factor", _low_resolution),
        Shift("rotation", (5.0, 10.0, 15.0, 25.0), "degrees", _rotation),
        Shift("translation", (0.05, 0.1, 0.15, 0.25), "shift (share of side)", _translation),
        Shift("zoom", (1.1, 1.2, 1.35, 1.5), "magnification", _zoom),
        Shift("letterbox", (0.9, 0.8, 0.7, 0.6), "aspect, padded", _letterbox),
        Shift("squash", (0.9, 0.8, 0.7, 0.6), "aspect, squashed", _squash),
        Shift("invert", (1.0,), "inverted", _invert),
        Shift("marker", (0.05, 0.08, 0.12, 0.18), "text height (share of side)", _marker),
        Shift("collimation", (0.04, 0.08, 0.12, 0.18), "border (share of side)", _collimation),
    )
}
MAX_SEVERITY = max(len(s.levels) for s in SHIFTS.values())


def choose_shifts(names: list[str] | None, severity: int | None) -> list[tuple[Shift, int]]:
    """(shift, severity) pairs to run: all, or the named shifts; all severities, or one. Bad names are one line."""
    if severity is not None and not 1 <= severity <= MAX_SEVERITY:
        raise CxrError(f"--severity must be 1 (mild) to {MAX_SEVERITY} (severe), not {severity}")
    chosen = list(SHIFTS.values())
    if names:
        unknown = [n for n in names if n not in SHIFTS]
        if unknown:
            raise CxrError(f"unknown shift {', '.join(map(repr, unknown))}; choose from {', '.join(SHIFTS)}")
        chosen = [SHIFTS[n] for n in dict.fromkeys(names)]
    pairs = [(s, k) for s in chosen for k in range(1, len(s.levels) + 1) if severity is None or k == severity]
    if not pairs:
        raise CxrError(f"no shift among {', '.join(s.name for s in chosen)} has severity {severity}")
    return pairs


def apply_shift(shift: Shift, severity: int, images: Images, seed: int = 0) -> Images:
    """The films under `shift` at `severity` (1-based); random shifts draw from a generator seeded by all three."""
    rng = np.random.default_rng([seed, list(SHIFTS).index(shift.name), severity])
    return shift.apply(images, shift.levels[severity - 1], rng)
