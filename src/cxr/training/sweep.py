"""`cxr sweep`: an Optuna study over config keys, each trial an ordinary run directory under DIR/trials/.

The study lives in an RDB storage (SQLite file DIR/study.db by default, a PostgreSQL URL for several machines), so a
sweep killed outright resumes with the same command, and several processes on one storage share the work: `trials`
counts the study's finished, pruned and running trials, checked before each new one. A process killed in a trial
stops its heartbeat; the next process to start a trial marks it failed and retries its parameters in the same run
directory (continuing from its last checkpoint). TPE is seeded per trial number (seed + number), so runs of the same
sweep sample the same points and two processes never draw the same random start.

The test split is never read: objectives are the validation split's figures, the same films under the acquisition-shift
battery (`val_stressed`, cxr.evaluation.stress), or nested cross-validation of the train split (`cv_accuracy`, through
`cxr train --cv`). A space of choices only (named candidates, say) is a grid: each combination runs once.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from pydantic import ValidationError

from cxr.extras import require

try:
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
    from optuna.trial import TrialState
except ImportError:  # cxr[sweep] not installed: one line naming it (cxr.extras), else the error as it is
    require("sweep")
    raise

from cxr.atomic import write_text_atomic
from cxr.config import TrainConfig, format_validation_error, saved_values, trained_as, what_it_trains
from cxr.errors import CxrError
from cxr.evaluation.evaluate import evaluate_run
from cxr.evaluation.oof import CV_FILE
from cxr.evaluation.stress import export_for_stress, run_stress
from cxr.inference.bundle import BUNDLE_FILE
from cxr.rundir import PLOTS, RunDir
from cxr.tracking import check_tracking, tracking_uri
from cxr.training.cv import cross_validate, pooled_files
from cxr.training.prepare import load_config_data
from cxr.training.run_folder import resumable
from cxr.training.space import CANDIDATES_KEY, Param, apply_params, expand
from cxr.training.train import tracking, train

log = logging.getLogger("cxr")
# heartbeats, stale-trial retries and the matplotlib plots are marked experimental by Optuna; the warning is noise here
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# objective -> (direction, the per-epoch metric Lightning logs for pruning; None: no per-epoch value)
OBJECTIVES = {
    "val_loss": ("minimize", "val_loss"),
    "val_accuracy": ("maximize", "val_acc"),
    "val_auc": ("maximize", "val_auc"),
    "cv_accuracy": ("maximize", None),
    "val_stressed": ("maximize", None),  # mean validation accuracy under the shift battery; best.yaml: ROBUST_RULE
}
ROBUST_RULE = (
    "the highest mean validation accuracy under the shift battery among the trials whose clean validation "
    "accuracy is within {tol} (or one validation film, whichever is more) of the best clean one"
)
SETTLED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what counts towards `trials`
STUDY_FILE = "study.db"
OPEN_TRIES = 5  # opening a new storage that another process is creating at the same moment: tries, 0.2 s apart and more


@dataclass
class SweepPlan:
    base: TrainConfig
    params: list[Param]
    out: Path
    trials: int
    objective: str = "val_loss"
    storage: str | None = None
    study_name: str = "cxr-sweep"
    seed: int = 0
    cv_folds: int = 3
    prune: bool = True
    heartbeat: int = 60
    clean_tolerance: float = 0.01  # val_stressed: how far below the best clean accuracy a trial may be and still win

    @property
    def is_grid(self) -> bool:
        """Choices only: every combination once (Optuna's GridSampler) rather than TPE's draws."""
        return all(p.choices is not None for p in self.params)

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.params) if self.is_grid else 0

    @property
    def storage_url(self) -> str:
        if self.storage and self.storage.startswith("postgresql://"):  # as docs/sweeps-and-tracking.md writes it
            # SQLAlchemy reads a bare postgresql:// as psycopg2, which cxr does not install; psycopg 3 it does
            return "postgresql+psycopg://" + self.storage.removeprefix("postgresql://")
        return self.storage or f"sqlite:///{self.out.resolve() / STUDY_FILE}"


class PruneTrial(L.Callback):
    """Report the objective's validation metric to Optuna each epoch; stop a trial the median pruner gives up on.

    Hand-written: optuna-integration's PyTorchLightningPruningCallback makes the same two calls (report,
    should_prune) but would be one more dependency to install and keep in step with Lightning.
    """

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.monitor} {float(value):.4f}")


def check_objective(plan: SweepPlan) -> None:
    """Refuse, before any trial, an objective the data or the config cannot give."""
    if plan.objective not in OBJECTIVES:
        raise CxrError(f"--objective {plan.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if plan.is_grid and plan.trials > plan.grid_size:
        raise CxrError(
            f"the space is a grid of {plan.grid_size} combinations (choices only); pass --trials "
            f"{plan.grid_size} or fewer, or give a key a range"
        )
    refit = plan.base.refit or any(p.key == "refit" and True in (p.choices or ()) for p in plan.params)
    if plan.objective != "cv_accuracy" and refit:
        raise CxrError(
            f"--objective {plan.objective} needs a validation split, but refit: true trains on it; use "
            "--objective cv_accuracy or drop refit"
        )
    if plan.objective == "cv_accuracy":
        classes, files, _ = pooled_files(plan.base)
        counts = np.bincount(files.labels, minlength=len(classes))
        if counts.min() < plan.cv_folds:
            raise CxrError(
                f"--objective cv_accuracy needs {plan.cv_folds} images of each class in the train split "
                f"(one per fold); {classes[int(counts.argmin())]!r} has {counts.min()}: pass --cv with "
                "fewer folds or use a validation objective"
            )
    else:
        load_config_data(plan.base)  # a missing or malformed dataset fails now, with its own one-line error


def _sampler(seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed)


def _study_sampler(plan: SweepPlan) -> optuna.samplers.BaseSampler:
    if plan.is_grid:
        return optuna.samplers.GridSampler({p.key: list(p.choices) for p in plan.params}, seed=plan.seed)
    return _sampler(plan.seed)


def _describe(plan: SweepPlan) -> dict[str, Any]:
    """What makes two invocations the same sweep: a resumed study must not silently change its question."""
    base = what_it_trains(plan.base.to_yaml_dict())
    return {
        "objective": plan.objective,
        "cv_folds": plan.cv_folds,
        "base": base,
        "space": [vars(p) | {"choices": list(p.choices) if p.choices else None} for p in plan.params],
    }


def open_study(plan: SweepPlan) -> optuna.Study:
    """Create or load (same command: resume) the study; one that asks another question is refused."""
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.storage_url.startswith("postgresql+psycopg"):
        require("pg", "psycopg")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's error reaches the user once, as cxr prints it
    for attempt in range(OPEN_TRIES):
        try:
            storage = RDBStorage(
                plan.storage_url,
                heartbeat_interval=plan.heartbeat,
                grace_period=2 * plan.heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
            break
        except Exception as e:  # SQLAlchemy's errors for a bad URL or an unreachable server
            if _lost_creation_race(e) and attempt + 1 < OPEN_TRIES:
                time.sleep(0.2 * (attempt + 1))  # the other process's tables are committed by now, or soon
                continue
            raise CxrError(
                f"--storage {plan.storage_url!r} cannot be opened ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:160]})"
            ) from None
    direction = OBJECTIVES[plan.objective][0]
    median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)  # after 3 trials, from epoch 2 on
    pruner = median if plan.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name,
        direction=direction,
        sampler=_study_sampler(plan),
        pruner=pruner,
        load_if_exists=True,
    )
    described = json.loads(json.dumps(_describe(plan), default=str))
    stored = study.user_attrs.get("sweep")
    if stored is None:
        study.set_user_attr("sweep", described)
    elif (asked := _same_question(stored)) != described:
        changed = sorted(k for k in described if asked.get(k) != described[k])
        raise CxrError(
            f"study {plan.study_name!r} in {plan.storage_url} was started with another "
            f"{', '.join(changed)}; "
            "rerun it with the same --config, --space and --objective, or choose another --out / "
            "--study-name"
        )
    return study


def _lost_creation_race(e: Exception) -> bool:
    """Several processes started at once on a new storage each create its tables (Optuna's RDBStorage: create_all,
    then one version row): the one that loses gets "table ... already exists" (SQLite, PostgreSQL) or a unique
    violation (PostgreSQL's enum types, the version row); opened again, it finds them made."""
    from sqlalchemy.exc import IntegrityError

    return isinstance(e, IntegrityError) or "already exists" in str(e)


def settled(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=SETTLED))


