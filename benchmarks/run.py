"""Reproduce the results table: train each benchmark's config, evaluate on its official test split once,
time training and prediction, and write JSON per benchmark plus benchmarks/RESULTS.md (ours beside published).

Usage: python benchmarks/run.py codecademy [pneumoniamnist ...]
Every config was chosen on validation (benchmarks/model_selection.py, benchmarks/cv_select.py); test is read once here.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import yaml
from common import RESULTS, ROOT, SHARED_DATA, machine, write_result

import cxr
from cxr.config import build_config
from cxr.data.dedup import exclude_near_duplicates
from cxr.data.manifest import write_manifest
from cxr.evaluation.evaluate import evaluate_run
from cxr.training.train import peak_rss_gb, train

BENCHMARKS = {
    "codecademy": {
        "data": SHARED_DATA / "covid19-codecademy",
        "config": ROOT / "configs" / "default.yaml",
        "published": {"issue bar (3-class accuracy)": {"accuracy": 0.90}, "seed Keras recipe, 30 epochs": {"accuracy": 0.44}},
    },
    "kermany": {
        "data": SHARED_DATA / "chest-xray-pneumonia",
        "config": ROOT / "configs" / "kermany.yaml",
        "published": {
            "Kermany et al. 2018": {"accuracy": 0.928, "roc_auc": 0.968, "sensitivity": 0.932, "specificity": 0.901},
            "MedMNIST+ ResNet-18 (224)": {"accuracy": 0.911, "roc_auc": 0.980},
        },
    },
    "radiography": {
        "data": lambda: radiography_minus_codecademy(),
        "test_data": SHARED_DATA / "covid19-radiography",  # the official 1,538 test images, all of them
        "config": ROOT / "configs" / "radiography.yaml",
        "publish_weights": ROOT / "weights" / "smallnet-radiography-224.pt",
        "published": {"Chowdhury et al. / Rahman et al. (their split, ImageNet-pretrained)": {"accuracy": 0.983}},
    },
    "pneumoniamnist": {
        "data": SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz",
        "config": ROOT / "configs" / "pneumoniamnist.yaml",
        "published": {
            "MedMNIST v2 ResNet-18 (28)": {"accuracy": 0.854, "roc_auc": 0.944},
            "MedMNIST v2 AutoKeras": {"accuracy": 0.878, "roc_auc": 0.947},
            "MedMNIST v2 Google AutoML Vision": {"accuracy": 0.946, "roc_auc": 0.991},
        },
    },
}
# Loose on purpose: a false match costs one pretraining image, a missed copy leaks a test image. Codecademy's Covid
# films sit 26-52 from their radiography copies (second-nearest 56+); its Normal/Viral Pneumonia films 54+ from anything.
PRETRAIN_DEDUP_THRESHOLD = 56
REPORTED = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")


def same_config(a: dict, b: dict) -> bool:
    """Equal on every key both know; keys added to cxr after a run was trained default to the old behaviour."""
    ignore = {"data", "cache_dir", "num_workers"}  # where data lives and loader processes do not change the model
    keys = (a.keys() & b.keys()) - ignore
    return all(same_config(a[k], b[k]) if isinstance(a[k], dict) else _value(k, a[k]) == _value(k, b[k]) for k in keys)


def _value(key: str, value):
    """A weights file is the same file whether written relative to the repository root or absolute."""
    return str((ROOT / value).resolve()) if key == "weights" and value else value


def radiography_minus_codecademy() -> Path:
    """covid19-radiography without its copies of covid19-codecademy images (see configs/radiography.yaml); built once."""
    out = ROOT / "runs" / "manifests" / "radiography-minus-codecademy.csv"
    if not out.is_file():
        result = exclude_near_duplicates(SHARED_DATA / "covid19-radiography", SHARED_DATA / "covid19-codecademy",
                                         threshold=PRETRAIN_DEDUP_THRESHOLD)  # fmt: skip
        write_manifest(out, result.splits, result.classes, result.patient_ids)
    return out


def bench_run_dir(name: str) -> Path:
    return ROOT / "runs" / f"bench-{name}"


def run_benchmark(name: str, reuse: Path | None = None) -> dict:
    """Train (or reuse a finished run trained with exactly this config, e.g. by model_selection.py), then test once."""
    spec = BENCHMARKS[name]
    data = spec["data"]() if callable(spec["data"]) else spec["data"]
    cfg = build_config(spec["config"], {"data": data})
    if reuse is not None:
        if not same_config(cfg.to_yaml_dict(), yaml.safe_load((reuse / "config.yaml").read_text())):
            raise SystemExit(f"{reuse} was trained with another config than {spec['config']}; cannot reuse it")
        out = reuse
    else:
        out = bench_run_dir(name)
        train(cfg, out, overwrite=True)
        if "publish_weights" in spec:  # the pretrained start other configs name (weights/README.md)
            shutil.copyfile(out / "model.pt", spec["publish_weights"])
    training = json.loads((out / "metrics.json").read_text())["training"]
    train_wall = training["wall_seconds"]
    # key "test": radiography's official test images are this run's test split, though read from the full dataset
    test = evaluate_run(out, "test", data=spec.get("test_data"), n_bootstrap=1000, key="test")

    bundle = cxr.load(out)
    with open(out / "predictions_test.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    bundle.predict(paths[:32])  # warm-up
    t0 = time.perf_counter()
    n = len(bundle.predict(paths, batch_size=32).paths)
    predict_ips = n / (time.perf_counter() - t0)

    ci = test.get("ci", {})
    result = {
        "command": f"python benchmarks/run.py {name}" + (f" --reuse {reuse.relative_to(ROOT)}" if reuse else ""),
        "config": str(spec["config"].relative_to(ROOT)),
        "test": {"n": test["n"], **{k: test[k] for k in REPORTED if k in test},
                 "macro_f1": test["macro_avg"]["f1-score"],
                 "ci95": {k: ci.get(k) for k in REPORTED if k in ci}},  # fmt: skip
        "published": spec["published"],
        "epochs_run": training["epochs_run"],
        "train_wall_seconds": round(train_wall, 1),
        "train_images_per_second": training["train_images_per_second"],
        "predict_images_per_second": round(predict_ips, 1),
        # the training run's own peak (process or loader worker); runs trained before it was recorded: this process
        "peak_rss_gb": training.get("peak_rss_gb") or peak_rss_gb(),
    }
    write_result(name, result)
    return result


def write_table() -> None:
    """benchmarks/RESULTS.md from every results/<benchmark>.json present."""
    lines = ["# Results", "", f"Machine: {machine()['cpu']}, {machine()['cores']} cores, CPU only.", "",
             "| benchmark | model | test n | accuracy [95% CI] | AUC [95% CI] | sensitivity | specificity | train wall "
             "| peak RSS | published |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        if "published" not in r:  # written by an older script; rerun this benchmark to list it
            continue
        t, ci = r["test"], r["test"].get("ci95", {})

        def fmt(key: str) -> str:
            if t.get(key) is None:
                return "-"
            lo_hi = ci.get(key)
            return f"{t[key]:.3f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")

        published = "; ".join(
            f"{k}: " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items()) for k, vals in r["published"].items()
        )
        cfg = build_config(ROOT / r["config"], {})
        lines.append(
            f"| {name} | {cfg.model} @ {cfg.image_size}px | {t['n']} | {fmt('accuracy')} | {fmt('roc_auc')} | "
            f"{fmt('sensitivity')} | {fmt('specificity')} | {r['train_wall_seconds'] / 60:.1f} min | "
            f"{r.get('peak_rss_gb', '-')} GB | {published} |"
        )
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("benchmarks", nargs="*", help=f"any of {', '.join(BENCHMARKS)}")
    ap.add_argument("--table-only", action="store_true", help="rebuild RESULTS.md from existing JSON")
    ap.add_argument("--reuse", type=Path, help="a finished run trained with the same config (one benchmark only)")
    args = ap.parse_args()
    unknown = set(args.benchmarks) - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if not args.table_only:
        for name in args.benchmarks:
            run_benchmark(name, args.reuse.resolve() if args.reuse else None)
    write_table()


if __name__ == "__main__":
    main()
