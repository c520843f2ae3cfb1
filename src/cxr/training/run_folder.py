"""A training run's folder: refuse to clobber earlier work, keep the old run aside under --overwrite until the new one
finishes, remove a half-made folder with nothing to resume, and the MLflow run around the work (with --track)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch

from cxr.config import TrainConfig
from cxr.errors import CxrError
from cxr.rundir import CHECKPOINTS, LAST_CHECKPOINT, NESTED_RUNS, PREVIOUS_RUN, RUN_ARTIFACTS, RunDir
from cxr.tracking import tracked

log = logging.getLogger("cxr")
# RUN_ARTIFACTS, NESTED_RUNS and PREVIOUS_RUN are declared in cxr.rundir; they stay importable from here


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber earlier work unless asked (`--overwrite` then sets it aside: `set_aside_previous_run`)."""
    run = RunDir(out)
    finished, started = run.finished, run.checkpoints.is_dir()
    if out.exists() and not out.is_dir():
        raise CxrError(f"--out {out} is a file; pass a folder for the run")
    if resume:
        if finished:
            raise CxrError(f"{out} is finished: nothing to resume; to train on, start a new run with --weights {out}")
        if not run.last_checkpoint.is_file():
            raise CxrError(
                f"{out} has no {CHECKPOINTS}/{LAST_CHECKPOINT} to resume from; start a new run without --resume"
            )
        return
    if run.previous_run.exists():
        raise CxrError(
            f"{run.previous_run} holds the run an unfinished --overwrite replaced; move its files back into {out} "
            "to keep it, or delete it"
        )
    if overwrite:
        return
    if finished:
        raise CxrError(f"{out} already holds a finished model; choose another --out or pass --overwrite")
    nested = next((what for name, what in NESTED_RUNS.items() if (out / name).is_dir()), None)
    if (started or nested) and is_rank_zero():  # DDP ranks > 0 start once rank 0 has begun the run
        raise CxrError(
            f"{out} holds an unfinished {nested or 'run'}; pass --resume to continue it or --overwrite to start over"
        )


def remove_artifacts(out: Path) -> None:
    for name in RUN_ARTIFACTS:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def resumable(out: Path) -> bool:
    """A checkpoint `--resume` can continue from: the run's own, an ensemble member's or a refit's selection run."""
    return RunDir(out).resumable


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def wait_for_rank_zero() -> None:
    """Under DDP, hold every rank here until rank 0 has written what it alone writes (a bundle) after training."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@contextmanager
def set_aside_previous_run(out: Path, overwrite: bool) -> Iterator[None]:
    """`--overwrite` moves the old run to OUT/.previous-run and deletes it only once the new run has finished.

    A new run that fails before its first checkpoint gives the old one back; one that fails later stays resumable
    (`--resume`) and the old one waits in .previous-run, so neither is lost.
    """
    present = [n for n in RUN_ARTIFACTS if (out / n).exists()] if overwrite and is_rank_zero() else []
    aside = out / PREVIOUS_RUN
    if present:
        aside.mkdir(parents=True)
        for name in present:
            (out / name).rename(aside / name)
    try:
        yield
    except BaseException:
        if present and resumable(out):
            log.warning(f"the run --overwrite replaced is kept in {aside}; move its files back to restore it")
        elif present:
            remove_artifacts(out)
            for name in present:
                (aside / name).rename(out / name)
            aside.rmdir()
        raise
    if present:
        shutil.rmtree(aside, ignore_errors=True)


def tracking(cfg: TrainConfig, out: Path, kind: str) -> AbstractContextManager:
    """An MLflow run around the work in `out` when the config asks for one (mlflow is imported only then)."""
    if not cfg.track:
        return nullcontext()
    return tracked(cfg, out, kind)


def run_in_folder(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool,
    overwrite: bool,
    check: Callable[[Path, bool, bool], None],
    kind: str,
    work: Callable[[Path], Path],
) -> Path:
    """`check` the folder, then do `work(out)` with the previous run set aside and tracked; a new folder that got
    nothing resumable is removed when the work fails."""
    out = Path(out)
    check(out, resume, overwrite)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with set_aside_previous_run(out, overwrite and not resume), tracking(cfg, out, kind):
            return work(out)
    except BaseException:
        if created and is_rank_zero() and not resumable(out):
            shutil.rmtree(out, ignore_errors=True)  # nothing to resume: no half-made run folder is left behind
        raise
