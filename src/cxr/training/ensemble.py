"""Train an ensemble: `ensemble` members with consecutive seeds (and, with `ensemble_members`, their own networks or
settings) on one validation split, combined into one bundle.

Each member is an ordinary run under `OUT/members/<k>/`; a finished member is kept, so `--resume` continues an
interrupted ensemble at the member it stopped in. The combined bundle's temperature (and binary threshold) is fitted
on the shared validation split, like a single model's.
"""

from __future__ import annotations

import time
from pathlib import Path

from cxr.config import TrainConfig, save_config
from cxr.evaluation.calibration import calibrate_run
from cxr.inference.bundle import BUNDLE_FILE
from cxr.inference.ensemble import combine_runs
from cxr.inference.guard_fit import fit_run_guard
from cxr.rundir import RunDir
from cxr.training.fit import peak_rss_gb, train_one_run
from cxr.training.prepare import split_seed
from cxr.training.run_folder import check_run_dir, set_aside_previous_run, tracking


def member_config(cfg: TrainConfig, k: int) -> TrainConfig:
    return cfg.for_member(k).model_copy(update={"split_seed": split_seed(cfg)})


def train_ensemble(cfg: TrainConfig, out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    out = Path(out)
    if not resume:  # as for one run: --resume wins; --overwrite sets the old run aside; a finished model is refused
        check_run_dir(out, resume=False, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with set_aside_previous_run(out, overwrite and not resume), tracking(cfg, out, "ensemble"):  # members: children
        return _train_members_and_combine(cfg, out)


def _train_members_and_combine(cfg: TrainConfig, out: Path) -> Path:
    files = RunDir(out)
    save_config(cfg, files.config)  # `--resume` reads it back, even if a member stops
    members_dir = files.members
    runs = []
    for k in range(cfg.ensemble):
        run = members_dir / str(k)
        if not (run / BUNDLE_FILE).is_file():
            started = RunDir(run).last_checkpoint.is_file()  # members never refit (config refuses it)
            train_one_run(member_config(cfg, k), run, resume=started, overwrite=not started)
        runs.append(run)
    t_combine = time.perf_counter()
    combine_runs(runs, out)
    save_config(cfg, files.config)  # the ensemble's own, over the member config combine_runs copies
    calibration = calibrate_run(out, cfg.operating_point or "none")
    fit_run_guard(out)  # the ensemble's features are its members' together: its own guard
    members = [RunDir(r).read_metrics()["training"] for r in runs]
    speeds = [m["train_images_per_second"] for m in members if m.get("train_images_per_second")]
    summary = {
        "ensemble": cfg.ensemble,
        "members": [str(r.relative_to(out)) for r in runs],
        "epochs_run": sum(m["epochs_run"] for m in members),
        "images": members[0]["images"],
        # the members' own training times: members finished before a --resume count too
        "wall_seconds": round(sum(m["wall_seconds"] for m in members) + time.perf_counter() - t_combine, 1),
        "train_images_per_second": round(sum(speeds) / len(speeds), 1) if speeds else None,
        "peak_rss_gb": max([peak_rss_gb()] + [m.get("peak_rss_gb") or 0 for m in members]),
    }
    files.merge_metrics({"training": summary, "calibration": calibration.summary})
    return out
