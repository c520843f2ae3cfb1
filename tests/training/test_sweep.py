"""`cxr sweep`: trials are ordinary runs judged on validation only; the study resumes after kill -9, is shared by
processes on one storage, and refuses bad input before any training."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from cxr.config import build_config
from cxr.errors import CxrError
from cxr.inference.bundle import BUNDLE_FILE
from cxr.training.space import load_space
from cxr.training.sweep import PruneTrial, SweepPlan, _check_finished_run, open_study, robust_choice, run_sweep
from cxr.training.train import train
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.conftest import make_class_folders
from tests.pg import postgres_server, postgres_url  # noqa: F401 (fixtures)

BASE = {"image_size": 32, "epochs": 2, "batch_size": 8, "num_workers": 0, "precision": "32", "lr": 3e-3}
SPACE = "lr: {low: 1.0e-3, high: 1.0e-2, log: true}\naugment.mixup: {choices: [0.0, 0.2]}\n"


@pytest.fixture
def sweep_files(tmp_path):
    """A tiny dataset whose test split cannot be read (a corrupt image), a base config and a two-key space."""
    data = make_class_folders(tmp_path / "data", n_train=8, n_test=2, size=32)
    (data / "test" / "normal" / "img000.png").write_bytes(b"not a png")  # a sweep that read test would skip or fail
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "data": str(data)}))
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path


def _plan(root: Path, trials: int, **kw) -> SweepPlan:
    base = build_config(root / "base.yaml")
    return SweepPlan(base=base, params=load_space(root / "space.yaml", base), out=root / "sweep", trials=trials, **kw)


def _sweep_args(root: Path, trials: int, *extra) -> list:
    return [
        "sweep",
        "--config",
        root / "base.yaml",
        "--space",
        root / "space.yaml",
        "--trials",
        trials,
        "--out",
        root / "sweep",
        "--heartbeat",
        1,
        *extra,
    ]


def _states(root: Path, **kw) -> list[str]:
    study = optuna.load_study(study_name="cxr-sweep", storage=f"sqlite:///{root / 'sweep' / 'study.db'}")
    return [t.state.name for t in study.trials]


def test_bad_sweeps_are_one_line_errors_before_any_training(sweep_files, tmp_path, capsys, monkeypatch):
    root = sweep_files
    (root / "unknown.yaml").write_text("lrate: {low: 0.001, high: 0.01}\n")
    (root / "reversed.yaml").write_text("lr: {low: 0.01, high: 0.001}\n")
    (root / "refit.yaml").write_text(yaml.safe_dump({**BASE, "data": str(root / "data"), "refit": True}))
    small = make_class_folders(tmp_path / "small", n_train=2, n_test=1, size=16)
    unreachable = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens on the discard port
    cases = [
        (
            _sweep_args(root, 2)[:4] + [root / "unknown.yaml", *_sweep_args(root, 2)[5:]],
            ["unknown config key 'lrate'"],
            {},
        ),
        (
            _sweep_args(root, 2)[:4] + [root / "reversed.yaml", *_sweep_args(root, 2)[5:]],
            ["low 0.01 is above high"],
            {},
        ),
        (
            _sweep_args(root, 2, "--objective", "cv_accuracy", "--cv", 3, "--data", small),
            ["cv_accuracy needs 3 images of each class", "has 2"],
            {},
        ),
        (["sweep", "--config", root / "refit.yaml", *_sweep_args(root, 2)[3:]], ["needs a validation split"], {}),
        (_sweep_args(root, 2, "--objective", "test_accuracy"), ["--objective 'test_accuracy'"], {}),
        (_sweep_args(root, 2, "--storage", f"sqlite:///{root / 'base.yaml' / 'study.db'}"), ["cannot be opened"], {}),
        (_sweep_args(root, 2, "--track"), ["MLflow tracking URI 'http://127.0.0.1:9' cannot be reached"], unreachable),
    ]
    for args, fragments, env in cases:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *args), *fragments)
        assert not (root / "sweep" / "trials").exists()


def test_a_resumed_study_must_ask_the_same_question(sweep_files):
    open_study(_plan(sweep_files, 2))
    open_study(_plan(sweep_files, 5))  # more trials: the same sweep, continued
    with pytest.raises(Exception, match="was started with another objective"):
        open_study(_plan(sweep_files, 2, objective="val_accuracy"))


def test_pruning_callback_stops_a_trial_the_pruner_gives_up_on(tiny_dataset, tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any positive loss prunes
    trial = study.ask()
    cfg = build_config(None, {**BASE, "data": tiny_dataset, "epochs": 3})
    with pytest.raises(optuna.TrialPruned, match="epoch 0: val_loss"):
        train(cfg, tmp_path / "run", callbacks=[PruneTrial(trial, "val_loss")])
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert list(study.trials[0].intermediate_values) == [0]  # reported once, then stopped: no epoch 1
    assert study.trials[0].intermediate_values[0] > 0


def test_a_stale_trial_is_retried_in_its_own_run_folder_and_test_is_never_read(sweep_files, monkeypatch):
    """The fast form of the kill -9 test: a trial left RUNNING by a dead process (its heartbeat stopped). Tracked:
    the sweep is an MLflow parent run, the trial its child."""
    plan = _plan(sweep_files, 2, heartbeat=1)
    plan.base = plan.base.model_copy(update={"track": True})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = open_study(plan)
    dist = optuna.distributions
    study.add_trial(
        optuna.create_trial(
            params={"lr": 0.002, "augment.mixup": 0.0},
            value=0.5,
            distributions={
                "lr": dist.FloatDistribution(1e-3, 1e-2, log=True),
                "augment.mixup": dist.CategoricalDistribution([0.0, 0.2]),
            },
        )
    )
    dead = study.ask()
    dead_params = {p.key: p.suggest(dead) for p in plan.params}
    dead.set_user_attr("run", "001")
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # longer than the grace period (2 heartbeats)

    summary = run_sweep(plan)
    assert summary["complete"] == 2 and summary["fail"] == 1 and summary["ran_here"] == 1
    retry = [
        t
        for t in optuna.load_study(study_name="cxr-sweep", storage=plan.storage_url).trials
        if t.state.name == "COMPLETE" and t.number == 2
    ][0]
    assert retry.params == dead_params and retry.user_attrs["run"] == "001"
    run = sweep_files / "sweep" / "trials" / "001"
    assert (run / BUNDLE_FILE).is_file() and "test" not in json.loads((run / "metrics.json").read_text())
    assert (sweep_files / "sweep" / "best.yaml").is_file() and (sweep_files / "sweep" / "trials.csv").is_file()

    from mlflow import MlflowClient

    parent = json.loads((sweep_files / "sweep" / "mlflow.json").read_text())
    assert parent["uri"] == f"sqlite:///{(sweep_files / 'sweep' / 'mlflow.db').resolve()}"
    client = MlflowClient(parent["uri"])
    assert {"best.yaml", "trials.csv", "plots"} <= {a.path for a in client.list_artifacts(parent["run_id"])}
    experiment = client.get_run(parent["run_id"]).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'")
    assert [r.info.run_name for r in children] == ["001"] and children[0].data.params["lr"] == str(dead_params["lr"])


def _start(root: Path, trials: int, *extra) -> subprocess.Popen:
    args = [sys.executable, "-m", "cxr.cli", *map(str, _sweep_args(root, trials, *extra))]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sweep_survives_kill_9_resumes_to_3_trials_and_best_yaml_trains(sweep_files, capsys, monkeypatch):
    root = sweep_files
    proc = _start(root, 3)
    second = root / "sweep" / "trials" / "001" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not second.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup runs: trial 1 stays RUNNING in the study
    proc.wait()
    assert _states(root) == ["COMPLETE", "RUNNING"]
    time.sleep(2.5)  # the dead trial's heartbeat is now stale

    cli = run_cli_inprocess(capsys, monkeypatch, *_sweep_args(root, 3))  # the same command resumes
    assert cli.returncode == 0, cli.stderr
    assert _states(root) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    rows = [line.split(",") for line in (root / "sweep" / "trials.csv").read_text().splitlines()[1:]]
    assert rows[2][3:6] == rows[1][3:6]  # trial 2 retried the killed trial 1: its parameters, in its folder 001
    assert sorted(os.listdir(root / "sweep" / "trials")) == ["000", "001", "003"]
    assert (root / "sweep" / "trials" / "001" / BUNDLE_FILE).is_file()
    assert (root / "sweep" / "plots" / "optimization_history.png").stat().st_size > 1000

    best = yaml.safe_load((root / "sweep" / "best.yaml").read_text())
    best_row = min((r for r in rows if r[2] == "COMPLETE"), key=lambda r: float(r[1]))
    assert best["lr"] == pytest.approx(float(best_row[4])) and best["augment"]["mixup"] == float(best_row[3])
    cli = run_cli_inprocess(
        capsys,
        monkeypatch,
        "train",
        "--config",
        root / "sweep" / "best.yaml",
        "--epochs",
        1,
        "--out",
        root / "best-run",
    )
    assert cli.returncode == 0, cli.stderr
    assert (root / "best-run" / BUNDLE_FILE).is_file()


@pytest.mark.slow
def test_two_processes_on_one_storage_share_4_trials(sweep_files):
    procs = [_start(sweep_files, 4, "--no-prune"), _start(sweep_files, 4, "--no-prune")]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ran = [int(out.split(" run by this process")[0].rsplit("(", 1)[1]) for out, _ in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, ran
    study = optuna.load_study(study_name="cxr-sweep", storage=f"sqlite:///{sweep_files / 'sweep' / 'study.db'}")
    run = [t for t in study.trials if "surplus" not in t.user_attrs]  # both may start a last one: one ends at once
    assert [t.state.name for t in run] == ["COMPLETE"] * 4 and len(study.trials) <= 5
    assert all(t.state.name == "FAIL" for t in study.trials if t not in run)
    runs = [t.user_attrs["run"] for t in run]
    assert sorted(runs) == ["000", "001", "002", "003"]  # no trial run twice
    assert len({(t.params["lr"], t.params["augment.mixup"]) for t in run}) == 4  # nor the same point


def test_a_worker_that_loses_the_race_to_create_a_new_storage_opens_it_again(sweep_files, monkeypatch):
    """Workers started at the same moment on a new storage each create its tables; the loser's "already exists" or
    unique violation (two processes hit it on SQLite and on PostgreSQL alike) is no reason to give up: it opens the
    storage again. Any other error is still the one-line "cannot be opened"."""
    import sqlalchemy.exc

    from cxr.training import sweep

    real, calls = sweep.RDBStorage, []

    def losing(*args, **kw):
        calls.append(args[0])
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        if len(calls) == 2:
            raise sqlalchemy.exc.IntegrityError("CREATE TYPE studydirection", {}, Exception("duplicate key value"))
        return real(*args, **kw)

    monkeypatch.setattr(sweep, "RDBStorage", losing)
    assert open_study(_plan(sweep_files, 2)).study_name == "cxr-sweep" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(
        sweep, "RDBStorage", lambda *a, **kw: calls.append(1) or real("postgresql://nobody@127.0.0.1:9/x")
    )
    with pytest.raises(CxrError, match="cannot be opened"):
        open_study(_plan(sweep_files, 2))
    assert len(calls) == 1  # refused at once, not retried


# `cxr sweep` as the command line runs it, each trial held at its start until the other worker has started its trial
# of the same round: the two workers overlap on every round, as two machines would, and neither can run the whole
# study before the other is up (the imports alone take seconds). The marks (round-pid-trial) record who ran what.
PAIRED_WORKER = """
import os, sys, time
from pathlib import Path

