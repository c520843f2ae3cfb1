"""MLflow tracking of runs (`track: true` / `cxr train --track`), imported only when a run is tracked.

One MLflow run per cxr run directory: the resolved config as params, tags for data, model, cxr version, git commit
and precision, every epoch's metrics (Lightning's MLFlowLogger, pointed at that run), then the training summary,
calibration, plots, config and bundle. The run id is kept in `RUN/mlflow.json`, so `cxr evaluate` adds its split's
figures to the same MLflow run and `--resume` continues it. A cross-validation is a parent run with a child per fold,
an ensemble a parent with a child per member, a sweep a parent with a child per trial: a tracked run started while
another is active becomes its child.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import MLFlowLogger

from cxr.atomic import write_text_atomic
from cxr.errors import CxrError
from cxr.extras import require
from cxr.rundir import CONFIG, CV, HISTORY, METRICS, MODEL, OOF_PREDICTIONS, PLOTS, RunDir
from cxr.rundir import MLFLOW as TRACKING_FILE
from cxr.version import __version__

if TYPE_CHECKING:  # the training config is read, never built, here: tracking sits below it
    from cxr.config import TrainConfig

_active: ContextVar[dict | None] = ContextVar("cxr_mlflow_run", default=None)  # {"uri", "run_id"} being trained


def tracking_uri(cfg: TrainConfig, out: Path) -> str:
    """`tracking_uri`, else $MLFLOW_TRACKING_URI, else a SQLite store beside the run folder (shared by its siblings)."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(out).resolve().parent / 'mlflow.db'}"


def _client(uri: str):
    return require("track", "mlflow").MlflowClient(tracking_uri=uri)


def check_tracking(uri: str) -> None:
    """Reach the store once, with no retries, so a wrong URI fails before any training rather than after it."""
    require("track", "mlflow")  # not installed: a one-line error naming the extra, not "cannot be reached"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    try:
        _client(uri).search_experiments(max_results=1)
    except Exception as e:  # mlflow raises many kinds (MlflowException, requests', SQLAlchemy's): all mean unreachable
        detail = " ".join(str(e).split())[:160]
        raise CxrError(
            f"MLflow tracking URI {uri!r} cannot be reached ({type(e).__name__}: {detail}); start the "
            "server, fix tracking_uri / $MLFLOW_TRACKING_URI, or train without --track"
        ) from None
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]  # src/cxr/tracking.py -> the checkout
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as MLflow params: sections dotted (augment.mixup), values as text (MLflow's limit 6000)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


def _numbers(section: dict[str, Any], prefix: str) -> dict[str, float]:
    """The top-level figures of a metrics.json section, and their 95 % intervals as <name>_ci_low / _ci_high."""
    numeric = {k: v for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {f"{prefix}{k}": float(v) for k, v in numeric.items()}
    for k, ci in (section.get("ci") or {}).items():
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
            out[f"{prefix}{k}_ci_low"], out[f"{prefix}{k}_ci_high"] = float(ci[0]), float(ci[1])
    return out


def artifact_root(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store go beside it (OUT/mlartifacts/<experiment>), not in MLflow's default ./mlruns of
    whatever folder the command ran in; a server or another database keeps its own default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / experiment).as_uri()


def read_tracking(run_dir: Path) -> dict | None:
    path = Path(run_dir) / TRACKING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def epoch_logger() -> MLFlowLogger | None:
    """Lightning's MLflow logger writing into the run being trained (None when it is not tracked)."""
    active = _active.get()
    if active is None:
        return None
    return _EpochMetrics(tracking_uri=active["uri"], run_id=active["run_id"])


class _EpochMetrics(MLFlowLogger):
    """Per-epoch metrics only: the resolved config is logged once as params by `tracked` (a refit's second module
    would otherwise log a different lr_schedule under the same key, which MLflow refuses)."""

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


@contextmanager
def tracked(cfg: TrainConfig, out: Path, kind: str, precision: str | None = None) -> Iterator[str]:
    """An MLflow run for the cxr run in `out` (a child of the active one, if any); finished artefacts logged on exit."""
    out = Path(out)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:  # under DDP rank 0 alone logs
        yield ""
        return
    parent = _active.get()
    uri = parent["uri"] if parent else tracking_uri(cfg, out)
    if parent is None:
        check_tracking(uri)
    client = _client(uri)
    previous = read_tracking(out)
    if previous and previous.get("uri") == uri:  # --resume: continue the same MLflow run
        run_id = previous["run_id"]
    else:
        experiment = client.get_experiment_by_name(cfg.experiment)
        exp_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(cfg.experiment, artifact_location=artifact_root(uri, cfg.experiment))
        )
        tags = {
            "cxr.kind": kind,
            "cxr.data": str(Path(cfg.data).resolve()) if cfg.data else "-",
            "cxr.model": cfg.model,
            "cxr.version": __version__,
            "mlflow.source.git.commit": _git_commit(),
            "cxr.run_dir": str(out.resolve()),
        }
        if parent:
            tags["mlflow.parentRunId"] = parent["run_id"]
        run_id = client.create_run(exp_id, run_name=out.name, tags=tags).info.run_id
        params = flat_params(cfg.to_yaml_dict())
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=items[i : i + 100])
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / TRACKING_FILE, json.dumps({"uri": uri, "run_id": run_id, "experiment": cfg.experiment}))
    token = _active.set({"uri": uri, "run_id": run_id})
    try:
        yield run_id
    except BaseException as e:  # stopped on purpose (Ctrl-C, a sweep's pruning) is KILLED in MLflow, not FAILED
        stopped = isinstance(e, KeyboardInterrupt) or type(e).__name__ == "TrialPruned"  # no optuna import here
        client.set_terminated(run_id, "KILLED" if stopped else "FAILED")
        raise
    finally:
        _active.reset(token)
    log_finished_run(client, run_id, out)
    client.set_terminated(run_id, "FINISHED")


