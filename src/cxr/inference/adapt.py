"""Site adaptation without labels: re-estimate batch-norm statistics on a new site's images (AdaBN, Li et al. 2016).

A model trained on one hospital's films meets another scanner or acquisition batch: the convolution weights still
apply, but the activations' means and variances move, and a fixed decision threshold moves with them. One pass over
unlabeled images from the new site (no labels, no gradients) replaces every BatchNorm layer's running mean and
variance with that site's. The adapted model is written as a new run directory; the source run is never changed.
No Lightning here: adapting, like predicting, stays light.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.inference.bundle import BUNDLE_FILE, Bundle, save_bundle
from cxr.inference.predict import decoded_batches
from cxr.models.weights import batch_norm_layers
from cxr.rundir import DATA_FILES

MIN_IMAGES = 32  # fewer cannot estimate a per-channel variance that beats the training site's
COPIED_FILES = DATA_FILES  # so `cxr evaluate` and `cxr site calibrate` still find the original data


@dataclass
class AdaptResult:
    path: Path
    images: int
    skipped: list[str]
    batch_norm_layers: int


def adapt_batchnorm(
    run_dir: str | Path, images: list[str | Path], out: str | Path, batch_size: int = 32, progress: bool = False
) -> AdaptResult:
    """Write `out/model.pt`: the run's model with batch-norm statistics measured on `images` (files or folders)."""
    src, out = Path(run_dir), Path(out)
    bundle = Bundle.load(src, backend="torch")
    if out.resolve() == src.resolve() or (out / BUNDLE_FILE).exists():
        raise CxrError(f"{out} already holds a model; choose a new --out (the source run is kept as it is)")
    model, meta = bundle.model, bundle.meta
    norms = batch_norm_layers(model)
    if not norms:
        raise CxrError(f"{src}: model {meta.model!r} has no batch-norm layers, so there is nothing to adapt")

    saved_momentum = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative mean over batches: the result does not depend on the order of the images
        m.train()  # only the norms: dropout stays off
    seen, skipped = 0, []
    with torch.no_grad():
        for good, batch, bad in decoded_batches(images, meta.image_size, batch_size, progress, label="adapting"):
            skipped.extend(bad)
            if batch is not None and len(batch) > 1:  # BatchNorm1d refuses a batch of one; one image adds little
                model(normalise(batch, meta.mean, meta.std))
                seen += len(good)
    for m, momentum in zip(norms, saved_momentum):
        m.momentum = momentum
    model.eval()
    if seen < MIN_IMAGES:
        raise CxrError(
            f"adaptation needs at least {MIN_IMAGES} readable images from the new site, got {seen}; "
            "pass more files or a folder of them"
        )

    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    meta.extra = {
        **meta.extra,
        "adapted": {"source_run": str(src), "images": seen, "skipped": len(skipped), "batch_norm_layers": len(norms)},
    }
    path = save_bundle(out, model, meta)  # no input guard: its features moved with the batch-norm statistics
    return AdaptResult(path, seen, skipped, len(norms))
