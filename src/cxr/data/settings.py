"""The data layer's settings, light to import (pydantic only): how films are grouped into patients, how their
intensities reach the network, and how training films are augmented. The training config (cxr.config) is built from
them; the pipeline (transforms, splits) and the models read them without knowing the training config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Kermany file names: `person12_bacteria_3` -> person12, `IM-0115-0001` -> IM-0115, `NORMAL2-IM-0383-0001` ->
# NORMAL2-IM-0383 (its own numbering: NORMAL2 and plain IM numbers coincide for different people).
KERMANY_PATIENT_PATTERN = r"person(\d+)_|(?:NORMAL2-)?IM-(\d+)"

# How each image's intensities reach the network (meanings: cxr.models.registry, which creates the hooks).
InputNorm = Literal["dataset", "image", "histeq"]


class StrictModel(BaseModel):
    """Unknown keys are refused (a misspelt key must not pass silently) and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(StrictModel):
    """Train-only augmentation. Flips are off by default: chest X-rays have a handedness (heart on the left)."""

    rotation_deg: float = Field(10.0, ge=0, le=45, description="max rotation in degrees, either way")
    shift: float = Field(0.1, ge=0, le=0.5, description="max translation as a fraction of the image side")
    zoom: float = Field(0.1, ge=0, le=0.5, description="max scale change, e.g. 0.1 = 0.9x..1.1x")
    hflip: bool = Field(False, description="random horizontal flips (off: a flipped film puts the heart on the right)")
    prob: float = Field(0.9, ge=0, le=1, description="probability that the affine augmentation is applied")
    contrast: float = Field(0.15, ge=0, lt=1, description="random gamma in 1 +- contrast (0 = off); scanners differ")
    brightness: float = Field(0.1, ge=0, lt=1, description="random intensity scale in 1 +- brightness (0 = off)")
    low_res: float = Field(
        0.25,
        ge=0,
        le=1,
        description="probability of down- then up-sampling by 0.25x-1x (0 = off); films arrive at "
        "many resolutions and resampling histories",
    )
    noise: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="max std of added Gaussian noise as a share of white, drawn per film from "
        "0..noise, on half the films (0 = off); low-dose and portable films are noisy",
    )
    blur: float = Field(
        1.0,
        ge=0,
        le=8,
        description="max Gaussian blur sigma in pixels at 224 px (scaled with image_size), on a "
        "third of the films (0 = off); detectors and resampling soften edges",
    )
    mixup: float = Field(
        0.2,
        ge=0,
        le=10,
        description="mixup: train on blends of two images with their labels blended alike, "
        "weight ~ Beta(mixup, mixup), e.g. 0.2 (0 = off)",
    )