def log_finished_run(client, run_id: str, out: Path) -> None:
    """What a finished run left: training summary and calibration (or cv.json) as metrics, files as artefacts."""
    metrics: dict[str, float] = {}
    for name in (METRICS, CV):
        path = out / name
        if path.is_file():
            data = json.loads(path.read_text())
            if name == CV:
                metrics.update(_numbers(data, "cv_"))
            for section in ("training", "calibration"):
                metrics.update(_numbers(data.get(section) or {}, f"{section}_"))
    training = RunDir(out).read_metrics().get("training", {})
    if training.get("precision"):
        client.set_tag(run_id, "cxr.precision", training["precision"])
    _log_metrics(client, run_id, metrics)
    for name in (CONFIG, METRICS, CV, HISTORY, MODEL, OOF_PREDICTIONS, "best.yaml", "trials.csv"):
        # a run's, a cross-validation's or a sweep's
        if (out / name).is_file():
            client.log_artifact(run_id, str(out / name))
    if (out / PLOTS).is_dir():
        client.log_artifacts(run_id, str(out / PLOTS), artifact_path=PLOTS)


def _log_metrics(client, run_id: str, metrics: dict[str, float]) -> None:
    import math

    from mlflow.entities import Metric

    items = [Metric(k, v, 0, 0) for k, v in metrics.items() if math.isfinite(v)]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])


def log_evaluation(run_dir: Path, key: str, metrics: dict[str, Any]) -> bool:
    """`cxr evaluate` on a tracked run: the split's figures (with intervals) and plots into the run's MLflow run."""
    info = read_tracking(run_dir)
    if info is None:
        return False
    check_tracking(info["uri"])
    client = _client(info["uri"])
    name = key.replace("@", "_at_")  # MLflow metric names allow letters, digits, _ - . / and spaces
    _log_metrics(client, info["run_id"], _numbers(metrics, f"{name}_"))
    files = RunDir(run_dir)
    for path in sorted(files.plots.glob(f"*_{key}.png")):
        client.log_artifact(info["run_id"], str(path), artifact_path=PLOTS)
    if files.predictions(key).is_file():
        client.log_artifact(info["run_id"], str(files.predictions(key)))
    return True