import cxr.training.sweep as sweep
from cxr.cli import app

marks, made = Path(sys.argv[1]), sweep._objective


def paired(plan):
    run_trial, rounds = made(plan), iter(range(1000))

    def trial(t):
        k = next(rounds)
        (marks / f"{k}-{os.getpid()}-{t.number}").touch()
        deadline = time.monotonic() + 120
        while len(list(marks.glob(f"{k}-*"))) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"round {k}: the other worker never started a trial")
            time.sleep(0.02)
        return run_trial(t)

    return trial


sweep._objective = paired
sys.argv = ["cxr", *sys.argv[2:]]
app()
"""
GRID = {"lr": [0.001, 0.003], "augment.mixup": [0.0, 0.2]}


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_workers_on_one_storage_run_each_grid_point_once(sweep_files, storage, request):
    """Two `cxr sweep` processes on one study (the default SQLite file; a PostgreSQL database, as for several
    machines) share a grid of 4: each point and each trial number runs once, 2 by each worker, 4 in all."""
    root = sweep_files
    (root / "base.yaml").write_text(yaml.safe_dump({**BASE, "epochs": 1, "data": str(root / "data")}))
    (root / "space.yaml").write_text(yaml.safe_dump(GRID))
    url = f"sqlite:///{(root / 'sweep').resolve() / 'study.db'}"
    extra = []
    if storage == "postgresql":
        url = request.getfixturevalue("postgres_url")  # skipped, with the reason, when PostgreSQL is not installed
        extra = ["--storage", url.replace("postgresql+psycopg://", "postgresql://")]  # as the docs write it
    marks = root / "marks"
    marks.mkdir()
    args = [
        "sweep",
        "--config",
        root / "base.yaml",
        "--space",
        root / "space.yaml",
        "--trials",
        4,
        "--objective",
        "val_accuracy",
        "--no-prune",
        "--out",
        root / "sweep",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two workers on a small machine: one thread each
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PAIRED_WORKER, marks, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outputs]
    ran = [int(re.search(r"\((\d+) run by this process", out).group(1)) for out, _ in outputs]
    assert ran == [2, 2], outputs

    trials = optuna.load_study(study_name="cxr-sweep", storage=url).trials
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(4)]
    points = sorted((t.params["lr"], t.params["augment.mixup"]) for t in trials)
    assert points == [(lr, mixup) for lr in GRID["lr"] for mixup in GRID["augment.mixup"]]  # each point once
    runs = sorted(t.user_attrs["run"] for t in trials)
    assert runs == ["000", "001", "002", "003"] == sorted(os.listdir(root / "sweep" / "trials"))
    assert all((root / "sweep" / "trials" / r / BUNDLE_FILE).is_file() for r in runs)
    by_worker: dict[str, list[int]] = {}
    for mark in os.listdir(marks):
        _, pid, number = mark.split("-")
        by_worker.setdefault(pid, []).append(int(number))
    assert sorted(n for numbers in by_worker.values() for n in numbers) == [0, 1, 2, 3]  # no trial run twice
    assert sorted(len(numbers) for numbers in by_worker.values()) == [2, 2] and len(by_worker) == 2
    best = yaml.safe_load((root / "sweep" / "best.yaml").read_text())
    assert (best["lr"], best["augment"]["mixup"]) in points and best["epochs"] == 1


def test_named_candidates_run_once_each_and_the_robust_rule_picks_best_yaml(sweep_files):
    """A grid of two named candidates judged on clean and shifted validation films; test is never read."""
    root = sweep_files
    (root / "space.yaml").write_text("candidates:\n  recipe: {}\n  noisy: {augment.noise: 0.1, augment.blur: 1.0}\n")
    with pytest.raises(CxrError, match="grid of 2 combinations"):
        run_sweep(_plan(root, 3, objective="val_stressed"))
    summary = run_sweep(_plan(root, 2, objective="val_stressed"))
    assert summary["complete"] == 2 and "rule" in summary
    runs = sorted(p.name for p in (root / "sweep" / "trials").iterdir())
    assert runs == ["noisy", "recipe"]  # each candidate once, its folder named after it
    study = optuna.load_study(study_name="cxr-sweep", storage=f"sqlite:///{root / 'sweep' / 'study.db'}")
    for t in study.trials:
        stress = json.loads((root / "sweep" / "trials" / t.user_attrs["run"] / "metrics.json").read_text())["val"]
        assert t.value == pytest.approx(stress["stress"]["summary"]["mean_accuracy"])
        assert t.user_attrs["clean_accuracy"] == pytest.approx(stress["stress"]["clean"]["accuracy"])
    chosen = robust_choice(study.trials, 0.01)
    best = yaml.safe_load((root / "sweep" / "best.yaml").read_text())
    assert best["augment"]["noise"] == (0.1 if chosen.params["candidates"] == "noisy" else 0.0)
    frame = (root / "sweep" / "trials.csv").read_text()
    assert "user_attrs_clean_accuracy" in frame and "user_attrs_worst_shift" in frame
    # a finished trial folder that holds another config is refused, not silently reused
    cfg = yaml.safe_load((root / "sweep" / "trials" / "recipe" / "config.yaml").read_text())
    (root / "sweep" / "trials" / "recipe" / "config.yaml").write_text(yaml.safe_dump({**cfg, "lr": 0.5}))
    with pytest.raises(CxrError, match="holds a finished run of another config"):
        _check_finished_run(root / "sweep" / "trials" / "recipe", build_config(root / "base.yaml"))


def _frozen(number: int, clean: float, stressed: float, n_val: int = 200) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        value=stressed, params={}, distributions={}, user_attrs={"clean_accuracy": clean, "n_val": n_val}
    )


@pytest.mark.parametrize(
    "trials, n_val, chosen",
    [
        ([(0.95, 0.70), (0.945, 0.80), (0.90, 0.95)], 200, 1),  # within 1 point of the best clean: the best stressed
        ([(0.95, 0.70), (0.93, 0.80)], 200, 0),  # 2 points below: not eligible, however robust
        ([(0.95, 0.70), (0.93, 0.80)], 40, 1),  # 40 films: one film (2.5 points) is the margin
        ([(0.95, 0.80), (0.95, 0.80), (0.94, 0.80)], 200, 0),  # ties: the better clean, then the earlier trial
    ],
)
def test_robust_rule_is_best_under_shift_among_the_near_best_clean(trials, n_val, chosen):
    frozen = [_frozen(i, c, s, n_val) for i, (c, s) in enumerate(trials)]
    for i, t in enumerate(frozen):
        t.number, t.params = i, {"candidates": f"c{i}"}
    assert robust_choice(frozen, 0.01).number == chosen


def test_robust_rule_averages_seeds_of_one_candidate():
    """seed is a replicate: a candidate lucky on one seed does not win on that draw alone."""
    rows = [("a", 0, 0.95, 0.90), ("a", 1, 0.95, 0.60), ("b", 0, 0.95, 0.80), ("b", 1, 0.95, 0.78)]
    frozen = []
    for i, (name, seed, clean, stressed) in enumerate(rows):
        t = _frozen(i, clean, stressed)
        t.number, t.params = i, {"candidates": name, "seed": seed}
        frozen.append(t)
    chosen = robust_choice(frozen, 0.01)
    assert chosen.params == {"candidates": "b", "seed": 0}  # b: mean 0.79 under shift against a's 0.75


def test_a_grid_point_whose_trial_was_killed_runs_again_in_its_folder(sweep_files):
    """A killed trial of a grid (its process interrupted: FAIL, no retry queued) must not leave its point unrun while
    the grid counts as done, nor make the sampler repeat a finished point."""
    root = sweep_files
    (root / "space.yaml").write_text("candidates:\n  recipe: {}\n  noisy: {augment.noise: 0.1}\n")
    plan = _plan(root, 2, objective="val_accuracy")
    study = open_study(plan)
    killed = study.ask()  # the grid's first point
    killed_point = plan.params[0].suggest(killed)
    killed.set_user_attr("run", killed_point)
    study.tell(killed, state=optuna.trial.TrialState.FAIL)

    summary = run_sweep(plan)
    assert summary["complete"] == 2 and summary["ran_here"] == 2
    trials = optuna.load_study(study_name="cxr-sweep", storage=plan.storage_url).trials
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["candidates"] for t in done) == ["noisy", "recipe"]  # each point once, none repeated
    retry = [t for t in done if t.params["candidates"] == killed_point][0]
    assert retry.user_attrs["run"] == killed_point
    assert sorted(p.name for p in (root / "sweep" / "trials").iterdir()) == ["noisy", "recipe"]
    assert run_sweep(plan)["ran_here"] == 0  # the grid is complete: resuming runs nothing


def test_a_trial_started_after_the_last_one_by_another_process_ends_before_training(sweep_files, monkeypatch):
    """Two processes that both see one trial left both start one: the later-numbered ends at once, recorded as
    failed with the reason, and trains nothing; in a grid, a trial on a point already taken ends the same way."""
    import cxr.training.sweep as sweep

    monkeypatch.setattr(sweep, "train", lambda *a, **k: pytest.fail("a surplus trial trained"))
    plan = _plan(sweep_files, trials=1, prune=False)
    study = open_study(plan)
    first = study.ask()  # another process's trial, running
    first.suggest_float("lr", 1e-3, 1e-2, log=True)
    study.optimize(sweep._objective(plan), n_trials=1, catch=(sweep.SurplusTrial,))
    late = study.trials[-1]
    assert late.number == 1 and late.state.name == "FAIL" and "another process" in late.user_attrs["surplus"]

    (sweep_files / "space.yaml").write_text("candidates:\n  a: {lr: 0.001}\n  b: {lr: 0.01}\n")
    grid = _plan(sweep_files, trials=2, prune=False, study_name="grid")
    study = open_study(grid)
    taken = study.ask({"candidates": optuna.distributions.CategoricalDistribution(["a", "b"])})
    assert sweep.surplus(study.ask(), grid, {"candidates": taken.params["candidates"]})
    assert not sweep.surplus(study.ask(), grid, {"candidates": "b" if taken.params["candidates"] == "a" else "a"})
