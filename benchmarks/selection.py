"""Model selection on VALIDATION only (test is never read), through `cxr sweep`'s machinery: a study's space file
(benchmarks/spaces/NAME.yaml, its named `candidates:`) over the study's base config (benchmarks/datasets.yaml), so
each candidate is an ordinary trial judged like any sweep trial; seeds, if several, are replicates (a grid over
candidates and seeds). A study run is named by its objective, candidates and seeds (many candidates: by the study's
name and a digest of theirs), so the same command resumes it. The same space runs anywhere as
`cxr sweep --config RECIPE --data PATH --space benchmarks/spaces/NAME.yaml --objective OBJECTIVE`.

Results: results/select_<dataset>.json (val_accuracy, cv_accuracy) or robust_<dataset>.json (val_stressed, whose
rule is cxr.training.sweep.ROBUST_RULE), one entry per study run, keyed as its runs are under runs/select/<dataset>/;
cv_accuracy (nested cross-validation: each fold's run carves its own validation from the other folds, the held-out
fold is only scored) also writes each candidate's pooled figures to cv_<dataset>.json as "NAME nested".
`reuse` {TRIAL: RUN} copies a finished run in as a trial; the sweep refuses it unless its config is exactly the
trial's, so only a deterministic re-run is skipped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

from benchmarks.common import ROOT, machine, read_results, save_results, study, study_base, study_space


def selection_plan(
    name: str, candidates: list[str], seeds: list[int] | None, objective: str | None = None, folds: int = 3
):
    """The study's candidates (all, or those named) as one sweep: a grid over their names, and over seeds if the
    space or `seeds` gives more than one."""
    from cxr.training.space import parse_space
    from cxr.training.sweep import SweepPlan

    s = study(name)
    objective = objective or s["objective"]
    space = study_space(name)
    unknown = set(candidates) - set(space["candidates"])
    if unknown:
        raise SystemExit(f"{s['space'].relative_to(ROOT)} has no candidate(s) {sorted(unknown)}")
    chosen = {n: space["candidates"][n] for n in candidates or space["candidates"]}
    listed = space.get("seed")
    seeds = seeds or (listed.get("choices") if isinstance(listed, dict) else listed) or [0]
    entries = {**space, "candidates": chosen}
    entries.pop("seed", None)
    if len(seeds) > 1:
        entries["seed"] = list(seeds)
    base = study_base(name, seeds[0])
    params = parse_space(entries, base, str(s["space"].relative_to(ROOT)))
    key = f"{objective}-" + "-".join(sorted(chosen)) + ("-seeds" + "-".join(map(str, seeds)))
    if len(key) > 120:  # a folder name: many candidates are named by the study and a digest of their names
        digest = hashlib.sha256(" ".join(sorted(chosen)).encode()).hexdigest()[:8]
        key = f"{objective}-{name}-{len(chosen)}-{digest}-seeds" + "-".join(map(str, seeds))
    out = ROOT / "runs" / "select" / s["dataset"] / key
    trials = len(chosen) * (len(seeds) if len(seeds) > 1 else 1)
    return SweepPlan(
        base=base,
        params=params,
        out=out,
        trials=trials,
        objective=objective,
        study_name=key,
        cv_folds=folds,
        prune=False,
    )


def select(
    name: str,
    candidates: list[str],
    seeds: list[int] | None,
    reuse: dict[str, str],
    objective: str | None,
    folds: int,
    command: str,
) -> dict:
    import optuna

    from cxr.training.sweep import run_sweep

    plan = selection_plan(name, candidates, seeds, objective, folds)
    for trial, run in reuse.items():
        target = plan.out / "trials" / trial
        if not target.exists():
            shutil.copytree(ROOT / run, target, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    t0 = time.perf_counter()
    summary = run_sweep(plan)
    opt = optuna.load_study(study_name=plan.study_name, storage=plan.storage_url)
    rows = {}
    for t in opt.trials:
        run = plan.out / "trials" / t.user_attrs.get("run", "")
        rows[t.user_attrs.get("run")] = {
            "params": t.params,
            "state": t.state.name,
            "value": t.value,
            **{k: v for k, v in t.user_attrs.items() if k != "run"},
            **(_val_figures(run) if (run / "metrics.json").is_file() else {}),
        }
    dataset = study(name)["dataset"]
    kind = "robust" if plan.objective == "val_stressed" else "select"
    results = read_results(f"{kind}_{dataset}")
    results[plan.study_name] = {
        "study": name,
        "objective": plan.objective,
        "rule": summary.get("rule"),
        "chosen": summary.get("best_run"),
        "chosen_params": summary.get("best_params"),
        "trials": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": command,
        "machine": machine(),
    }
    save_results(f"{kind}_{dataset}", results)
    if plan.objective == "cv_accuracy":
        _record_nested(name, plan, opt.trials, folds)
    print(json.dumps(results[plan.study_name], indent=2, default=str))
    return results[plan.study_name]


def _record_nested(name: str, plan, trials, folds: int) -> None:
    """Each cv_accuracy trial's pooled out-of-fold figures (its cv.json) as "RUN nested" in cv_<dataset>.json."""
    from cxr.evaluation.oof import CV_FILE

    dataset = study(name)["dataset"]
    space = study_space(name)["candidates"]
    results = read_results(f"cv_{dataset}")
    for t in trials:
        run = t.user_attrs.get("run")
        cv_file = plan.out / "trials" / (run or "") / CV_FILE
        if not run or not cv_file.is_file():
            continue
        cv = json.loads(cv_file.read_text())
        results[f"{run} nested"] = {
            "config": space.get(t.params.get("candidates")),
            "folds": folds,
            "n": cv["n"],
            "cv_accuracy": cv["accuracy"],
            "cv_macro_f1": cv["macro_avg"]["f1-score"],
            "cv_auc": cv["roc_auc"],
            "cv_log_loss": cv["log_loss"],
        }
    save_results(f"cv_{dataset}", results)


def _val_figures(run) -> dict:
    val = json.loads((run / "metrics.json").read_text()).get("val", {})
    keep = ("accuracy", "roc_auc", "sensitivity", "specificity", "n")
    stress = val.get("stress", {}).get("summary", {})
    return {
        "val": {k: val[k] for k in keep if k in val},
        "val_stress": {k: stress.get(k) for k in ("mean_accuracy", "worst_shift", "worst_condition")},
    }
