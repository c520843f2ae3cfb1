"""The results table: train each benchmark's recipe (benchmarks/datasets.yaml) on its data, test it once on its
official test split, time training and prediction, and record each run in results/<name>.json; RESULTS.md is
written from those files (ours beside published). Every recipe was chosen on validation (`select`); test is read once
here, never to choose.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULTS,
    ROOT,
    dataset,
    dataset_path,
    datasets,
    machine,
    model_identity,
    recipe_config,
    save_results,
)

REPORTED = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")


def bench_run_dir(name: str, seed: int = 0) -> Path:
    return ROOT / "runs" / (f"bench-{name}" if seed == 0 else f"bench-{name}-seed{seed}")


def test_data(name: str) -> Path | None:
    """Where the benchmark's test films are read: the dataset itself where it trains on a derived manifest
    (radiography: all 1,538 official test films), else the run's own data."""
    return dataset_path(name) if dataset(name).get("train_data") else None


def run_benchmark(name: str, seed: int = 0, reuse: Path | None = None, publish: bool = False) -> dict:
    """Train one seed (or reuse a finished run trained with exactly this config, e.g. a `select` trial), then test
    once. Returns that seed's entry for results/<name>.json."""
    import cxr
    from cxr.config import trained_as
    from cxr.evaluation.evaluate import evaluate_run
    from cxr.evaluation.stress import export_for_stress, run_stress
    from cxr.training.train import peak_rss_gb, train

    cfg = recipe_config(name, seed)
    if reuse is not None:
        if not trained_as(reuse, cfg):  # the sweep's own check: equal but for where it ran
            raise SystemExit(f"{reuse} was trained with another config than {recipe_name(name)} seed {seed}")
        out = reuse
    else:
        out = bench_run_dir(name, seed)
        train(cfg, out, overwrite=True)
    # the model the figures below are of (checked again once they are measured), and the recipe it is
    identity = model_identity(out, {"dataset": name, "seed": seed})
    published = None
    target = dataset(name).get("publish_weights")
    if publish and target:  # the pretrained start other recipes name (src/cxr/weights/README.md)
        shutil.copyfile(out / "model.pt", ROOT / target)
        published = target
    training = json.loads((out / "metrics.json").read_text())["training"]
    # key "test": radiography's official test images are this run's test split, though read from the full dataset
    test = evaluate_run(out, "test", data=test_data(name), n_bootstrap=1000, key="test")
    export_for_stress(out)  # ONNX Runtime: the battery ~9x faster than on PyTorch
    stressed = run_stress(out, "test", data=test_data(name))  # the same films under the shift battery

    bundle = cxr.load(out)
    with open(out / "predictions_test.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    bundle.predict(paths[:32])  # warm-up
    t0 = time.perf_counter()
    n = len(bundle.predict(paths, batch_size=32).paths)
    predict_ips = n / (time.perf_counter() - t0)
    if model_identity(out)["weights_sha256"] != identity["weights_sha256"]:
        raise SystemExit(f"{out / 'model.pt'} changed while it was tested; its figures are not recorded")

    ci = test.get("ci", {})
    return {
        "seed": seed,
        "command": f"python -m benchmarks run {name} --seeds {seed}"
        + (f" --reuse {os.path.relpath(reuse, ROOT)}" if reuse else ""),
        "run": os.path.relpath(out, ROOT),
        # the model: its file's and its config's SHA-256 (common.model_identity); where a copy is shipped
        "weights_sha256": identity["weights_sha256"],
        **({"weights_file": published} if published else {}),
        "config_sha256": identity["config_sha256"],
        "config_from": identity["config_from"],
        "config_of": identity["config_of"],
        "cxr": identity["trained"]["cxr"],
        "test": {
            "n": test["n"],
            **{k: test[k] for k in REPORTED if k in test},
            "macro_f1": test["macro_avg"]["f1-score"],
            "ci95": {k: ci.get(k) for k in REPORTED if k in ci},
        },
        "stress_test": stress_entry(stressed),
        "epochs_run": training["epochs_run"],
        "precision": training["precision"],
        "train_wall_seconds": round(training["wall_seconds"], 1),
        "train_images_per_second": training["train_images_per_second"],
        "predict_images_per_second": round(predict_ips, 1),
        "predict_backend": bundle.backend,  # ONNX Runtime once the run is exported for the battery, else PyTorch
        # the training run's own peak (process or loader worker); runs trained before it was recorded: this process
        "peak_rss_gb": training.get("peak_rss_gb") or peak_rss_gb(),
        "machine": machine(),
    }


def stress_entry(section: dict) -> dict:
    """The test films under the shift battery: mean over every condition, the weakest shift, the worst condition."""
    summary = section["summary"]
    return {
        "mean_accuracy": summary["mean_accuracy"],
        "worst_shift": summary["worst_shift"]["shift"],
        "worst_shift_accuracy": summary["worst_shift"]["mean_accuracy"],
        "worst_condition": summary["worst_condition"],
        "backend": section["backend"],
        "seconds": section["seconds"],
    }


def recipe_name(name: str) -> str:
    return dataset(name)["recipe"] or "the defaults (the validated recipe)"


def load_results(name: str) -> dict:
    """results/<name>.json; a file from before seeds were recorded becomes its one run (it was seed 0)."""
    path = RESULTS / f"{name}.json"
    r = json.loads(path.read_text()) if path.is_file() else {}
    if "test" in r and "runs" not in r:
        legacy = {
            k: r[k]
            for k in (
                "test",
                "epochs_run",
                "train_wall_seconds",
                "train_images_per_second",
                "predict_images_per_second",
                "peak_rss_gb",
                "machine",
            )
            if k in r
        }
        r = {"runs": [{"seed": 0, "command": r["command"], "precision": "32", **legacy}]}  # fp32: no native bf16 there
    return r


def seed_spread(runs: list[dict]) -> dict:
    """Mean and range over the runs (training seeds, a seed on two machines counted twice) of the headline figures."""
    out = {"runs": len(runs), "seeds": sorted({r["seed"] for r in runs})}
    for key in ("accuracy", "roc_auc", "balanced_accuracy", "sensitivity", "specificity"):
        values = [r["test"][key] for r in runs if r["test"].get(key) is not None]
        if values:
            out[key] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
    stressed = [r for r in runs if "stress_test" in r]
    if stressed:  # the runs stressed (runs recorded before cxr 0.7 were not): mean and weakest shift
        out["stressed_runs"] = len(stressed)
        out["stressed_seeds"] = sorted({r["seed"] for r in stressed})
        for key in ("mean_accuracy", "worst_shift_accuracy"):
            values = [r["stress_test"][key] for r in stressed]
            out[f"stressed_{key}"] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
        out["weakest_shifts"] = sorted({r["stress_test"]["worst_shift"] for r in stressed})
    out["train_wall_minutes"] = round(sum(r["train_wall_seconds"] for r in runs) / 60, 1)
    return out


def _run_key(run: dict) -> tuple:
    """A seed trained again on the same CPU in the same precision replaces its entry; elsewhere it is another draw."""
    return run["machine"]["cpu"], run["precision"], run["seed"]


def record(name: str, entries: list[dict]) -> dict:
    """Merge seeds' entries into results/<name>.json (a seed run again replaces its entry) and recompute the spread."""
    results = load_results(name)
    runs = {_run_key(r): r for r in results.get("runs", [])}
    runs.update({_run_key(e): e for e in entries})
    ordered = [runs[k] for k in sorted(runs)]
    result = {
        "config": recipe_name(name),
        "published": dataset(name)["published"],
        "spread": seed_spread(ordered),
        "runs": ordered,
    }
    save_results(name, result)
    return result


def place(name: str, run: Path) -> str:
    """One line placing a run's test accuracy among the benchmark's recorded seeds (`make demo` ends with it)."""
    runs = load_results(name).get("runs")
    metrics = json.loads((run / "metrics.json").read_text())
    if not runs or "test" not in metrics:
        return f"{run}: no recorded seeds or no test figures to compare with"
    spread = seed_spread(runs)
    acc, a = metrics["test"]["accuracy"], spread["accuracy"]
    where = "within" if a["min"] <= acc <= a["max"] else "below" if acc < a["min"] else "above"
    return (
        f"{run}: test accuracy {acc:.3f}, {where} the range of this recipe's {runs_and_seeds(runs)} "
        f"({a['min']:.3f}-{a['max']:.3f}, mean {a['mean']:.3f}; benchmarks/results/{name}.json)"
    )


def seeds_text(seeds) -> str:
    """'seed 0', 'seeds 0-4' (consecutive), 'seeds 0, 2'."""
    seeds = sorted(set(seeds))
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def runs_and_seeds(runs: list[dict]) -> str:
    """Runs and seeds counted apart: '3 runs, seeds 0-1' (seed 0 on two machines is two runs of one seed)."""
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}, {seeds_text(r['seed'] for r in runs)}"


