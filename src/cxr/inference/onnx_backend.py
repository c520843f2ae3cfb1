"""The ONNX Runtime backend of a bundle: `model.onnx` run by ONNX Runtime, checked to be exported from the weights
in model.pt (a stale file is never used silently). Export itself is cxr.inference.onnx_export."""

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
        self.weights_digest = self.session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)

    def logits(self, images_uint8: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 -> (N, C) float32 logits."""
        x = normalise(images_uint8, self.mean, self.std).numpy()
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


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
