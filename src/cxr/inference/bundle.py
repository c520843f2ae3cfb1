"""The run directory as a model bundle: `model.pt` (weights + metadata, loads with weights_only=True).

Training writes it last and atomically, so its presence means "finished model". Nothing here imports
Lightning: predicting and serving stay light.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from packaging.version import InvalidVersion, Version
from torch import nn

from cxr.atomic import atomic_path
from cxr.errors import CxrError
from cxr.inference.guard import InputGuard, feature_taps, features_and_logits
from cxr.inference.onnx_backend import load_backend
from cxr.inference.predict import apply_temperature, predict_logits, predict_paths
from cxr.inference.tta import tta_logits
from cxr.models import count_parameters, create_model, model_spec
from cxr.models.ensemble import ENSEMBLE, ensemble_from_specs
from cxr.rundir import CV, FOLDS, MODEL, RunDir
from cxr.version import __version__

BUNDLE_FILE = MODEL  # cxr.rundir.MODEL, by its older name
BUNDLE_FORMAT = "cxr-bundle/1"
log = logging.getLogger(__name__)


@dataclass
class BundleMeta:
    """What a consumer needs besides the weights to reproduce the model's input and output."""

    model: str
    classes: list[str]
    image_size: int
    mean: float
    std: float
    threshold: float | None = None  # binary decision threshold on P(classes[1]); None = argmax
    temperature: float = 1.0  # logits are divided by it before softmax (fitted on validation); absent in old bundles
    input_norm: str = "dataset"  # "image": the model standardises each image itself (models.INPUT_NORMS)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "classes": list(self.classes),
            "image_size": int(self.image_size),
            "mean": float(self.mean),
            "std": float(self.std),
            "threshold": self.threshold,
            "temperature": float(self.temperature),
            "input_norm": self.input_norm,
            "extra": dict(self.extra),
        }


