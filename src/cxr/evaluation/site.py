"""Onboarding a new site: temperature and threshold fitted on a few hundred of the site's own labelled films
(optionally after AdaBN on its unlabelled films), written as a new run; the source run is never changed.

Guidelines for clinical AI ask for local validation before use: label some of the site's films, re-check the decision
threshold on them, measure on the rest. The rest must really be the rest, so the calibrated bundle records every film
it was calibrated on by content hash (SHA-256 of the file's bytes: it survives a moved or renamed folder and catches
a copy under another name), and `evaluate_run` refuses to score any of them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr.data.images import file_sha256, find_images
from cxr.data.manifest import CALIBRATION_SPLIT
from cxr.data.run_files import split_files
from cxr.errors import CxrError
from cxr.evaluation.calibration import (
    SITE_KEY,
    Calibration,
    apply_to_meta,
    calibrate_on_validation,
    resolve_operating_point,
)
from cxr.inference.adapt import COPIED_FILES, AdaptResult, adapt_batchnorm
from cxr.inference.bundle import BUNDLE_FILE, Bundle, BundleMeta, save_bundle
from cxr.rundir import RunDir

MIN_FILMS_PER_CLASS = 5  # fewer: one film more or less moves the threshold across a fifth of the class


@dataclass
class SiteCalibration:
    path: Path  # the new run's model.pt
    calibration: Calibration
    record: dict[str, Any]  # what BundleMeta.extra[SITE_KEY] holds
    adapted: AdaptResult | None


def _count_per_class(labels: Iterable[int], classes: list[str]) -> dict[str, int]:
    labels = list(labels)
    return {c: labels.count(i) for i, c in enumerate(classes)}


def _check_enough(per_class: dict[str, int], where: str) -> None:
    few = {c: n for c, n in per_class.items() if n < MIN_FILMS_PER_CLASS}
    if few:
        c, n = next(iter(few.items()))
        raise CxrError(
            f"{where} has {n} readable {c} film(s); calibrating needs at least {MIN_FILMS_PER_CLASS} of every class: "
            "label more films, or cut a larger share with `cxr data split SITE --calibration 0.3`"
        )


def calibrate_on_site(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    split: str = CALIBRATION_SPLIT,
    adapt: list[str | Path] | None = None,
    operating_point: str | None = None,
    fit_temp: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> SiteCalibration:
    """Write `out/model.pt`: the run's model (AdaBN-adapted on `adapt` first, if given) with temperature and, for
    binary models with an operating-point rule, threshold fitted on `data`'s `split` (class names matched ignoring
    case, as `cxr evaluate --data` does). `operating_point`: None keeps the run's rule, "none" drops it."""

    src, out, data = Path(run_dir), Path(out), Path(data)
    if out.resolve() == src.resolve() or (out / BUNDLE_FILE).exists():
        raise CxrError(f"{out} already holds a model; choose a new --out (the source run is kept as it is)")
    bundle = Bundle.load(src, backend="torch")
    operating_point = resolve_operating_point(bundle.meta, operating_point)
    site = data.stem
    if data.is_dir() and not (data / "train").is_dir():  # a site's raw <class>/ folders: say how to cut them
        raise CxrError(
            f"{data} has no {split} split; cut one with `cxr data split {data} --calibration 0.3 --out "
            "site.csv`, then pass --data site.csv"
        )
    files = split_files(src, split, bundle.classes, data)
    _check_enough(_count_per_class(files.labels, bundle.classes), f"the {split} split of {data}")
    adapt_hashes: list[str] = []
    adapted = None
    if adapt:  # one command onboards: batch-norm statistics first, then temperature and threshold on top of them
        adapted = adapt_batchnorm(src, list(adapt), out, batch_size=batch_size, progress=progress)
        adapt_hashes = sorted({file_sha256(p) for p in find_images(list(adapt))})
        bundle = Bundle.load(out, backend="torch")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name in COPIED_FILES:  # `cxr evaluate NEW` still finds the run's own data
            if (src / name).is_file():
                shutil.copyfile(src / name, out / name)
    try:
        preds = bundle.predict(files.paths, batch_size=batch_size, progress=progress)
        label_of = {Path(p): y for p, y in zip(files.paths, files.labels)}
        y_true = np.array([label_of[Path(p)] for p in preds.paths], dtype=int)
        per_class = _count_per_class(y_true.tolist(), bundle.classes)
        _check_enough(per_class, f"the {split} split of {data}")
        cal = calibrate_on_validation(preds.logits, y_true, bundle.classes, operating_point, fit_temp)
        root = data.parent if data.suffix.lower() == ".csv" else data
        films = [[_relative(p, root), file_sha256(p)] for p in preds.paths]
        record = {
            "site": site,
            "data": str(data),
            "split": split,
            "n": len(films),
            "n_per_class": per_class,
            "identity": "sha256 of each file's bytes",
            "films": films,
            "skipped": len(preds.errors),
        }
        if adapted is not None:
            record["adapted_on"] = {"images": adapted.images, "sha256": adapt_hashes}
        cal.summary.update(split=f"{split}@{site}", n_per_class=per_class)
        meta = apply_to_meta(bundle.meta, cal)
        meta.extra = {**meta.extra, SITE_KEY: record}
        path = save_bundle(out, bundle.model, meta, bundle.guard)  # same features: same guard (none after AdaBN)
        RunDir(out).merge_metrics({"calibration": {**cal.summary, SITE_KEY: record}})
    except BaseException:
        (out / BUNDLE_FILE).unlink(missing_ok=True)  # a half-calibrated bundle must not look like a finished model
        raise
    return SiteCalibration(path, cal, record, adapted)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def check_not_calibration_films(meta: BundleMeta, paths: list[Path]) -> dict[str, Any] | None:
    """Refuse to score a film the model was calibrated on; None for a bundle that was not site-calibrated, else what
    the evaluation's section records (how many films calibrated it, how many scored films it was adapted on)."""
    record = meta.extra.get(SITE_KEY)
    if not record:
        return None
    calibrated = {sha: name for name, sha in record["films"]}
    adapted_on = set(record.get("adapted_on", {}).get("sha256", []))
    n_adapted = 0
    for p in paths:
        sha = file_sha256(p)
        if sha in calibrated:
            raise CxrError(
                f"{p} calibrated this model (same content as {calibrated[sha]!r} of site {record['site']!r}); score "
                "only the site's other films, e.g. `--split test` of the manifest from `cxr data split --calibration`"
            )
        n_adapted += sha in adapted_on
    fitted = "temperature and threshold" if meta.threshold is not None else "temperature"
    summary = {
        "site": record["site"],
        "calibration_films": record["n"],
        "fitted": fitted,
        "scored_among_calibration_films": 0,
    }
    if "adapted_on" in record:
        summary |= {"adaptation_films": record["adapted_on"]["images"], "scored_among_adaptation_films": n_adapted}
    return summary


def site_note(summary: dict[str, Any] | None, n_scored: int) -> str | None:
    """The report's plain-words line on how the site's films were used."""
    if not summary:
        return None
    note = (
        f"{summary['calibration_films']} films of site {summary['site']} calibrated this model ({summary['fitted']}); "
        f"none of the {n_scored} films scored here is among them (checked by content hash)."
    )
    if "adaptation_films" in summary:
        k = summary["scored_among_adaptation_films"]
        note += (
            f" Its batch-norm statistics were re-estimated (AdaBN, no labels) on {summary['adaptation_films']} "
            f"unlabelled films, {k} of them scored here."
        )
    return note
