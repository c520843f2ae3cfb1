"""`train(cfg, out)`: the whole training run, leaving a finished bundle only when it succeeds: one model, an
ensemble of members, or a refit on train + val (each in cxr.training.fit / ensemble / refit)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L

from cxr.config import TrainConfig
from cxr.training.ensemble import train_ensemble
from cxr.training.fit import (  # noqa: F401 (re-exported: where callers and tests found them before cxr 0.9)
    cpu_model,
    fetch_start_weights,
    peak_rss_gb,
    resolve_precision,
    start_weights,
    train_one_run,
    training_loader,
)
from cxr.training.refit import train_refit_run
from cxr.training.run_folder import (  # noqa: F401 (re-exported, as above)
    PREVIOUS_RUN,
    check_run_dir,
    set_aside_previous_run,
    tracking,
    wait_for_rank_zero,
)


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> Path:
    """Train `cfg` into `out`; `callbacks` join the Trainer's own (a single run's: not an ensemble's or refit's)."""
    if not resume:  # a resumed run's checkpoint holds its weights
        fetch_start_weights(cfg)
    if cfg.ensemble > 1:
        return train_ensemble(cfg, out, resume, overwrite)
    if cfg.refit:
        return train_refit_run(cfg, out, resume, overwrite)
    return train_one_run(cfg, out, resume, overwrite, callbacks)
