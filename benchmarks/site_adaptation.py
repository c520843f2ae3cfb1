"""Does `cxr adapt` (batch-norm statistics re-measured on a new site's unlabeled images) help on another site?

Usage: python benchmarks/site_adaptation.py PAIR [PAIR ...]   -> benchmarks/results/site_adaptation.json
Each PAIR is a model trained on one dataset and labeled images from another. The images are split in two halves
(stratified, seeded); each half is predicted by the model adapted on the OTHER half's images (labels unused), so no
image informs its own prediction; the pooled figures are compared with the unadapted model on the same images.
No pair reads a test split.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, SHARED_DATA, predict_site, site_scores
from sklearn.model_selection import StratifiedKFold

from cxr.inference.adapt import adapt_batchnorm
from cxr.inference.bundle import Bundle

PAIRS = {
    # radiography's model (trained without its copies of codecademy films) on codecademy's training films
    "radiography->codecademy": (ROOT / "runs" / "bench-radiography", SHARED_DATA / "covid19-codecademy", "train"),
    # codecademy's default model (251 films from many sources) on radiography's validation films
    "codecademy->radiography": (ROOT / "runs" / "bench-codecademy", SHARED_DATA / "covid19-radiography", "val"),
}


def run_pair(name: str) -> dict:
    run, data, split = PAIRS[name]
    source, y, paths, before = predict_site(run, data, split)
    classes, paths = source.classes, np.array(paths)
    after = np.zeros_like(before)
    halves = StratifiedKFold(2, shuffle=True, random_state=0).split(paths, y)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (adapt_idx, score_idx) in enumerate(halves):
            adapted = adapt_batchnorm(run, list(paths[adapt_idx]), Path(tmp) / str(k)).path.parent
            after[score_idx] = Bundle.load(adapted, backend="torch").predict(list(paths[score_idx])).probabilities
    threshold = source.meta.threshold
    return {
        "model": str(run.relative_to(ROOT)), "images": f"{data.name}/{split}", "n": len(y),
        "before": site_scores(y, before, classes, threshold), "adapted": site_scores(y, after, classes, threshold),
    }  # fmt: skip


def main(names: list[str]) -> None:
    out_file = RESULTS / "site_adaptation.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for name in names:
        results[name] = run_pair(name)
        print(name, json.dumps(results[name], indent=1), flush=True)
        out_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or list(PAIRS))
