"""Which codecademy config holds up on another site? Each candidate's cross-validation fold models (written by
cv_select.py) are scored on covid19-radiography's validation films, which no codecademy model has seen.

Usage: python benchmarks/cv_external.py CANDIDATE [CANDIDATE ...] -> benchmarks/results/cv_external_codecademy.json
Reports the mean and the per-fold figures. No test split is read. Candidates started from radiography weights are
refused: that model chose its epochs on these very films.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from common import RESULTS, ROOT, SHARED_DATA, predict_site, site_scores
from model_selection import CANDIDATES

SITE, SITE_SPLIT = SHARED_DATA / "covid19-radiography", "val"


def score_candidate(name: str) -> dict:
    if "weights" in CANDIDATES["codecademy"][name]:
        raise SystemExit(f"{name} starts from radiography weights: {SITE.name} is not another site for it")
    folds = sorted((ROOT / "runs" / "cv" / "codecademy" / name).glob("fold*"))
    if not folds:
        raise SystemExit(f"no fold models for {name}: run `python benchmarks/cv_select.py codecademy {name} --folds 3`")
    per_fold = []
    for run in folds:
        bundle, y, _, probs = predict_site(run, SITE, SITE_SPLIT)
        per_fold.append(site_scores(y, probs, bundle.classes, bundle.meta.threshold))
    mean = {k: float(np.mean([f[k] for f in per_fold])) for k in ("accuracy", "balanced_accuracy", "roc_auc")}
    return {"site": f"{SITE.name}/{SITE_SPLIT}", "folds": len(folds), **{f"mean_{k}": v for k, v in mean.items()},
            "per_fold": per_fold}  # fmt: skip


def main(names: list[str]) -> None:
    out_file = RESULTS / "cv_external_codecademy.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for name in names:
        results[name] = score_candidate(name)
        print(name, {k: round(v, 3) for k, v in results[name].items() if k.startswith("mean_")}, flush=True)
        out_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