def weights_cell(entries: list[dict]) -> str:
    """The models a table row's figures come from: each kept model file by the first 8 hex digits of its SHA-256
    (`weights_sha256`), and how many entries say `model_kept: false` (runs from before digests were recorded)."""
    digests = [f"`{e['weights_sha256'][:8]}`" for e in entries if e.get("weights_sha256")]
    lost = sum(1 for e in entries if not e.get("weights_sha256") and e.get("model_kept") is False)
    unnamed = [
        e.get("run", e.get("command"))
        for e in entries
        if not e.get("weights_sha256") and e.get("model_kept") is not False
    ]
    if unnamed:
        raise SystemExit(f"entries name no model (no weights_sha256, no model_kept: false): {unnamed}")
    return ", ".join(digests + ([f"{lost} not kept"] if lost else []))


def _range(s: dict, key: str) -> str:
    if key not in s:
        return "-"
    v = s[key]
    return f"{v['mean']:.3f} ({v['min']:.3f}-{v['max']:.3f})" if v["min"] != v["max"] else f"{v['mean']:.3f}"


def _weakest(s: dict) -> str:
    if "weakest_shifts" not in s:
        return "-"
    return f"{', '.join(s['weakest_shifts'])}: {_range(s, 'stressed_worst_shift_accuracy')}"


