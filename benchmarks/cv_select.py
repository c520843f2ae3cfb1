"""K-fold cross-validation on the TRAIN split only, to choose between configs when a held-out val split is too
small to tell them apart (covid19-codecademy: 38 val images). Test images are never read.

Usage: python benchmarks/cv_select.py DATASET CANDIDATE [CANDIDATE ...] [--folds 5] [--nested]
Candidates are those of benchmarks/model_selection.py. Writes benchmarks/results/cv_<DATASET>.json with pooled
out-of-fold accuracy, macro-F1, AUC and log loss per candidate.

`--nested`, the way every decision since cxr 0.4 was made, is `cxr sweep --objective cv_accuracy` over the named
candidates (model_selection.selection_plan: one grid trial each, runs under runs/select/DATASET/): each run carves its
own validation from the other folds, as `cxr train` does on the full train split, and the held-out fold is only
scored (key "NAME nested").

Without --nested the held-out fold is also each run's validation split (early stopping, best checkpoint,
temperature), so the scores lean optimistic. That layout is kept, by hand, only to reproduce the results file's
earlier entries and the fold models cv_ensemble.py and cv_external.py read; the sweep has no such objective because
it should not be used to choose.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np
from common import RESULTS, ROOT, cv_scores
from model_selection import CANDIDATES, DATASETS, candidate_config, selection_plan
from sklearn.model_selection import StratifiedKFold

from cxr.data.manifest import load_dataset
from cxr.evaluation.evaluate import evaluate_run
from cxr.training.train import train


def write_fold_manifest(path, files, val_idx) -> None:
    val = set(val_idx.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for i, (p, y) in enumerate(zip(files.paths, files.labels)):
            w.writerow([os.path.relpath(p, path.parent), y, "val" if i in val else "train"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("candidates", nargs="+")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--nested", action="store_true", help="cxr train --cv: runs carve their own val from the rest")
    args = ap.parse_args()
    ds = load_dataset(DATASETS[args.dataset])
    files = ds.splits["train"]
    files.labels = [ds.classes[y] for y in files.labels]  # manifests carry class names
    labels = np.array([ds.classes.index(c) for c in files.labels])
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(labels, labels))
    out_file = RESULTS / f"cv_{args.dataset}.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    nested = nested_by_sweep(args.dataset, args.candidates, args.folds) if args.nested else {}
    for name in args.candidates:
        t0 = time.perf_counter()
        scores = nested[name] if args.nested else optimistic_cv(args.dataset, name, ds, files, folds)
        key = f"{name} nested" if args.nested else name
        results[key] = {
            "config": CANDIDATES[args.dataset][name],
            "folds": args.folds,
            **scores,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(key, results[key], flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(results, indent=2, default=str))


def nested_by_sweep(dataset: str, names: list[str], folds: int) -> dict[str, dict]:
    """Nested CV of each candidate as one trial of a `cv_accuracy` sweep; its figures from the trial's cv.json."""
    from cxr.evaluation.oof import CV_FILE
    from cxr.training.sweep import run_sweep

    plan = selection_plan(dataset, names, "cv_accuracy", [0])
    plan.cv_folds = folds
    run_sweep(plan)
    scores = {}
    for name in names:
        cv = json.loads((plan.out / "trials" / name / CV_FILE).read_text())
        scores[name] = {"n": cv["n"], "cv_accuracy": cv["accuracy"], "cv_macro_f1": cv["macro_avg"]["f1-score"],
                        "cv_auc": cv["roc_auc"], "cv_log_loss": cv["log_loss"]}  # fmt: skip
    return scores


def optimistic_cv(dataset: str, name: str, ds, files, folds) -> dict:
    """The held-out fold as each run's validation split: early stopping and temperature see the scored images."""
    y_all, p_all = [], []
    cv_dir = ROOT / "runs" / "cv" / dataset
    for k, (_, val_idx) in enumerate(folds):
        manifest = cv_dir / f"fold{k}.csv"
        write_fold_manifest(manifest, files, val_idx)
        cfg = candidate_config(dataset, name, manifest)
        run = cv_dir / name / f"fold{k}"
        train(cfg, run, overwrite=True)
        evaluate_run(run, "val")
        with open(run / "predictions_val.csv") as f:
            for row in csv.DictReader(f):
                y_all.append(ds.classes.index(row["label"]))
                p_all.append([float(row[f"p_{c}"]) for c in ds.classes])
    y, p = np.array(y_all), np.array(p_all)
    return {"n": int(len(y)), **cv_scores(y, p, ds.classes)}


if __name__ == "__main__":
    main()
