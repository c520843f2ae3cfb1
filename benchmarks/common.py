"""Shared by every sub-command: the datasets and studies of benchmarks/datasets.yaml, the configs they name, which
model a results entry describes (config and weights digests), the machine, writing results.

Paths in datasets.yaml and in the spaces are relative to the repository root, where `python -m benchmarks` runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cxr.data.images import file_sha256

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
SPACES = BENCH / "spaces"
DATASETS_FILE = BENCH / "datasets.yaml"


# --- datasets and studies (benchmarks/datasets.yaml) ------------------------------------------------------------


@functools.cache
def datasets() -> dict[str, dict[str, Any]]:
    """benchmarks/datasets.yaml: name -> {path, recipe, notes, published, studies, ...}, in the file's order."""
    return yaml.safe_load(DATASETS_FILE.read_text(encoding="utf-8"))


def dataset(name: str) -> dict[str, Any]:
    if name not in datasets():
        raise SystemExit(f"unknown dataset {name!r}; benchmarks/datasets.yaml has {', '.join(datasets())}")
    return datasets()[name]


def dataset_path(name: str) -> Path:
    """The dataset's files (a folder, manifest or .npz), absolute."""
    return Path(os.path.normpath(ROOT / dataset(name)["path"]))


def train_data(name: str, build: bool = True) -> Path:
    """What the dataset's benchmark trains on: its path, or a derived manifest (`train_data` in datasets.yaml:
    the dataset minus its near-copies of another's films), built once (`build=False`: only its path, e.g. to name
    or hash the config)."""
    derived = dataset(name).get("train_data")
    if not derived:
        return dataset_path(name)
    out = ROOT / derived["manifest"]
    if build and not out.is_file():
        from cxr.data.dedup import exclude_near_duplicates
        from cxr.data.manifest import write_manifest

        result = exclude_near_duplicates(
            dataset_path(name), dataset_path(derived["minus_copies_of"]), threshold=derived["threshold"]
        )
        write_manifest(out, result.splits, result.classes, result.patient_ids)
    return out


def recipe_config(name: str, seed: int = 0, build_data: bool = True, overrides: dict | None = None):
    """The benchmark's recipe (None: cxr's defaults, the validated codecademy recipe) on its training data, with
    this seed (`overrides`: dotted keys, e.g. a study's fixed keys)."""
    from cxr.config import build_config

    data = train_data(name, build_data)
    return build_config(dataset(name)["recipe"], {**(overrides or {}), "data": data, "seed": seed})


def studies() -> dict[str, dict[str, Any]]:
    """Every selection study: name -> {dataset, over, objective, set, space} (datasets.yaml `studies:`)."""
    out = {}
    for ds, spec in datasets().items():
        for name, study in (spec.get("studies") or {}).items():
            out[name] = {"dataset": ds, "set": {}, **study, "space": SPACES / f"{name}.yaml"}
    return out


def study(name: str) -> dict[str, Any]:
    found = studies()
    if name not in found:
        raise SystemExit(f"unknown study {name!r}; benchmarks/datasets.yaml names {', '.join(found)}")
    return found[name]


def study_base(name: str, seed: int = 0, data: Path | str | None = None, build_data: bool = True):
    """The config a study's candidates change: the dataset's recipe on its training data (`over: recipe`) or cxr's
    defaults on the dataset (`over: defaults`), with the study's fixed keys and this seed (`data`: other data, e.g.
    a cross-validation fold's manifest)."""
    from cxr.config import build_config

    s = study(name)
    if s["over"] == "recipe":
        cfg = recipe_config(s["dataset"], seed, build_data, s["set"])
        return cfg if data is None else cfg.model_copy(update={"data": Path(data)})
    if s["over"] != "defaults":
        raise SystemExit(f"study {name}: over must be recipe or defaults, not {s['over']!r}")
    return build_config(None, {**s["set"], "data": data or dataset_path(s["dataset"]), "seed": seed})


def study_space(name: str) -> dict[str, Any]:
    """The study's space file as loaded (its `candidates:` and any searched keys such as `seed`)."""
    return yaml.safe_load(study(name)["space"].read_text(encoding="utf-8"))


def candidate_changes(name: str, candidate: str) -> dict[str, Any]:
    """The dotted config keys a study's named candidate sets."""
    candidates = study_space(name).get("candidates") or {}
    if candidate not in candidates:
        raise SystemExit(
            f"{study(name)['space'].relative_to(ROOT)} has no candidate {candidate!r}; it has {', '.join(candidates)}"
        )
    changes = {}
    for key, value in candidates[candidate].items():  # `augment: {noise: ...}` is augment.noise, as in cxr sweep
        changes.update({f"augment.{k}": v for k, v in value.items()} if key == "augment" else {key: value})
    return changes


def candidate_config(name: str, candidate: str, seed: int = 0, data: Path | str | None = None, build_data: bool = True):
    """A study's candidate as the sweep trains it: its changes over the study's base (cxr.training.sweep.trial_config),
    the candidate's own seed, if it names one, winning over `seed`."""
    from cxr.config import TrainConfig
    from cxr.training.space import apply_params

    base = study_base(name, seed, data, build_data)
    return TrainConfig.model_validate(apply_params(base.model_dump(), candidate_changes(name, candidate)))


