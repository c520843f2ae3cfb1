"""How wide a prior the temperature fit needs, judged out of fold on covid19-codecademy's train split (test unread).

Temperature scaling fits one number on the validation split. With a few dozen validation images and none or one of
them wrong, the likelihood keeps rising as T -> 0, so the fit runs to its bound (T = 0.05 in the shipped codecademy
run: probabilities sharpened 20x). A normal prior on log T (sigma below; inf = no prior) stops that. For each fold run
of the nested cross-validation (`cv_select.py codecademy CANDIDATE --nested`), T is fitted on that run's own
validation images and scored on the fold it held out. Pooled over folds and seeds: log loss and ECE per sigma.

Rule, set before running it: the default prior is the sigma with the lowest pooled out-of-fold log loss over the six
fold runs of the default config (nested CV, seeds 0 and 1); if no prior (inf) is lowest, nothing changes.

Usage: python benchmarks/temperature_prior.py RUN_DIR [RUN_DIR ...]   (fold run folders holding splits.csv)
Writes benchmarks/results/temperature_prior.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from common import RESULTS, machine

from cxr.data.splits import read_splits_csv
from cxr.evaluation.calibration import fit_temperature
from cxr.evaluation.metrics import expected_calibration_error
from cxr.inference.bundle import Bundle
from cxr.inference.predict import apply_temperature

SIGMAS = [float("inf"), 2.0, 1.0, 0.5, 0.25, 0.0]  # 0: no temperature (T = 1)


def logits_and_labels(bundle: Bundle, files) -> tuple[np.ndarray, np.ndarray]:
    preds = bundle.predict(files.paths)
    label_of = {str(p): y for p, y in zip(files.paths, files.labels)}
    return preds.logits, np.array([label_of[str(p)] for p in preds.paths])


def main(runs: list[Path]) -> None:
    scored = {s: ([], []) for s in SIGMAS}  # sigma -> (probs, labels) pooled over runs
    temperatures = {str(s): [] for s in SIGMAS}
    for run in runs:
        bundle = Bundle.load(run, backend="torch")
        splits = read_splits_csv(run / "splits.csv", bundle.classes)
        z_val, y_val = logits_and_labels(bundle, splits["val"])
        z_out, y_out = logits_and_labels(bundle, splits["test"])
        for s in SIGMAS:
            t = 1.0 if s == 0 else fit_temperature(z_val, y_val, prior_sigma=None if np.isinf(s) else s)
            temperatures[str(s)].append(round(t, 3))
            scored[s][0].append(apply_temperature(z_out, t))
            scored[s][1].append(y_out)
    results = {"runs": [str(r) for r in runs], "machine": machine(), "by_sigma": {}}
    for s, (probs, labels) in scored.items():
        p, y = np.concatenate(probs).astype(np.float64), np.concatenate(labels)
        nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
        ece = float(np.asarray(expected_calibration_error(p, y, 15)).ravel()[0])
        results["by_sigma"][str(s)] = {"log_loss": round(nll, 4), "ece": round(ece, 4),
                                       "n": int(len(y)), "temperatures": temperatures[str(s)]}  # fmt: skip
        print(s, results["by_sigma"][str(s)], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "temperature_prior.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