def settled_grid_points(study: optuna.Study, plan: SweepPlan) -> int:
    """Distinct grid points done or running. A point whose every trial failed (its process was killed) is queued
    again, in its folder: Optuna's GridSampler counts a failed point as visited and would repeat a finished one."""
    trials = study.get_trials(deepcopy=False)
    covered = {grid_point(plan, t.params) for t in trials if t.state in SETTLED}
    queued = {grid_point(plan, t.system_attrs.get("fixed_params", {})) for t in trials if t.state == TrialState.WAITING}
    for t in trials:
        if t.state == TrialState.FAIL and grid_point(plan, t.params) not in covered | queued:
            study.enqueue_trial(t.params, user_attrs={"run": t.user_attrs["run"]} if "run" in t.user_attrs else None)
            queued.add(grid_point(plan, t.params))
    return len(covered)


def grid_point(plan: SweepPlan, params: dict[str, Any]) -> tuple:
    """A trial's point of the grid: its value of each searched key."""
    return tuple(params.get(p.key) for p in plan.params)


def trial_config(plan: SweepPlan, values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(apply_params(plan.base.given_values(), expand(plan.params, values)))
    except ValidationError as e:  # a combination the space's per-key checks could not see (sampling + class_weight)
        raise CxrError(format_validation_error(e, f"trial parameters {values}")) from None


class SurplusTrial(Exception):
    """Another process started the study's last trial (or this grid point) first: this one ends before training."""


def surplus(trial: optuna.Trial, plan: SweepPlan, values: dict[str, Any]) -> bool:
    """Two processes can both see one trial left and both start one. Trial numbers are handed out by the storage in
    order, so the later of the two is the one over: `trials` settled before it, or its grid point already taken."""
    earlier = [t for t in trial.study.get_trials(deepcopy=False, states=SETTLED) if t.number < trial.number]
    if plan.is_grid:
        return any(grid_point(plan, t.params) == grid_point(plan, values) for t in earlier)
    return len(earlier) >= plan.trials


def _objective(plan: SweepPlan):
    def run_trial(trial: optuna.Trial) -> float:
        if not plan.is_grid:
            trial.study.sampler = _sampler(plan.seed + trial.number)
        values = {p.key: p.suggest(trial) for p in plan.params}
        if surplus(trial, plan, values):
            trial.set_user_attr("surplus", "another process started this study's last trial or point first")
            raise SurplusTrial(f"trial {trial.number}: {values} is over the study's {plan.trials}; not run")
        cfg = trial_config(plan, values)
        name = trial.user_attrs.get("run") or _run_name(trial.number, values)  # a retry keeps the killed trial's
        trial.set_user_attr("run", name)
        run = plan.out / "trials" / name
        log.info("trial %d: %s -> %s", trial.number, values, run)
        if plan.objective == "cv_accuracy":
            return _cv_accuracy(cfg, run, plan.cv_folds)
        if (run / BUNDLE_FILE).is_file():
            _check_finished_run(run, cfg)
        else:
            monitor = OBJECTIVES[plan.objective][1]
            single = cfg.ensemble == 1 and not cfg.refit
            callbacks = [PruneTrial(trial, monitor)] if plan.prune and single and monitor else []
            started = resumable(run)
            train(cfg, run, resume=started, overwrite=not started, callbacks=callbacks)
        if plan.objective == "val_stressed":
            return _stressed_score(trial, run)
        return validation_score(run, plan.objective)

    return run_trial


def _run_name(number: int, values: dict[str, Any]) -> str:
    """A named candidate's trial folder is its name (plus any other choices), so that it reads in `cxr runs`."""
    if CANDIDATES_KEY not in values:
        return f"{number:03d}"
    others = [f"{k.rpartition('.')[2]}{v}" for k, v in values.items() if k != CANDIDATES_KEY]
    return "-".join([str(values[CANDIDATES_KEY]), *others]).replace("/", "_")


def _same_question(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored study description as _describe now writes it (studies begun with relative paths stay resumable)."""
    return stored | {"base": what_it_trains(stored.get("base") or {})}


def _check_finished_run(run: Path, cfg: TrainConfig) -> None:
    """A trial folder that already holds a bundle (a resumed sweep, a run copied in) must be this trial's config."""
    if not trained_as(run, cfg):
        raise CxrError(f"{run} holds a finished run of another config; remove it or choose another --out")


def _stressed_score(trial: optuna.Trial, run: Path) -> float:
    """Clean validation accuracy (kept as a user attribute) and the mean under the shift battery (the value)."""

    evaluate_run(run, "val", n_bootstrap=0)  # sensitivity, specificity, AUC beside the rule's figures
    if torch.cuda.is_available():  # the battery's forward passes on the GPU the trial trained on
        section = run_stress(run, "val", backend="torch", device="cuda")
    else:  # on CPU, ONNX Runtime is several times faster than PyTorch
        export_for_stress(run)
        section = run_stress(run, "val")
    summary = section["summary"]
    trial.set_user_attr("clean_accuracy", summary["clean_accuracy"])
    trial.set_user_attr("n_val", section["n"])
    trial.set_user_attr("worst_shift", summary["worst_shift"]["shift"])
    trial.set_user_attr("worst_shift_accuracy", summary["worst_shift"]["mean_accuracy"])
    return float(summary["mean_accuracy"])


def robust_choice(trials: list[optuna.trial.FrozenTrial], tolerance: float) -> optuna.trial.FrozenTrial:
    """ROBUST_RULE: near-best clean validation accuracy first, then the best under shift (ties: better clean).

    `seed` is a replicate, not a choice: trials that differ only in it are one candidate, scored by their means; the
    candidate's earliest trial stands for it in best.yaml.
    """
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        key = json.dumps({k: v for k, v in sorted(t.params.items()) if k != "seed"}, default=str)
        groups.setdefault(key, []).append(t)
    scored = [
        (
            float(np.mean([t.user_attrs["clean_accuracy"] for t in g])),
            float(np.mean([t.value for t in g])),
            min(g, key=lambda t: t.number),
        )
        for g in groups.values()
    ]
    best_clean = max(clean for clean, _, _ in scored)
    margin = max(tolerance, max(1.0 / t.user_attrs["n_val"] for t in trials)) + 1e-9
    eligible = [s for s in scored if s[0] >= best_clean - margin]
    return max(eligible, key=lambda s: (s[1], s[0], -s[2].number))[2]


def _cv_accuracy(cfg: TrainConfig, run: Path, folds: int) -> float:

    if (run / CV_FILE).is_file():
        return float(json.loads((run / CV_FILE).read_text())["accuracy"])
    started = RunDir(run).folds.is_dir()
    return float(cross_validate(cfg, run, folds, resume=started, overwrite=not started)["accuracy"])


def validation_score(run: Path, objective: str) -> float:
    """The finished run's figure on its validation split (calibrated bundle; loss = log loss of its probabilities)."""
    from sklearn.metrics import log_loss

    metrics = evaluate_run(run, "val", n_bootstrap=0)
    if objective == "val_accuracy":
        return float(metrics["accuracy"])
    if objective == "val_auc":
        if metrics["roc_auc"] is None:
            raise CxrError(
                f"{run}: validation AUC is undefined (a class is missing from val); use --objective val_loss"
            )
        return float(metrics["roc_auc"])
    pd = require("sweep", "pandas")
    rows = pd.read_csv(RunDir(run).predictions("val"))
    classes = metrics["classes"]
    probs = rows[[f"p_{c}" for c in classes]].to_numpy()
    probs = probs / probs.sum(axis=1, keepdims=True)  # the CSV rounds to 6 decimals: rows sum to 1 within 1e-5
    return float(log_loss([classes.index(c) for c in rows["label"]], probs, labels=list(range(len(classes)))))


def run_sweep(plan: SweepPlan) -> dict[str, Any]:
    """Run trials until the study holds `plan.trials` settled ones, then write best.yaml, trials.csv and plots."""
    check_objective(plan)
    require("sweep")  # optuna and pandas (trials.csv), before any trial
    if plan.base.track:
        uri = tracking_uri(plan.base, plan.out / "trials")  # default: sqlite:///OUT/mlflow.db, one store per sweep
        plan.base = plan.base.model_copy(update={"tracking_uri": uri})
        check_tracking(uri)
    study = open_study(plan)
    objective = _objective(plan)
    t0 = time.perf_counter()
    ours: list[optuna.trial.FrozenTrial] = []  # the trials this process ran

    with tracking(plan.base, plan.out, "sweep"):  # with track: one MLflow parent run, each trial a child
        while True:
            fail_stale_trials(study)  # a killed process's trial: failed, its parameters queued again (retry callback)
            done = settled_grid_points(study, plan) if plan.is_grid else settled(study)
            if done >= plan.trials:
                break
            # a surplus trial is recorded as failed and not counted
            study.optimize(objective, n_trials=1, catch=(SurplusTrial,), callbacks=[lambda _, t: ours.append(t)])
        summary = write_results(study, plan)
    ran = sum("surplus" not in t.user_attrs for t in ours)
    summary.update(ran_here=ran, seconds_here=round(time.perf_counter() - t0, 1))
    return summary


def write_results(study: optuna.Study, plan: SweepPlan) -> dict[str, Any]:
    """DIR/trials.csv, DIR/best.yaml (a config `cxr train --config` takes) and DIR/plots/ from the study's trials."""
    trials = study.get_trials(deepcopy=False)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    write_text_atomic(plan.out / "trials.csv", frame.to_csv(index=False))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "objective": plan.objective,
        "direction": OBJECTIVES[plan.objective][0],
        "trials": len(trials),
        **{state.name.lower(): sum(t.state == state for t in trials) for state in TrialState},
    }
    if not complete:
        return summary
    if plan.objective == "val_stressed":
        best = robust_choice(complete, plan.clean_tolerance)
        summary["rule"] = ROBUST_RULE.format(tol=plan.clean_tolerance)
    else:
        best = study.best_trial
    best_cfg = trial_config(plan, best.params).model_copy(update={"track": plan.base.track})
    text = f"# cxr sweep: trial {best.number}, {plan.objective} {best.value:.4f} ({best.user_attrs.get('run')})\n"
    write_text_atomic(plan.out / "best.yaml", text + yaml.safe_dump(saved_values(best_cfg), sort_keys=False))
    summary.update(
        best_trial=best.number,
        best_value=best.value,
        best_params=best.params,
        best_run=str(plan.out / "trials" / best.user_attrs.get("run", "")),
        plots=_plots(study, plan.out),
    )
    return summary


def _plots(study: optuna.Study, out: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances, rendered with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    written = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    varied = any(len({json.dumps(t.params.get(k), default=str) for t in complete}) > 1 for k in study.best_params)
    plots = [("optimization_history", ov.plot_optimization_history)]
    if len(complete) >= 2 and varied and all(math.isfinite(t.value) for t in complete):
        plots.append(("param_importances", ov.plot_param_importances))
    (out / PLOTS).mkdir(exist_ok=True)  # the sweep's own plots, named as a run's
    for name, plot in plots:
        ax = plot(study)
        fig = ax.figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        path = out / PLOTS / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written
