"""Combine finished runs into one ensemble bundle (mean probability of the members); no Lightning needed."""

from __future__ import annotations

import shutil
from pathlib import Path

from cxr.errors import CxrError
from cxr.inference.bundle import BundleMeta, read_bundle_file, save_bundle
from cxr.models.ensemble import ENSEMBLE, ensemble_from_specs
from cxr.rundir import DATA_FILES, SPLITS

COPIED_FROM_FIRST_MEMBER = DATA_FILES  # evaluate/calibrate find the data and the val split there


def combine_runs(run_dirs: list[Path], out: Path) -> Path:
    """Write `out/model.pt` holding every member; members must share classes, image size and validation split."""
    if len(run_dirs) < 2:
        raise CxrError("an ensemble needs at least two finished runs")
    run_dirs = [Path(r) for r in run_dirs]
    payloads = [read_bundle_file(r) for r in run_dirs]
    metas = [BundleMeta(**p["meta"]) for p in payloads]
    first = metas[0]
    for run, meta in zip(run_dirs, metas):
        if meta.model == ENSEMBLE:
            raise CxrError(f"{run} is already an ensemble; list its member runs instead")
        if meta.classes != first.classes or meta.image_size != first.image_size:
            raise CxrError(
                f"{run} has classes {meta.classes} at {meta.image_size} px but {run_dirs[0]} has {first.classes} at "
                f"{first.image_size} px; ensemble runs trained on the same classes and image size"
            )
    splits = [(r / SPLITS).read_text() if (r / SPLITS).is_file() else None for r in run_dirs]
    if any(s != splits[0] for s in splits):
        raise CxrError(
            "the runs were validated on different splits, so no split is held out from all of them; "
            "train every member on the same data with the same --split-seed"
        )
    members = [
        {
            "model": m.model,
            "mean": m.mean,
            "std": m.std,
            "temperature": m.temperature,
            "input_norm": m.input_norm,
            "run": str(r),
        }
        for r, m in zip(run_dirs, metas)
    ]
    net = ensemble_from_specs(members, len(first.classes))
    for member, payload in zip(net.members, payloads):
        member.load_state_dict(payload["state_dict"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FROM_FIRST_MEMBER:
        if (run_dirs[0] / name).is_file() and (run_dirs[0] / name).resolve() != (out / name).resolve():
            shutil.copyfile(run_dirs[0] / name, out / name)
    meta = BundleMeta(ENSEMBLE, first.classes, first.image_size, mean=0.0, std=1.0, extra={"members": members})
    return save_bundle(out, net, meta)
