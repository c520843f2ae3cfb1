"""Site-calibrated figures beside zero-shot ones: a model meets a site's labelled films, is calibrated (temperature
and, binary, the Youden threshold) on a patient-grouped 30 % of them, optionally AdaBN-adapted on the same 30 %, and
is scored on the other 70 %; over several seeds of the cut, plus a learning curve over the number of calibration films.
results/site_calibration.json, one entry per CASE: kermany | pneumoniamnist (Kermany's official test split, 224 px /
28 px) | codecademy->radiography (the codecademy model on covid19-radiography's test split minus the copies of
codecademy films, `cxr data dedup`).

The cut is `cxr data split SITE --calibration 0.3` (cxr.data.splits.resplit_dataset). Seed 0 goes through the
commands' own path (`calibrate_on_site`, then `evaluate_run --split test`, which refuses calibration films); the
other seeds and the learning curve refit the same function (`calibrate_on_validation`) on logits predicted once,
and seed 0 checks that both paths give the same figures.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from benchmarks.common import dataset_path, model_identity, read_results, write_result
from cxr.config import KERMANY_PATIENT_PATTERN
from cxr.data.manifest import write_manifest
from cxr.data.splits import resplit_dataset
from cxr.evaluation.calibration import calibrate_on_validation
from cxr.evaluation.evaluate import evaluate_run, split_files
from cxr.evaluation.metrics import compute_metrics, expected_calibration_error
from cxr.evaluation.site import calibrate_on_site
from cxr.inference.bundle import Bundle
from cxr.inference.predict import apply_temperature

FRACTION = 0.3
CURVE = (25, 50, 100, 200)
BOOTSTRAP = 1000
NOTEBOOK = {  # the pneumonia notebook cxr grew from: its own model, chosen on 187 test films, scored on the other 437
    "protocol": "site-calibrated (30 % of Kermany's test split chosen on, 70 % scored); another model, one cut",
    "accuracy": 0.93,
    "sensitivity": 0.97,
    "specificity": 0.87,
}


def site_of(case: str, dedup_csv: Path | None) -> tuple[Path, str, str]:
    """(labelled site films, patient-id pattern ('' = cut by film), what they are)."""
    if case == "kermany":
        return dataset_path("kermany") / "test", KERMANY_PATIENT_PATTERN, "Kermany test split (624)"
    if case == "pneumoniamnist":
        from cxr.data.cache import default_cache_dir
        from cxr.data.medmnist import npz_to_class_folders

        root = npz_to_class_folders(dataset_path("pneumoniamnist"), default_cache_dir())
        return root / "test", "", "PneumoniaMNIST test split (624; no patient ids: cut by film)"
    if case == "codecademy->radiography":
        if dedup_csv is None:
            raise SystemExit(
                "codecademy->radiography needs --dedup CSV from `cxr data dedup covid19-radiography "
                "--against covid19-codecademy --patient-pattern ''`"
            )
        return dedup_csv, "", "covid19-radiography test split minus copies of codecademy films (no patient ids)"
    raise SystemExit(f"unknown case {case!r}")


def scores(y: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float | None) -> dict:
    """Accuracy, balanced accuracy, AUC, recall per class (binary: sensitivity/specificity), log loss, ECE; 95 %
    bootstrap intervals."""
    m = compute_metrics(y, probs, classes, threshold=threshold, n_bootstrap=BOOTSTRAP, seed=0)
    keys = ["accuracy", "balanced_accuracy", "roc_auc"] + (["sensitivity", "specificity"] if len(classes) == 2 else [])
    out = {"n": int(len(y)), **{k: m[k] for k in keys}, "ci95": {k: m["ci"][k] for k in keys if k in m["ci"]}}
    out["recall"] = {c: m["per_class"][c]["recall"] for c in classes}
    out["log_loss"] = float(log_loss(y, probs, labels=list(range(len(classes)))))
    out["ece"] = float(expected_calibration_error(probs, y, 15)[0])
    return out


def fit_on(logits: np.ndarray, y: np.ndarray, classes: list[str], rule: str | None):
    cal = calibrate_on_validation(logits, y, classes, rule)
    return cal.temperature, cal.threshold


def predict(run: Path, paths: list[Path]):
    preds = Bundle.load(run, backend="torch").predict(paths, batch_size=64)
    assert len(preds.paths) == len(paths), preds.errors  # every site film readable: index arrays stay aligned
    return preds.logits


def cut(site: Path, pattern: str, seed: int, manifest: Path):
    result = resplit_dataset(site, 0, 0, seed, by_patient=bool(pattern), pattern=pattern, calibration=FRACTION)
    write_manifest(manifest, result.splits, result.classes, result.patient_ids)
    return manifest


def site_films(site: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every film of a site set (flat `<class>/` folders or a manifest), labels in the model's class order."""
    from cxr.data.folders import scan_flat_class_folders
    from cxr.data.manifest import load_dataset

    ds = load_dataset(site, require_train=False) if site.suffix == ".csv" else scan_flat_class_folders(site)
    order = [c.casefold() for c in classes]
    paths = [Path(p).resolve() for files in ds.splits.values() for p in files.paths]
    y = [order.index(ds.classes[k].casefold()) for files in ds.splits.values() for k in files.labels]
    return paths, np.array(y)


