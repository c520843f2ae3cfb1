"""Cross-validation of a study's candidates on the TRAIN split, and what is read from the fold runs afterwards (no
test split is ever read):

- `cv`: the optimistic layout, by hand: the held-out fold is also each run's validation split (early stopping, best
  checkpoint, temperature), so the scores lean optimistic. Kept only to reproduce the earlier entries of
  results/cv_<dataset>.json and the fold models (runs/cv/<dataset>/<candidate>/fold*/) that `cv-ensemble` and
  `cv-external` read; every decision since cxr 0.4 was made nested (`select` with objective cv_accuracy), which the
  sweep runs, and the sweep has no optimistic objective because it should not be used to choose.
- `cv-ensemble`: an ensemble's pooled score from those folds' predictions (the mean-probability rule of `--ensemble`).
- `cv-external`: the fold models scored on another site's films (covid19-radiography's validation split, which no
  codecademy model has seen); candidates started from radiography weights are refused (that model chose its epochs
  on these very films).
- `tta-cv`: test-time augmentation (cxr.inference.tta) judged on the out-of-fold films of finished nested
  cross-validations: each fold's model scores its held-out fold with and without TTA. Rule, written before the first
  run: TTA is adopted (the default at prediction) only if, over the default's two nested seeds, the mean pooled count
  of right answers is >= 2 films (of 251) above the plain one and the mean log loss (the bundles' own temperature) is
  no higher. One set of views (TTA_VIEWS), one way of combining them (mean logits).
- `temperature-prior`: how wide a prior the temperature fit needs. With a few dozen validation films and none or one
  wrong, the likelihood keeps rising as T -> 0 (T = 0.05 in the shipped codecademy run: probabilities sharpened 20x);
  a normal prior on log T stops that. For each nested fold run, T is fitted on its own validation films and scored on
  the fold it held out, pooled over folds and seeds. Rule, set before running it: the default prior is the sigma with
  the lowest pooled out-of-fold log loss over the six fold runs of the default (nested, seeds 0 and 1); if no prior
  (inf) is lowest, nothing changes.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    ROOT,
    candidate_changes,
    candidate_config,
    cv_scores,
    dataset_path,
    machine,
    predict_site,
    read_results,
    save_results,
    site_scores,
    study,
)

CV_EXTERNAL_SITE = ("radiography", "val")  # the other site of codecademy's fold models: dataset, split
TEMPERATURE_SIGMAS = [float("inf"), 2.0, 1.0, 0.5, 0.25, 0.0]  # 0: no temperature (T = 1)


def _write_fold_manifest(path: Path, files, val_idx) -> None:
    val = set(val_idx.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for i, (p, y) in enumerate(zip(files.paths, files.labels)):
            w.writerow([os.path.relpath(p, path.parent), y, "val" if i in val else "train"])


def optimistic_cv(name: str, candidates: list[str], folds: int, command: str) -> None:
    """Each candidate of study `name` over `folds` stratified folds of its dataset's train split (fold k is run k's
    validation), pooled out-of-fold figures -> results/cv_<dataset>.json under the candidate's name."""
    from sklearn.model_selection import StratifiedKFold

    from cxr.data.manifest import load_dataset
    from cxr.evaluation.evaluate import evaluate_run
    from cxr.training.train import train

    ds_name = study(name)["dataset"]
    ds = load_dataset(dataset_path(ds_name))
    files = ds.splits["train"]
    files.labels = [ds.classes[y] for y in files.labels]  # manifests carry class names
    labels = np.array([ds.classes.index(c) for c in files.labels])
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(labels, labels))
    cv_dir = ROOT / "runs" / "cv" / ds_name
    for candidate in candidates:
        t0 = time.perf_counter()
        y_all, p_all = [], []
        for k, (_, val_idx) in enumerate(splits):
            manifest = cv_dir / f"fold{k}.csv"
            _write_fold_manifest(manifest, files, val_idx)
            run = cv_dir / candidate / f"fold{k}"
            train(candidate_config(name, candidate, data=manifest), run, overwrite=True)
            evaluate_run(run, "val")
            with open(run / "predictions_val.csv") as f:
                for row in csv.DictReader(f):
                    y_all.append(ds.classes.index(row["label"]))
                    p_all.append([float(row[f"p_{c}"]) for c in ds.classes])
        y, p = np.array(y_all), np.array(p_all)
        results = read_results(f"cv_{ds_name}")
        results[candidate] = {
            "config": candidate_changes(name, candidate),
            "folds": folds,
            "n": int(len(y)),
            **cv_scores(y, p, ds.classes),
            "seconds": round(time.perf_counter() - t0, 1),
            "command": command,
        }
        print(candidate, results[candidate], flush=True)
        save_results(f"cv_{ds_name}", results)


def _out_of_fold(dataset: str, candidate: str) -> tuple[list[str], dict[str, tuple[int, np.ndarray]]]:
    """Classes and, per film path, (label index, probabilities) over every fold of one candidate."""
    rows: dict[str, tuple[int, np.ndarray]] = {}
    classes: list[str] = []
    folds = sorted((ROOT / "runs" / "cv" / dataset / candidate).glob("fold*/predictions_val.csv"))
    if not folds:
        raise SystemExit(f"no fold predictions for {candidate}; run `python -m benchmarks cv STUDY {candidate}`")
    for path in folds:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            classes = [c[2:] for c in reader.fieldnames if c.startswith("p_")]
            for row in reader:
                rows[row["path"]] = (classes.index(row["label"]), np.array([float(row[f"p_{c}"]) for c in classes]))
    return classes, rows


