"""The ONNX Runtime backend of a bundle: `model.onnx` run by ONNX Runtime, checked to be exported from the weights
in model.pt (a stale file is never used silently). Export itself is cxr.inference.onnx_export.

Files exported by this cxr also output the input guard's features (`guard_tap_0`, `guard_tap_1`, ...), so serving
scores the guard from the same ONNX Runtime call; older files have the logits only and still work (the guard then
reads a second, PyTorch forward pass, see Bundle.logits_and_guard)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.rundir import MODEL, ONNX

ONNX_FILE = ONNX  # cxr.rundir.ONNX, by its older name
BACKENDS = ("auto", "onnx", "torch")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
TAP_PREFIX = "guard_tap_"  # + the tap's index in cxr.inference.guard.feature_taps: (N, D) float32 features
DIGEST_KEY = "cxr_weights_sha256"
PARITY_TOLERANCE = 1e-4  # max abs difference of probabilities accepted between ONNX Runtime and PyTorch
OPSET = 18
log = logging.getLogger(__name__)


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over parameter names, dtypes, shapes and values: identifies the weights, not the file's metadata."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class OnnxPredictor:
    """An ONNX Runtime session over `model.onnx`, fed by the same `normalise` as the PyTorch path."""

    def __init__(self, path: Path, mean: float, std: float, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CxrError("the onnx backend needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        # Idle pool threads would spin: on a CPU shared with other jobs that made batch-1 calls 2x slower (measured
        # by `python -m benchmarks speed predict`); without spinning the cost on an idle CPU is small.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for a corrupt file
            raise CxrError(f"{path}: not a loadable ONNX model ({type(e).__name__}); re-run `cxr run export`") from None
        self.path = Path(path)
        self.mean, self.std = mean, std
        # `normalise` of every uint8 value: normalising is per pixel, so a lookup gives the same float32 bits without
        # torch's thread pool, whose threads wait for a core on a CPU shared with the server's other threads (that made
        # three 50k-element ops take up to 5 ms each in one served request)
        self._pixel_values = normalise(np.arange(256, dtype=np.uint8)[None], mean, std).numpy().reshape(256)
        self.weights_digest = self.session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)
        taps = {o.name: o for o in self.session.get_outputs() if o.name.startswith(TAP_PREFIX)}
        self.tap_names = sorted(taps, key=lambda name: int(name.removeprefix(TAP_PREFIX)))
        # feature width per tap ([] for a file exported before the taps): must match the guard's before it is used
        self.tap_dims = [taps[name].shape[-1] for name in self.tap_names]

    def network_input(self, images_uint8: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 -> (N, 1, S, S) float32, exactly as `normalise` makes it."""
        images = np.asarray(images_uint8)
        if images.dtype != np.uint8:
            return normalise(images, self.mean, self.std).numpy()
        return self._pixel_values[images][:, None]

    def logits(self, images_uint8: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 -> (N, C) float32 logits."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: self.network_input(images_uint8)})[0]

    def logits_and_features(self, images_uint8: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(N, S, S) uint8 -> ((N, C) logits, one (N, D_t) float64 array per guard tap) from one ONNX Runtime call;
        float64 as `features_and_logits` gives them (the guard's distances are computed in float64)."""
        if not self.tap_names:
            raise CxrError(f"{self.path} has no guard features (exported by an older cxr); re-run `cxr run export`")
        x = self.network_input(images_uint8)
        logits, *features = self.session.run([OUTPUT_NAME, *self.tap_names], {INPUT_NAME: x})
        return logits, [f.astype(np.float64) for f in features]


def load_backend(run_dir: Path, requested: str, state_dict: Mapping[str, torch.Tensor], mean: float, std: float):
    """The one place a backend is chosen: an `OnnxPredictor`, or None for PyTorch.

    `auto` takes ONNX when a current `model.onnx` exists (it is several times faster on CPU, see
    benchmarks/results/predict_backends.json) and PyTorch otherwise; it never exports on its own, since export is
    slow and writes into the run. `onnx` without a current file is an error that says how to make one.
    """
    if requested not in BACKENDS:
        raise CxrError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(run_dir) / ONNX_FILE
    if requested == "torch" or (requested == "auto" and not path.is_file()):
        return None
    if not path.is_file():
        raise CxrError(f"{run_dir} has no {ONNX_FILE}; make it with `cxr run export {run_dir} --format onnx`")
    try:
        predictor = OnnxPredictor(path, mean, std)
    except CxrError:
        if requested == "onnx":
            raise
        log.warning("%s could not be loaded; using the torch backend", path)
        return None
    if predictor.weights_digest != weights_digest(state_dict):
        message = f"{path} was exported from other weights than {Path(run_dir) / MODEL}"
        if requested == "onnx":
            raise CxrError(f"{message}; re-export with `cxr run export {run_dir} --format onnx`")
        log.warning("%s; using the torch backend (re-export with `cxr run export`)", message)
        return None
    return predictor
