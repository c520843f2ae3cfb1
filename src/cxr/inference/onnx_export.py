"""ONNX export of a bundle, and an ONNX Runtime predictor: the same pixels in, the same probabilities out.

`model.onnx` holds only the network (normalised image -> logits). Preprocessing (`normalise`) and post-processing
(softmax, temperature, threshold) stay in Python and are shared with the PyTorch path, so calibrating a run later
(which rewrites model.pt's metadata, not its weights) never makes the ONNX file wrong. The file records a digest of
the weights it was exported from; a file whose digest no longer matches model.pt is stale and is never used silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from cxr.atomic import atomic_path
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.rundir import MODEL, ONNX
from cxr.inference.bundle import Bundle
from cxr.inference.predict import apply_temperature, predict_arrays

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


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx logs every optional op it skips (torchvision's, absent here): noise for a user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float  # probabilities, ONNX Runtime vs PyTorch, on a random check batch
    seconds: float


def export_onnx(run_dir: str | Path, opset: int = OPSET) -> ExportResult:
    """Write `model.onnx` next to model.pt (dynamic batch, fixed image size), then check it against PyTorch.

    The file is written to a temporary name and renamed only after the check passes, so a failed or interrupted
    export never leaves a wrong model.onnx behind.
    """
    import time


    t0 = time.perf_counter()
    bundle = Bundle.load(run_dir, backend="torch")
    run = bundle.run_dir
    size, model = bundle.meta.image_size, bundle.model.eval()
    example = torch.zeros(2, 1, size, size)  # batch 2: a batch of 1 lets the exporter specialise the batch axis
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; say so plainly instead of a deep ImportError)
    except ImportError:
        raise CxrError("ONNX export needs onnxscript: pip install onnxscript onnx") from None
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), dynamo=True, opset_version=opset, verbose=False,
            )  # fmt: skip
    except Exception as e:  # the exporter raises many types; the user needs the model name and the reason
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CxrError(f"ONNX export of {bundle.meta.model} failed: {type(e).__name__}: {first[:200]}") from None
    state = bundle.model.state_dict()
    program.model.metadata_props.update(
        {
            DIGEST_KEY: weights_digest(state),
            "cxr_model": bundle.meta.model,
            "cxr_classes": ",".join(bundle.meta.classes),
            "cxr_image_size": str(size),
            "cxr_mean": repr(bundle.meta.mean),
            "cxr_std": repr(bundle.meta.std),
            "cxr_input": "(N, 1, S, S) float32: uint8 pixels / 255, minus cxr_mean, divided by cxr_std",
            "cxr_output": "(N, C) logits; probabilities = softmax(logits / temperature) as in model.pt's metadata",
        }
    )
    target = run / ONNX_FILE
    with atomic_path(target) as tmp:
        program.save(str(tmp))
        diff = parity(bundle.model, OnnxPredictor(tmp, bundle.meta.mean, bundle.meta.std), size)
        if not diff <= PARITY_TOLERANCE:
            raise CxrError(f"exported model disagrees with PyTorch (max prob diff {diff:.2e}); model.onnx not written")
    return ExportResult(target, diff, round(time.perf_counter() - t0, 2))


def parity(model: torch.nn.Module, predictor: OnnxPredictor, size: int, n: int = 3, seed: int = 0) -> float:
    """Max abs difference of probabilities between PyTorch and ONNX Runtime on random uint8 images."""

    images = np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)
    reference = predict_arrays(model, images, predictor.mean, predictor.std)
    return float(np.abs(reference - apply_temperature(predictor.logits(images))).max())
