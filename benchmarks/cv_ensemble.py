"""Cross-validated score of an ensemble, from the out-of-fold predictions cv_select.py already wrote (no training).

Usage: python benchmarks/cv_ensemble.py DATASET CANDIDATE CANDIDATE [...]
Averages, per image, the validation probabilities of the candidates' fold runs (runs/cv/DATASET/<candidate>/fold*/),
the same mean-probability rule as `cxr train --ensemble N`, and adds the result to benchmarks/results/cv_<DATASET>.json.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
from common import RESULTS, ROOT, cv_scores


def out_of_fold(dataset: str, candidate: str) -> tuple[list[str], dict[str, tuple[int, np.ndarray]]]:
    """Classes and, per image path, (label index, probabilities) over every fold of one candidate."""
    rows: dict[str, tuple[int, np.ndarray]] = {}
    classes: list[str] = []
    folds = sorted((ROOT / "runs" / "cv" / dataset / candidate).glob("fold*/predictions_val.csv"))
    if not folds:
        raise SystemExit(f"no fold predictions for {candidate}; run `python benchmarks/cv_select.py {dataset} {candidate}`")
    for path in folds:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            classes = [c[2:] for c in reader.fieldnames if c.startswith("p_")]
            for row in reader:
                rows[row["path"]] = (classes.index(row["label"]), np.array([float(row[f"p_{c}"]) for c in classes]))
    return classes, rows


def main(dataset: str, candidates: list[str]) -> None:
    per_candidate = [out_of_fold(dataset, c) for c in candidates]
    classes, first = per_candidate[0]
    paths = sorted(first)
    if any(set(rows) != set(paths) for _, rows in per_candidate):
        raise SystemExit("the candidates were cross-validated on different images")
    y = np.array([first[p][0] for p in paths])
    probs = np.mean([[rows[p][1] for p in paths] for _, rows in per_candidate], axis=0)
    name = "ensemble(" + " + ".join(candidates) + ")"
    out_file = RESULTS / f"cv_{dataset}.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    results[name] = {
        "members": candidates,
        "n": int(len(y)),
        **cv_scores(y, probs, classes),
    }
    print(name, results[name])
    out_file.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