def _stressed_of(s: dict) -> str:
    n = s.get("stressed_runs", 0)
    return f" ({n} of {s['runs']} runs)" if n and n != s["runs"] else ""


def table_text() -> str:
    """benchmarks/RESULTS.md as written from every results/<benchmark>.json present."""
    lines = [
        "# Results",
        "",
        "Test figures over runs: mean (min-max); each run's seed, machine, precision and model "
        "in benchmarks/results/<benchmark>.json. Weights: the first 8 hex digits of each kept model file's "
        "SHA-256 (`weights_sha256`), or how many runs' models were not kept (`model_kept: false`).",
        "",
        "| benchmark | model | test n | runs | weights | accuracy | AUC | sensitivity | specificity "
        "| under shift (mean) | weakest shift | train wall per run | machine, precision | published |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, spec in datasets().items():
        r = load_results(name)
        if "runs" not in r:
            continue
        s = seed_spread(r["runs"])
        published = "; ".join(
            f"{k}: " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items()) for k, vals in spec["published"].items()
        )
        cfg = recipe_config(name, build_data=False)
        machines = sorted({f"{run['machine']['cpu']}, {run['precision']}" for run in r["runs"]})
        lines.append(
            f"| {name} | {cfg.model} @ {cfg.image_size}px | {r['runs'][0]['test']['n']} | {runs_and_seeds(r['runs'])} "
            f"| {weights_cell(r['runs'])} | {_range(s, 'accuracy')} | {_range(s, 'roc_auc')} | "
            f"{_range(s, 'sensitivity')} | {_range(s, 'specificity')} | "
            f"{_range(s, 'stressed_mean_accuracy')}{_stressed_of(s)} | "
            f"{_weakest(s)} | "
            f"{s['train_wall_minutes'] / s['runs']:.1f} min | {'; '.join(machines)} "
            f"| {published} |"
        )
    return "\n".join(lines) + "\n"


def write_table() -> Path:
    path = ROOT / "benchmarks" / "RESULTS.md"
    path.write_text(table_text())
    return path


def run(names: list[str], seeds: list[int], reuse: Path | None = None, publish: bool = False) -> None:
    """Each benchmark over the seeds, recorded after each seed (a long series keeps what it finished), then the
    table."""
    if reuse and (len(names) != 1 or len(seeds) != 1):
        raise SystemExit("--reuse takes one benchmark and one seed")
    for name in names:
        dataset(name)
    for name in names:
        for seed in seeds:
            entry = run_benchmark(name, seed, reuse.resolve() if reuse else None, publish)
            print(json.dumps(record(name, [entry])["spread"], indent=2), flush=True)
    write_table()