def cv_ensemble(dataset: str, candidates: list[str]) -> None:
    """Averages, per film, the validation probabilities of the candidates' optimistic fold runs, the same
    mean-probability rule as `cxr train --ensemble N`, and adds the result to results/cv_<dataset>.json."""
    per_candidate = [_out_of_fold(dataset, c) for c in candidates]
    classes, first = per_candidate[0]
    paths = sorted(first)
    if any(set(rows) != set(paths) for _, rows in per_candidate):
        raise SystemExit("the candidates were cross-validated on different films")
    y = np.array([first[p][0] for p in paths])
    probs = np.mean([[rows[p][1] for p in paths] for _, rows in per_candidate], axis=0)
    name = "ensemble(" + " + ".join(candidates) + ")"
    results = read_results(f"cv_{dataset}")
    results[name] = {"members": candidates, "n": int(len(y)), **cv_scores(y, probs, classes)}
    print(name, results[name])
    save_results(f"cv_{dataset}", results)


def cv_external(name: str, candidates: list[str]) -> None:
    """Each candidate's optimistic fold models on the other site -> results/cv_external_<dataset>.json: the mean and
    the per-fold figures."""
    dataset = study(name)["dataset"]
    site, split = CV_EXTERNAL_SITE
    site_path = dataset_path(site)
    results = read_results(f"cv_external_{dataset}")
    for candidate in candidates:
        changes = candidate_changes(name, candidate)
        if changes.get("weights") or str(changes.get("pretrained", "")).startswith(site):
            raise SystemExit(f"{candidate} starts from {site} weights: {site_path.name} is not another site for it")
        folds = sorted((ROOT / "runs" / "cv" / dataset / candidate).glob("fold*"))
        if not folds:
            raise SystemExit(
                f"no fold models for {candidate}: run `python -m benchmarks cv {name} {candidate} --folds 3`"
            )
        per_fold = []
        for run in folds:
            bundle, y, _, probs = predict_site(run, site_path, split)
            per_fold.append(site_scores(y, probs, bundle.classes, bundle.meta.threshold))
        mean = {k: float(np.mean([f[k] for f in per_fold])) for k in ("accuracy", "balanced_accuracy", "roc_auc")}
        results[candidate] = {
            "site": f"{site_path.name}/{split}",
            "folds": len(folds),
            **{f"mean_{k}": v for k, v in mean.items()},
            "per_fold": per_fold,
        }
        print(candidate, {k: round(v, 3) for k, v in mean.items()}, flush=True)
        save_results(f"cv_external_{dataset}", results)


def _tta_score(cv_dir: Path) -> dict:
    from cxr.data.images import load_grayscale
    from cxr.evaluation.oof import read_oof
    from cxr.inference.bundle import Bundle

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
    # the plain scores recomputed here must be the cross-validation's own: same models, same films
    assert np.allclose(plain, stored, atol=1e-4), "plain predictions differ from predictions_oof.csv"
    out = {}
    for name, p in (("plain", plain), ("tta", tta)):
        out[name] = {"n_right": int((p.argmax(1) == y).sum()), **cv_scores(y, p, classes)}
    out["changed_decisions"] = int((plain.argmax(1) != tta.argmax(1)).sum())
    return {"n": int(len(y)), **out}


def tta_cv(cv_dirs: list[Path]) -> None:
    """Finished nested cross-validations (`cxr train --cv` folders) with and without TTA -> results/tta_cv.json."""
    from cxr.inference.tta import TTA_VIEWS

    results = read_results("tta_cv")
    results["views"] = [list(v) for v in TTA_VIEWS]
    results["machine"] = machine()
    for d in cv_dirs:
        results[d.name] = _tta_score(d)
        print(d.name, json.dumps(results[d.name]), flush=True)
    save_results("tta_cv", results)


def _logits_and_labels(bundle, files) -> tuple[np.ndarray, np.ndarray]:
    preds = bundle.predict(files.paths)
    label_of = {str(p): y for p, y in zip(files.paths, files.labels)}
    return preds.logits, np.array([label_of[str(p)] for p in preds.paths])


def temperature_prior(runs: list[Path]) -> None:
    """Fold run folders (holding splits.csv) -> results/temperature_prior.json: log loss and ECE per sigma."""
    from cxr.data.splits import read_splits_csv
    from cxr.evaluation.calibration import fit_temperature
    from cxr.evaluation.metrics import expected_calibration_error
    from cxr.inference.bundle import Bundle
    from cxr.inference.predict import apply_temperature

    scored = {s: ([], []) for s in TEMPERATURE_SIGMAS}  # sigma -> (probs, labels) pooled over runs
    temperatures = {str(s): [] for s in TEMPERATURE_SIGMAS}
    for run in runs:
        bundle = Bundle.load(run, backend="torch")
        splits = read_splits_csv(run / "splits.csv", bundle.classes)
        z_val, y_val = _logits_and_labels(bundle, splits["val"])
        z_out, y_out = _logits_and_labels(bundle, splits["test"])
        for s in TEMPERATURE_SIGMAS:
            t = 1.0 if s == 0 else fit_temperature(z_val, y_val, prior_sigma=None if np.isinf(s) else s)
            temperatures[str(s)].append(round(t, 3))
            scored[s][0].append(apply_temperature(z_out, t))
            scored[s][1].append(y_out)
    results = {"runs": [str(r) for r in runs], "machine": machine(), "by_sigma": {}}
    for s, (probs, labels) in scored.items():
        p, y = np.concatenate(probs).astype(np.float64), np.concatenate(labels)
        nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
        ece = float(np.asarray(expected_calibration_error(p, y, 15)).ravel()[0])
        results["by_sigma"][str(s)] = {
            "log_loss": round(nll, 4),
            "ece": round(ece, 4),
            "n": int(len(y)),
            "temperatures": temperatures[str(s)],
        }
        print(s, results["by_sigma"][str(s)], flush=True)
    save_results("temperature_prior", results)
