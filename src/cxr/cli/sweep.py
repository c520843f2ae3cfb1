"""`cxr sweep` (Optuna over config keys) and `cxr runs` (a leaderboard of finished runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.cli.checks import folder_out
from cxr.cli.output import console, print_table

OBJECTIVE_HELP = (
    "val_loss | val_accuracy | val_auc (the validation split carved from train, as `cxr train` does) "
    "| cv_accuracy (nested cross-validation of the train split, --cv folds: for small datasets) "
    "| val_stressed (validation films under the acquisition-shift battery; best.yaml: the best under "
    "shift among trials within --clean-tolerance of the best clean accuracy)"
)


def register(app: typer.Typer) -> None:
    for command in (sweep, runs):
        app.command()(command)


def sweep(
    space: Path = typer.Option(
        ..., help="YAML of config keys with ranges {low, high[, log, step]} or {choices: [...]}"
    ),
    out: Path = typer.Option(
        ...,
        help="sweep folder: study.db, trials/<n>/ (one run each), best.yaml, trials.csv, plots/",
        callback=folder_out,
    ),
    config: str | None = typer.Option(
        None,
        help="base config: YAML file or shipped recipe (default: the default recipe); the space's keys vary over it",
    ),
    data: Path | None = typer.Option(None, help="dataset root or manifest (overrides the config's data)"),
    trials: int = typer.Option(..., min=1, help="trials in the study in total, across every process sharing it"),
    objective: str = typer.Option("val_loss", help=OBJECTIVE_HELP),
    cv: int = typer.Option(3, min=2, help="folds of --objective cv_accuracy"),
    storage: str | None = typer.Option(
        None,
        help="Optuna RDB storage URL (default: sqlite:///OUT/study.db); a "
        "PostgreSQL URL lets several machines share the sweep",
    ),
    study_name: str = typer.Option("cxr-sweep", help="study name in the storage"),
    seed: int = typer.Option(0, help="TPE sampler seed (trial n samples with seed + n)"),
    prune: bool = typer.Option(True, "--prune/--no-prune", help="median pruning on the per-epoch validation metric"),
    heartbeat: int = typer.Option(
        60,
        min=1,
        help="seconds between a trial's heartbeats; a trial silent for twice "
        "this long (its process killed) is failed and retried",
    ),
    track: bool = typer.Option(False, "--track", help="log every trial to MLflow (default store OUT/mlflow.db)"),
    clean_tolerance: float = typer.Option(
        0.01,
        min=0,
        max=1,
        help="--objective val_stressed: trials whose clean "
        "validation accuracy is this far (or one film) below the best may win on "
        "their accuracy under shift",
    ),
) -> None:
    """Search config keys with Optuna (TPE, median pruning); rerun the same command to resume a killed sweep, or
    start it in several processes on one --storage to share the trials. The test split is never read: trials are
    judged on validation or on cross-validation of the train split; `cxr evaluate` the best run's test afterwards."""
    from cxr.config import build_config
    from cxr.training.space import load_space
    from cxr.training.sweep import SweepPlan, run_sweep

    base = build_config(config, {"data": data, "track": track or None})
    plan = SweepPlan(
        base=base,
        params=load_space(space, base),
        out=out,
        trials=trials,
        objective=objective,
        storage=storage,
        study_name=study_name,
        seed=seed,
        cv_folds=cv,
        prune=prune,
        heartbeat=heartbeat,
        clean_tolerance=clean_tolerance,
    )
    s = run_sweep(plan)
    console.print(
        f"[green]sweep[/] {out}: {s['complete']} complete, {s['pruned']} pruned, {s['fail']} failed of "
        f"{s['trials']} trials ({s['ran_here']} run by this process in {s['seconds_here']} s)"
    )
    if "rule" in s:
        console.print(f"chosen by rule: {s['rule']}")
    if "best_value" in s:
        console.print(f"best: trial {s['best_trial']}, {s['objective']} {s['best_value']:.4f}, {s['best_params']}")
        console.print(
            f"wrote {out / 'best.yaml'} (train it: cxr train --config {out / 'best.yaml'}), "
            f"{out / 'trials.csv'}, {', '.join(s['plots'])}"
        )


def runs(
    folders: list[Path] = typer.Argument(..., help="folders searched (recursively) for finished runs"),
    sort: str = typer.Option(
        "test.accuracy", help="column to rank by: val.accuracy | val.auc | test.accuracy | test.auc | seconds | date"
    ),
    format: str = typer.Option("table", "--format", help="table | csv | markdown | json"),
) -> None:
    """Leaderboard of finished runs: figures with intervals from each run's metrics.json and config.yaml. Runs on
    other data, or evaluated on another split, are ranked in their own group, never against each other."""
    from cxr.evaluation.leaderboard import collect_runs, render

    rows = collect_runs(folders, sort)
    text = render(rows, format)
    if text is None:
        from cxr.evaluation.leaderboard import table

        print_table(table(rows, sort))
    else:
        console.out(text, highlight=False)
