"""A chosen model on other sites' films, its input guard, and label-free adaptation (no test split chooses anything):

- `external`: external validation, a benchmark model scored on another dataset that can honestly stand for another
  site. Only the codecademy / radiography pair qualifies: both are COVID / Normal / Viral Pneumonia, and the
  radiography model is trained without the films that re-appear in codecademy (datasets.yaml `train_data`). Kermany
  and PneumoniaMNIST are one collection at two sizes, and radiography's Viral Pneumonia films come from Kermany, so
  neither of those pairs is another site. Each entry: accuracy with 95 % bootstrap intervals, recall per class, and
  the share of films the model's input guard flags (flagging another site's films is the guard doing its job).
  results/external.json, one entry per benchmark (a re-run replaces it; keep the one it replaces in
  results/history/ if a table still cites it).
- `stress-guard`: a benchmark model under the acquisition-shift battery, and the share of films its input guard
  flags: its own test split, and other datasets' test films (other sites: flagging them is right).
  results/stress_guard.json, one entry per benchmark, with the machine and the load average while it ran (stress
  timings are only comparable on a quiet machine).
- `site-adaptation`: does `cxr site adapt` (batch-norm statistics re-measured on a new site's unlabeled films)
  help? Each pair is a model and another dataset's labeled films, split in two halves (stratified, seeded); each half is
  predicted by the model adapted on the OTHER half's films (labels unused), so no film informs its own prediction;
  pooled figures against the unadapted model on the same films. results/site_adaptation.json.

Every entry names its model (weights_sha256, config_sha256: common.model_identity, taken as it is measured);
`config_of` (DATASET or STUDY:CANDIDATE) names the recipe or candidate the run is.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    ROOT,
    dataset,
    dataset_path,
    datasets,
    machine,
    model_identity,
    predict_site,
    read_results,
    save_results,
    site_scores,
    train_data,
)

# model's benchmark -> (the other site's dataset, its training data (the derived one) or its path, split, what it is)
EXTERNAL_SITES = {
    "codecademy": (
        "radiography",
        "train_data",
        "test",
        "covid19-radiography test split minus copies of codecademy films",
    ),
    "radiography": ("codecademy", "path", "test", "covid19-codecademy test split (66 films)"),
}
STRESS_GUARD_BENCHMARKS = ("codecademy", "kermany", "radiography", "pneumoniamnist")
OTHER_FILMS = ("codecademy", "kermany", "radiography")  # every dataset's test films as the other sites (own skipped)
# name -> (the model's run, the other dataset, its split): radiography's model (trained without its copies of
# codecademy films) on codecademy's training films; codecademy's default (251 films of many sources) on
# radiography's validation films
ADAPTATION_PAIRS = {
    "radiography->codecademy": ("runs/bench-radiography", "codecademy", "train"),
    "codecademy->radiography": ("runs/bench-codecademy", "radiography", "val"),
}


def films_of(benchmark: str) -> str:
    """The dataset whose films a benchmark is of: its own, or the one datasets.yaml names (`films_of`)."""
    return dataset(benchmark).get("films_of", benchmark)


def external_benchmarks() -> list[str]:
    """The benchmarks with another site to be scored on: those of EXTERNAL_SITES' datasets' films."""
    return [name for name in datasets() if films_of(name) in EXTERNAL_SITES]


def external(benchmark: str, run: Path, config_of: dict | None, command: str) -> dict:
    from cxr.evaluation.evaluate import evaluate_run
    from cxr.rundir import RunDir

    site, which, split, what = EXTERNAL_SITES[films_of(benchmark)]
    data = train_data(site) if which == "train_data" else dataset_path(site)
    identity = model_identity(run, config_of)
    own_test = RunDir(run).read_metrics().get("test", {}).get("accuracy")
    if own_test is not None and isinstance(identity.get("trained"), dict):  # the model's own test, beside the site's
        identity["trained"]["own_test_accuracy"] = own_test
    metrics = evaluate_run(run, split, data=data, n_bootstrap=1000)
    guard = metrics.get("guard") or {}
    ci = metrics.get("ci", {})
    entry = {
        "run": str(run),
        **identity,  # weights_sha256, config_sha256, config_from, trained: the model these figures are of
        "site": what,
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": ci.get("accuracy"),
        "roc_auc": metrics["roc_auc"],
        "recall": (
            {c: metrics["per_class"][c]["recall"] for c in metrics["classes"]} if "per_class" in metrics else None
        ),
        "guard_flagged": guard.get("flagged"),
        "guard_share": guard.get("share"),
        "command": command,
        "machine": machine(),
    }
    results = read_results("external")
    results[benchmark] = entry
    save_results("external", results)
    print(json.dumps(entry, indent=2, default=str))
    return entry


def _flag_rate(bundle, folder: Path) -> dict:
    preds = bundle.predict([folder], batch_size=64)
    share = round(preds.flagged / max(1, len(preds.paths)), 4)
    return {"films": len(preds.paths), "flagged": preds.flagged, "share": share}


def stress_guard(benchmark: str, run: Path, backend: str, config_of: dict | None, command: str) -> dict:
    from cxr.evaluation.evaluate import evaluation_key, split_files
    from cxr.evaluation.stress import run_stress
    from cxr.inference.bundle import Bundle
    from cxr.inference.guard_fit import fit_run_guard

    bundle = Bundle.load(run, backend="torch")
    if bundle.guard is None:  # a run trained before cxr 0.6: fit its guard from its own splits.csv
        fit_run_guard(run)
        bundle = Bundle.load(run, backend="torch")
    identity = model_identity(run, config_of)  # the model file as measured, its guard included
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    stress = run_stress(run, "test", backend=backend)  # the run's own data (config.yaml)
    seconds = round(time.perf_counter() - t0, 1)
    own_key = evaluation_key(run, "test")
    own = bundle.predict(split_files(run, "test", bundle.classes).paths, batch_size=64)
    entry = {
        "run": str(run),
        **identity,
        "model": bundle.meta.model,
        "image_size": bundle.meta.image_size,
        "precision": "fp32 (inference)",
        "stress": {
            "key": stress["key"],
            "n": stress["n"],
            "backend": stress["backend"],
            "seconds": seconds,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "clean_accuracy": stress["clean"]["accuracy"],
            "summary": stress["summary"],
        },
        "guard": {
            "fitted": bundle.guard.fitted,
            f"own test ({own_key})": {
                "films": len(own.paths),
                "flagged": own.flagged,
                "share": round(own.flagged / max(1, len(own.paths)), 4),
            },
            **{
                f"{name} test films": _flag_rate(bundle, dataset_path(name) / "test")
                for name in OTHER_FILMS
                if name != benchmark
            },
        },
        "command": command,
    }
    results = read_results("stress_guard")
    results[benchmark] = {**entry, "machine": machine()}
    save_results("stress_guard", results)
    print(json.dumps(entry, indent=2, default=str))
    return entry


def _adapt_pair(name: str) -> dict:
    from sklearn.model_selection import StratifiedKFold

    from cxr.inference.adapt import adapt_batchnorm
    from cxr.inference.bundle import Bundle

    run, other, split = ADAPTATION_PAIRS[name]
    run, data = ROOT / run, dataset_path(other)
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
        "model": str(run.relative_to(ROOT)),
        "images": f"{data.name}/{split}",
        "n": len(y),
        "before": site_scores(y, before, classes, threshold),
        "adapted": site_scores(y, after, classes, threshold),
    }


def site_adaptation(names: list[str]) -> None:
    results = read_results("site_adaptation")
    for name in names or list(ADAPTATION_PAIRS):
        results[name] = _adapt_pair(name)
        print(name, json.dumps(results[name], indent=1), flush=True)
        save_results("site_adaptation", results)
