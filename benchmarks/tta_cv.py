"""Does test-time augmentation (cxr.inference.tta) help? Judged on the out-of-fold images of finished nested
cross-validations (`cv_select.py ... --nested`): each fold's model scores its held-out fold with and without TTA.
No training; test images are never read.

Usage: python benchmarks/tta_cv.py CV_DIR [CV_DIR ...]  -> benchmarks/results/tta_cv.json

Rule, written before the first run: TTA is adopted (made the default at prediction) only if, over the default's two
nested seeds (runs/cv/codecademy/nested/smallnet-224-balsample-lowres[-seed1]), the mean pooled out-of-fold count of
right answers is >= 2 images (of 251) above the plain one, and the mean log loss (the bundles' own temperature) is no
higher. One set of views (TTA_VIEWS) and one way of combining them (mean logits) are tried, nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from common import RESULTS, cv_scores, machine

from cxr.data.images import load_grayscale
from cxr.evaluation.oof import read_oof
from cxr.inference.bundle import Bundle
from cxr.inference.tta import TTA_VIEWS


def score(cv_dir: Path) -> dict:
    classes, rows = read_oof(cv_dir)
    y_all, plain_all, tta_all, stored_all = [], [], [], []
    for fold in sorted({f for _, _, f in rows.values()}):
        mine = [(path, y, p) for path, (y, p, f) in rows.items() if f == fold]
        bundle = Bundle.load(cv_dir / "folds" / fold, backend="torch")
        assert bundle.classes == classes
        images = np.stack([load_grayscale(Path(path), bundle.meta.image_size) for path, _, _ in mine])
        plain_all.append(bundle.probabilities(images))  # what `cxr predict` gives, without and with --tta
        tta_all.append(bundle.probabilities(images, tta=True))
        stored_all.append(np.stack([p for _, _, p in mine]))
        y_all += [y for _, y, _ in mine]
    y = np.array(y_all)
    plain, tta, stored = np.concatenate(plain_all), np.concatenate(tta_all), np.concatenate(stored_all)
    # the plain scores recomputed here must be the cross-validation's own: same models, same images
    assert np.allclose(plain, stored, atol=1e-4), "plain predictions differ from predictions_oof.csv"
    out = {}
    for name, p in (("plain", plain), ("tta", tta)):
        out[name] = {"n_right": int((p.argmax(1) == y).sum()), **cv_scores(y, p, classes)}
    out["changed_decisions"] = int((plain.argmax(1) != tta.argmax(1)).sum())
    return {"n": int(len(y)), **out}


def main(cv_dirs: list[str]) -> None:
    out_file = RESULTS / "tta_cv.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    results["views"] = [list(v) for v in TTA_VIEWS]
    results["machine"] = machine()
    for d in cv_dirs:
        results[Path(d).name] = score(Path(d))
        print(Path(d).name, json.dumps(results[Path(d).name]), flush=True)
    out_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
