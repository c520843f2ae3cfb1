"""ONNX export of a bundle, and an ONNX Runtime predictor: the same pixels in, the same probabilities out.

`model.onnx` holds only the network (normalised image -> logits). Preprocessing (`normalise`) and post-processing
(softmax, temperature, threshold) stay in Python and are shared with the PyTorch path, so calibrating a run later
(which rewrites model.pt's metadata, not its weights) never makes the ONNX file wrong. The file records a digest of
the weights it was exported from; a file whose digest no longer matches model.pt is stale and is never used silently.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxr.atomic import atomic_path
from cxr.errors import CxrError
from cxr.inference.bundle import Bundle
from cxr.inference.onnx_backend import (  # noqa: F401 (re-exported: their home before cxr 0.9)
    BACKENDS,
    DIGEST_KEY,
    INPUT_NAME,
    ONNX_FILE,
    OPSET,
    OUTPUT_NAME,
    PARITY_TOLERANCE,
    OnnxPredictor,
    load_backend,
    weights_digest,
)
from cxr.inference.predict import apply_temperature, predict_arrays


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
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                opset_version=opset,
                verbose=False,
            )
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