def save_bundle(run_dir: Path, model: nn.Module, meta: BundleMeta, guard: InputGuard | None = None) -> Path:
    """Write `model.pt` atomically (temp file + rename): a crash never leaves a half-written model. `guard`: the input
    guard fitted for these weights (cxr.inference.guard); a caller that changes the features must refit or drop it."""
    target = Path(run_dir) / BUNDLE_FILE
    payload = {
        "format": BUNDLE_FORMAT,
        "meta": meta.to_dict(),
        "cxr_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "num_parameters": count_parameters(model),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    if guard is not None:
        payload["guard"] = guard.to_payload()
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def build_model(meta: BundleMeta) -> nn.Module:
    """The untrained module a bundle's state dict fits: a registry model, or an ensemble of them."""
    if meta.model == ENSEMBLE:
        return ensemble_from_specs(meta.extra["members"], len(meta.classes))
    return create_model(meta.model, num_classes=len(meta.classes), input_norm=meta.input_norm)


def _check_architecture_unchanged(run_dir: str | Path, meta: BundleMeta, saved_by: str) -> None:
    """Refuse a model whose architecture changed since the cxr that saved it: same tensors, another network."""
    names = [m["model"] for m in meta.extra.get("members", [])] if meta.model == ENSEMBLE else [meta.model]
    try:
        saved = Version(saved_by)
    except InvalidVersion:  # not written by a released cxr: assume the oldest
        saved = Version("0")
    for name in names:
        since = model_spec(name).compatible_since
        if saved < Version(since):
            raise CxrError(
                f"{run_dir}: its {name!r} was saved by cxr {saved_by}, and cxr {since} changed that network "
                f"(its weights would load but compute something else); retrain it, or load it with cxr {saved_by}"
            )


def read_bundle_file(run_dir: str | Path) -> dict[str, Any]:
    """Load `model.pt` safely (weights_only=True); a missing or foreign file is a one-line error."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CxrError(f"{run_dir}: no such run directory")
    path = run_dir / BUNDLE_FILE if run_dir.is_dir() else run_dir
    if not path.is_file():
        if RunDir(run_dir).last_checkpoint.is_file():  # an interrupted run: say how to finish it
            hint = f"finish it with `cxr train --resume --out {run_dir}`"
        elif (run_dir / CV).is_file() or (run_dir / FOLDS).is_dir():  # `cxr train --cv`: an estimate
            hint = f"it is a cross-validation ({CV}); each fold's model is in {run_dir / FOLDS}/<k>"
        else:
            hint = f"pass a run directory made by `cxr train` (it holds {MODEL})"
        raise CxrError(f"{run_dir} is not a finished model (no {BUNDLE_FILE}); {hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a corrupt file
        raise CxrError(f"{path}: not a readable cxr model file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise CxrError(f"{path}: not a cxr model bundle (expected format {BUNDLE_FORMAT})")
    return payload


class Bundle:
    """A loaded model with its metadata; `predict` takes files and folders."""

    def __init__(
        self,
        run_dir: Path,
        meta: BundleMeta,
        model: nn.Module,
        info: dict[str, Any],
        onnx=None,
        guard: InputGuard | None = None,
    ):
        self.run_dir = run_dir
        self.meta = meta
        self.model = model.eval()  # always loaded: Grad-CAM, calibration and the guard's features need it
        self.info = info
        self.onnx = onnx  # an OnnxPredictor when the onnx backend was chosen, else None
        self.guard = guard  # None for a model saved before cxr 0.6 (`cxr run guard RUN` fits one)
        self._told_to_reexport = False  # said once that an older model.onnx costs the guard a PyTorch pass

    @classmethod
    def load(cls, run_dir: str | Path, backend: str = "auto") -> Bundle:
        """`backend`: auto (ONNX Runtime when `cxr run export` made a current model.onnx, else PyTorch) | onnx |
        torch."""
        payload = read_bundle_file(run_dir)
        m = payload["meta"]
        meta = BundleMeta(**m)
        _check_architecture_unchanged(run_dir, meta, payload.get("cxr_version", "0"))
        model = build_model(meta)
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as e:  # tensors of another shape: a file edited by hand or saved by an unreleased cxr
            first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
            raise CxrError(
                f"{run_dir}: its weights do not fit this cxr's {meta.model!r} ({first}); it was saved by cxr "
                f"{payload.get('cxr_version', '?')}: load it with that version, or retrain"
            ) from None
        info = {k: payload[k] for k in ("cxr_version", "created", "num_parameters")}
        run = Path(run_dir)
        run = run if run.is_dir() else run.parent
        onnx = load_backend(run, backend, payload["state_dict"], meta.mean, meta.std)
        return cls(run, meta, model, info, onnx, InputGuard.from_payload(payload.get("guard")))

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnx"

    def logits(self, images_uint8: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N, S, S) uint8 -> (N, C) logits on the chosen backend: every prediction path goes through here.
        `tta`: the mean over nine small shifts, rotations and zooms of each image (cxr.inference.tta), 9x the work."""

        def backend_logits(images: np.ndarray) -> np.ndarray:
            if self.onnx is None:
                return predict_logits(self.model, images, self.meta.mean, self.meta.std)
            return self.onnx.logits(images)

        return tta_logits(backend_logits, images_uint8) if tta else backend_logits(images_uint8)

    def logits_and_guard(self, images_uint8: np.ndarray, infos=None, tta: bool = False):
        """Logits and the input guard's verdict (None without a guard). The guard reads the network's features: from
        the same ONNX Runtime call as the logits when model.onnx outputs them, else from a PyTorch forward pass (on
        the torch backend, without TTA, that pass gives the logits too)."""

        if self.guard is None:
            return self.logits(images_uint8, tta), None
        if self._onnx_has_guard_features():
            logits, features = self.onnx.logits_and_features(images_uint8)
            if tta:
                logits = self.logits(images_uint8, tta)
        else:
            taps = feature_taps(self.model, self.meta.model, self.meta.extra.get("members"))
            features, plain = features_and_logits(self.model, taps, images_uint8, self.meta.mean, self.meta.std)
            logits = plain if self.onnx is None and not tta else self.logits(images_uint8, tta)
        return logits, self.guard.assess(images_uint8, features, infos)

    def _onnx_has_guard_features(self) -> bool:
        """Whether the ONNX file outputs the features this guard was fitted on (one width per tap). A file exported
        before it did still serves, at the price of a second, PyTorch forward pass per batch: said once."""
        if self.onnx is None:
            return False
        if self.onnx.tap_dims == [t.means.shape[1] for t in self.guard.taps]:
            return True
        if not self._told_to_reexport:
            self._told_to_reexport = True
            log.warning(
                "%s does not output the input guard's features (exported by an older cxr), so the guard runs a "
                "second, PyTorch forward pass per batch; `cxr run export %s` makes it one ONNX Runtime call",
                self.onnx.path,
                self.run_dir,
            )
        return False

    def probabilities(self, images_uint8: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N, S, S) uint8 -> (N, C) probabilities, with the bundle's temperature."""

        return apply_temperature(self.logits(images_uint8, tta), self.meta.temperature)

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    def predict(self, paths, batch_size: int = 32, progress: bool = False, tta: bool = False):
        """Probabilities for every readable image under `paths` (files or folders); see `Predictions`."""

        return predict_paths(self, paths, batch_size=batch_size, progress=progress, tta=tta)
