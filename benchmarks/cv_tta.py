"""Does test-time augmentation help? Out-of-fold check on the cross-validation runs of benchmarks/cv_select.py.

Usage: python benchmarks/cv_tta.py DATASET CANDIDATE [CANDIDATE ...]  -> benchmarks/results/cv_tta_<DATASET>.json
Each fold model predicts its own validation fold as is, and as the mean over 7 views (the image, shifted 4 % up,
down, left, right, zoomed 0.93x and 1.07x); pooled accuracy, AUC and log loss of both. Test images are never read.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, ROOT, cv_scores

from cxr.data.images import load_grayscale
from cxr.data.transforms import normalise
from cxr.inference.bundle import Bundle
from cxr.inference.predict import apply_temperature

VIEWS = [(0.0, 0.0, 1.0), (0.04, 0, 1.0), (-0.04, 0, 1.0), (0, 0.04, 1.0), (0, -0.04, 1.0), (0, 0, 0.93), (0, 0, 1.07)]


def views(x: torch.Tensor) -> list[torch.Tensor]:
    """Deterministic shifted/zoomed copies of a batch, all at once (one affine grid per view, edges repeated)."""
    out = []
    for dx, dy, scale in VIEWS:
        theta = torch.tensor([[scale, 0, 2 * dx], [0, scale, 2 * dy]], dtype=torch.float32).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out.append(F.grid_sample(x, grid, padding_mode="border", align_corners=False))
    return out


def main(dataset: str, candidates: list[str]) -> None:
    out_file = RESULTS / f"cv_tta_{dataset}.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for name in candidates:
        ys, plain, tta = [], [], []
        for fold in sorted((ROOT / "runs" / "cv" / dataset / name).glob("fold*")):
            bundle = Bundle.load(fold, backend="torch")
            meta = bundle.meta
            with open(fold / "predictions_val.csv") as f:
                rows = list(csv.DictReader(f))
            x = normalise(np.stack([load_grayscale(r["path"], meta.image_size) for r in rows]), meta.mean, meta.std)
            with torch.no_grad():
                probs = [apply_temperature(bundle.model(v).numpy(), meta.temperature) for v in views(x)]
            ys += [meta.classes.index(r["label"]) for r in rows]
            plain.append(probs[0])
            tta.append(np.mean(probs, axis=0))
        y = np.array(ys)
        results[name] = {
            "n": len(y),
            "plain": cv_scores(y, np.concatenate(plain), meta.classes),
            "tta_7_views": cv_scores(y, np.concatenate(tta), meta.classes),
        }
        print(name, results[name], flush=True)
    out_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