def config_of(spec: dict[str, Any], build_data: bool = False):
    """The config a results entry's `config_of` names: {dataset, seed} (the benchmark's recipe) or {study,
    candidate, seed} (a candidate of a space)."""
    if "study" in spec:
        return candidate_config(spec["study"], spec["candidate"], spec["seed"], build_data=build_data)
    return recipe_config(spec["dataset"], spec["seed"], build_data)


def parse_config_of(text: str, seed: int) -> dict[str, Any]:
    """`DATASET` or `STUDY:CANDIDATE` (as the sub-commands take it) -> a `config_of` entry with this seed."""
    if ":" in text:
        name, candidate = text.split(":", 1)
        study(name)
        return {"study": name, "candidate": candidate, "seed": seed}
    dataset(text)
    return {"dataset": text, "seed": seed}


# --- which model an entry describes -----------------------------------------------------------------------------


sha256_file = file_sha256  # a file's content identity, as cxr computes it for films and weights


def config_sha256(config: dict) -> str:
    """SHA-256 of what a config trains (cxr.config.what_it_trains: without the keys that change no model) as canonical
    JSON (sorted keys, no spaces), its data as a path relative to the repository root (the same config hashes alike in
    every checkout) and its start by content: a `weights` file or a shipped `pretrained` start (cxr's SHIPPED) becomes
    `start_sha256`, the SHA-256 of the file it loads, in place of both keys, so renaming or moving that file changes
    no digest (`pretrained: imagenet` stays a name: the model fixes its file; a `weights` file absent here stays a
    path). A config written by a later cxr holds its new keys too, so one recipe hashes alike only within one cxr
    version (machine.cxr)."""
    from cxr.config import what_it_trains

    trains = what_it_trains(config)
    start = start_sha256(trains)
    if start is not None:
        trains = {k: v for k, v in trains.items() if k not in ("weights", "pretrained")} | {"start_sha256": start}
    for key in ("data", "weights"):
        if trains.get(key):  # from the path as written, not resolved: a symlinked checkout hashes alike
            trains[key] = Path(os.path.relpath(os.path.abspath(config[key]), ROOT)).as_posix()
    text = json.dumps(trains, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def start_sha256(trains: dict) -> str | None:
    """The SHA-256 of the start file a config loads (what_it_trains: `weights` absolute): its `weights` file (a run
    directory: its model.pt), or a shipped start's digest (cxr loads no other content under that name); None for no
    start, an ImageNet one, or a `weights` file absent here."""
    from cxr.models.pretrained import SHIPPED

    if trains.get("weights"):
        path = Path(trains["weights"])
        path = path / "model.pt" if path.is_dir() else path
        return sha256_file(path) if path.is_file() else None
    name = trains.get("pretrained")
    return SHIPPED[name].sha256 if name in SHIPPED else None


def model_identity(run: Path, config_of_spec: dict | None = None) -> dict:
    """Which model a results entry describes, for every entry a sub-command writes: `weights_sha256`, the SHA-256
    of the run's model file (model.pt, guard included) as it was measured; `config_sha256` of the keys its saved
    config.yaml holds (config_sha256: the file as written, so the same run hashes alike under a later cxr; None for a
    bare model file); and what trained it (seed, cxr version, CPU, precision). `config_of_spec` (see config_of): the
    recipe or candidate the run is, recorded as `config_of` once its config is checked to hash alike
    (tests/benchmarks/test_recorded.py rebuilds every recorded one)."""
    from cxr.inference.bundle import BUNDLE_FILE, read_bundle_file

    run = Path(run)
    weights = run if run.is_file() else run / BUNDLE_FILE
    saved = run / "config.yaml"
    cfg = (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}) if run.is_dir() and saved.is_file() else None
    metrics = run / "metrics.json"
    training = json.loads(metrics.read_text()).get("training", {}) if run.is_dir() and metrics.is_file() else {}
    identity = {
        "weights_sha256": sha256_file(weights),
        "config_sha256": config_sha256(cfg) if cfg is not None else None,
        "config_from": "run" if cfg is not None else None,  # its own config.yaml ("recipe: ...": docs/benchmarks.md)
        "trained": {
            "seed": cfg.get("seed") if cfg else None,
            "cxr": read_bundle_file(weights).get("cxr_version"),
            "cpu": training.get("cpu"),
            "precision": training.get("precision"),
            "epochs_run": training.get("epochs_run"),
        },
    }
    if config_of_spec is not None and cfg is not None:
        expected = config_sha256(config_of(config_of_spec).to_yaml_dict())
        if expected != identity["config_sha256"]:
            raise SystemExit(f"{run} was not trained with {config_of_spec} (config digests differ)")
        identity["config_of"] = config_of_spec
    return identity


# --- the machine, scores, results files -------------------------------------------------------------------------


def machine() -> dict:
    import torch

    from cxr import __version__
    from cxr.config import TrainConfig
    from cxr.training.train import cpu_model, resolve_precision

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "auto_precision": resolve_precision(TrainConfig()),
        "cxr": __version__,
    }  # the cxr that measured (and hashed the config: new config keys change config_sha256)


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


def read_results(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_results(name: str, results: dict) -> Path:
    """results/<name>.json as a whole (sub-commands that keep one entry per key read, update and save it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def write_result(name: str, result: dict) -> Path:
    """results/<name>.json: this result with the machine that measured it (replacing the file)."""
    path = save_results(name, {**result, "machine": machine()})
    print(json.dumps(result, indent=2, default=str))
    return path
