"""ONNX export of a bundle, and an ONNX Runtime predictor: the same pixels in, the same probabilities out.

`model.onnx` holds only the network (normalised image -> logits, and the input guard's features as further outputs,
so serving reads both from one ONNX Runtime call). Preprocessing (`normalise`) and post-processing
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
from cxr.inference.guard import Tap, TappedNetwork, feature_taps, features_and_logits
from cxr.inference.onnx_backend import (  # noqa: F401 (re-exported: their home before cxr 0.9)
    BACKENDS,
    DIGEST_KEY,
    INPUT_NAME,
    ONNX_FILE,
    OPSET,
    OUTPUT_NAME,
    PARITY_TOLERANCE,
    TAP_PREFIX,
    OnnxPredictor,
    load_backend,
    weights_digest,
)
from cxr.inference.predict import apply_temperature, predict_arrays

# guard features, ONNX Runtime vs PyTorch: max abs difference over the largest feature magnitude of each tap. Both
# compute in float32; reductions in another order differ by ~1e-7 relative (smallnet at 224 px), far below what
# moves a guard score
FEATURE_TOLERANCE = 1e-4


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
    taps = feature_taps(model, bundle.meta.model, bundle.meta.extra.get("members"))
    tap_names = [f"{TAP_PREFIX}{i}" for i in range(len(taps))]
    example = torch.zeros(2, 1, size, size)  # batch 2: a batch of 1 lets the exporter specialise the batch axis
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; say so plainly instead of a deep ImportError)
    except ImportError:
        raise CxrError("ONNX export needs onnxscript: pip install onnxscript onnx") from None
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                TappedNetwork(model, taps),
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME, *tap_names],
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
            "cxr_guard_taps": f"{TAP_PREFIX}0..{len(taps) - 1}: (N, D) float32 features the input guard in model.pt "
            "scores (cxr.inference.guard.feature_taps)",
        }
    )
    target = run / ONNX_FILE
    with atomic_path(target) as tmp:
        program.save(str(tmp))
        predictor = OnnxPredictor(tmp, bundle.meta.mean, bundle.meta.std)
        diff = parity(bundle.model, predictor, size)
        if not diff <= PARITY_TOLERANCE:
            raise CxrError(f"exported model disagrees with PyTorch (max prob diff {diff:.2e}); model.onnx not written")
        feature_diff = feature_parity(bundle.model, taps, predictor, size)
        if not feature_diff <= FEATURE_TOLERANCE:
            raise CxrError(
                f"exported guard features disagree with PyTorch (max relative diff {feature_diff:.2e}); "
                "model.onnx not written"
            )
    return ExportResult(target, diff, round(time.perf_counter() - t0, 2))


def parity(model: torch.nn.Module, predictor: OnnxPredictor, size: int, n: int = 3, seed: int = 0) -> float:
    """Max abs difference of probabilities between PyTorch and ONNX Runtime on random uint8 images."""

    images = np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)
    reference = predict_arrays(model, images, predictor.mean, predictor.std)
    return float(np.abs(reference - apply_temperature(predictor.logits(images))).max())


def feature_parity(
    model: torch.nn.Module, taps: list[Tap], predictor: OnnxPredictor, size: int, seed: int = 0
) -> float:
    """Max over taps of |ONNX Runtime - PyTorch| / the largest |PyTorch| feature, on random uint8 images."""
    if not taps:
        return 0.0
    images = np.random.default_rng(seed).integers(0, 256, (3, size, size), dtype=np.uint8)
    reference, _ = features_and_logits(model, taps, images, predictor.mean, predictor.std)
    _, features = predictor.logits_and_features(images)
    if len(features) != len(reference):
        return float("inf")
    return max(
        (float(np.abs(f - r).max() / max(np.abs(r).max(), 1e-12)) for f, r in zip(features, reference)), default=0.0
    )
