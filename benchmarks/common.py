"""Shared bits for benchmark scripts: where data lives, machine description, which model an entry describes, writing
results."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from cxr.config import TrainConfig
from cxr.training.train import cpu_model, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def cv_scores(y, probs, classes: list[str]) -> dict:
    """Pooled out-of-fold scores of a candidate: accuracy, macro-F1, AUC and log loss (the cv_*.json fields)."""
    from sklearn.metrics import log_loss

    from cxr.evaluation.metrics import compute_metrics

    m = compute_metrics(y, probs, classes)
    return {
        "cv_accuracy": m["accuracy"],
        "cv_macro_f1": m["macro_avg"]["f1-score"],
        "cv_auc": m["roc_auc"],
        "cv_log_loss": float(log_loss(y, probs, labels=list(range(len(classes))))),
    }


def site_scores(y, probs, classes: list[str], threshold: float | None = None) -> dict:
    """A model's figures on another site's films: accuracy, balanced accuracy, AUC (binary: sens/spec), recalls."""
    from cxr.evaluation.metrics import compute_metrics

    m = compute_metrics(y, probs, classes, threshold=threshold)
    reported = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")
    return {k: m[k] for k in reported if k in m} | {"recall": {c: m["per_class"][c]["recall"] for c in classes}}


def predict_site(run: Path, data: Path, split: str):
    """A run's model on another dataset's labeled split: (bundle, labels in the model's class order, paths, probs)."""
    from cxr.evaluation.evaluate import split_files
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run, backend="torch")
    files = split_files(run, split, bundle.classes, data)  # COVID/ counts as Covid
    preds = bundle.predict(files.paths)
    label_of = {str(p): y for p, y in zip(files.paths, files.labels)}
    return bundle, np.array([label_of[str(p)] for p in preds.paths]), [str(p) for p in preds.paths], preds.probabilities


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_sha256(config: dict) -> str:
    """SHA-256 of what a config trains (cxr.config.what_it_trains: without the keys that change no model) as canonical
    JSON (sorted keys, no spaces), its data and start weights as paths relative to the repository root: the same
    config hashes alike in every checkout. A recipe's start weights are named by path, not by content; a config written
    by a later cxr holds its new keys too, so one recipe hashes alike only within one cxr version (machine.cxr)."""
    from cxr.config import what_it_trains

    trains = what_it_trains(config)
    for key in ("data", "weights"):
        if trains.get(key):
            trains[key] = Path(os.path.relpath(trains[key], ROOT)).as_posix()
    text = json.dumps(trains, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def model_identity(run: Path) -> dict:
    """Which model a results entry describes, for every entry a benchmark script writes: `weights_sha256`, the SHA-256
    of the run's model file (model.pt, guard included) as it was measured; `config_sha256` of the keys its saved
    config.yaml holds (config_sha256: the file as written, so the same run hashes alike under a later cxr; None for a
    bare model file); and what trained it (seed, cxr version, CPU, precision)."""
    import yaml

    from cxr.inference.bundle import BUNDLE_FILE, read_bundle_file

    run = Path(run)
    weights = run if run.is_file() else run / BUNDLE_FILE
    saved = run / "config.yaml"
    cfg = (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}) if run.is_dir() and saved.is_file() else None
    metrics = run / "metrics.json"
    training = json.loads(metrics.read_text()).get("training", {}) if run.is_dir() and metrics.is_file() else {}
    return {
        "weights_sha256": sha256_file(weights),
        "config_sha256": config_sha256(cfg) if cfg is not None else None,
        "config_from": "run" if cfg is not None else None,  # its own config.yaml ("recipe: ...": docs/benchmarks.md)
        "trained": {"seed": cfg.get("seed") if cfg else None, "cxr": read_bundle_file(weights).get("cxr_version"),
                    "cpu": training.get("cpu"), "precision": training.get("precision"),
                    "epochs_run": training.get("epochs_run")},  # fmt: skip
    }


def machine() -> dict:
    from cxr import __version__

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "auto_precision": resolve_precision(TrainConfig()),
            "cxr": __version__}  # the cxr that measured (and hashed the config: new config keys change config_sha256)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2))
    print(json.dumps(result, indent=2))
    return path