def run_case(
    case: str, run: Path, seeds: list[int], adapt: bool, dedup_csv: Path | None, config_of: dict | None = None
) -> dict:
    site, pattern, what = site_of(case, dedup_csv)
    source = Bundle.load(run, backend="torch")
    classes = source.classes
    rule = "youden" if len(classes) == 2 else None
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = _test_only(site, tmp) if site.suffix == ".csv" else site
        paths, y_all = site_films(site, classes)
        index = {p: i for i, p in enumerate(paths)}
        logits = predict(run, paths)
        zero_all = scores(y_all, apply_temperature(logits, source.meta.temperature), classes, source.meta.threshold)
        result = {
            "run": str(run),
            **model_identity(run, config_of),
            "site": what,
            "n": len(paths),
            "rule": rule or "temperature only (multi-class)",
            "zero_shot_all": zero_all,
            "seeds": {},
            "curve": {},
        }
        for seed in seeds:
            manifest = cut(site, pattern, seed, tmp / f"cut{seed}.csv")
            files = {s: split_files(run, s, classes, manifest) for s in ("calibration", "test")}
            cal_ix, test_ix = (np.array([index[Path(p).resolve()] for p in files[s].paths]) for s in files)
            y_cal, y_test = y_all[cal_ix], y_all[test_ix]
            t, thr = fit_on(logits[cal_ix], y_cal, classes, rule)
            row = {
                "n_calibration": len(cal_ix),
                "n_test": len(test_ix),
                "temperature": t,
                "threshold": thr,
                "zero_shot": scores(
                    y_test, apply_temperature(logits[test_ix], source.meta.temperature), classes, source.meta.threshold
                ),
                "calibrated": scores(y_test, apply_temperature(logits[test_ix], t), classes, thr),
            }
            if seed == seeds[0]:  # the commands' own path: same figures, and the calibration films are refused
                new = calibrate_on_site(run, manifest, tmp / f"new{seed}", operating_point=rule or "none")
                m = evaluate_run(new.path.parent, "test", data=manifest, n_bootstrap=0)
                assert abs(m["accuracy"] - row["calibrated"]["accuracy"]) < 1e-9, (m["accuracy"], row["calibrated"])
                row["checked_against_commands"] = True
            if adapt:  # AdaBN on the calibration films (labels unused), then temperature and threshold on them
                new = calibrate_on_site(
                    run,
                    manifest,
                    tmp / f"adapted{seed}",
                    adapt=list(files["calibration"].paths),
                    operating_point=rule or "none",
                )
                adapted = Bundle.load(new.path.parent, backend="torch")
                test_logits = predict(new.path.parent, [paths[i] for i in test_ix])
                row["adapted_calibrated"] = scores(
                    y_test, apply_temperature(test_logits, adapted.meta.temperature), classes, adapted.meta.threshold
                )
            result["seeds"][str(seed)] = row
            for n in CURVE:  # n films drawn (stratified) from this seed's calibration part, scored on its test part
                if n >= len(cal_ix):
                    continue
                sub, _ = train_test_split(cal_ix, train_size=n, stratify=y_cal, random_state=seed)
                t, thr = fit_on(logits[sub], y_all[sub], classes, rule)
                by_seed = result["curve"].setdefault(str(n), {})
                by_seed[str(seed)] = scores(y_test, apply_temperature(logits[test_ix], t), classes, thr)
            headline = {k: v["accuracy"] for k, v in row.items() if isinstance(v, dict)}
            print(case, "seed", seed, json.dumps(headline), f"{time.time() - t0:.0f} s", flush=True)
    result["spread"] = spread(result)
    result["wall_seconds"] = round(time.time() - t0, 1)
    return result


def _test_only(dedup_csv: Path, tmp: Path) -> Path:
    """The dedup manifest's test rows as a site set of their own (the cut pools every split it is given)."""
    target = tmp / "site-test.csv"
    if not target.is_file():
        from cxr.data.manifest import load_dataset

        ds = load_dataset(dedup_csv, require_train=False)
        write_manifest(target, {"test": ds.splits["test"]}, ds.classes, ds.patient_ids)
    return target


def spread(result: dict) -> dict:
    """Mean, min and max over the seeds of each protocol's headline figures, and of the learning curve."""
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "log_loss", "ece")

    def summary(rows: list[dict]) -> dict:
        return {
            k: {
                "mean": float(np.mean([r[k] for r in rows])),
                "min": float(min(r[k] for r in rows)),
                "max": float(max(r[k] for r in rows)),
            }
            for k in keys
            if k in rows[0]
        }

    seeds = list(result["seeds"].values())
    protocols = [p for p in ("zero_shot", "calibrated", "adapted_calibrated") if p in seeds[0]]
    out = {p: summary([s[p] for s in seeds]) for p in protocols}
    out["curve"] = {n: summary(list(by_seed.values())) for n, by_seed in result["curve"].items()}
    return out


def site_calibration(
    case: str, run: Path, seeds: list[int], adapt: bool, dedup_csv: Path | None, config_of: dict | None, command: str
) -> dict:
    result = run_case(case, run, seeds, adapt, dedup_csv, config_of)
    result["command"] = command
    results = read_results("site_calibration")
    results.pop("machine", None)
    results[case] = result
    write_result("site_calibration", results)
    return result
