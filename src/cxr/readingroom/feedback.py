"""The loop back to training: reviewed films as a manifest `cxr train --data` reads, and how far model and readers
agree (Cohen's kappa with bootstrap intervals, the code `cxr evaluate --reference` uses).
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from cxr.atomic import atomic_path
from cxr.errors import CxrError
from cxr.evaluation.agreement import MODEL, NOT_READ, kappa_with_ci
from cxr.readingroom import access_log, queries
from cxr.readingroom.access_log import DIRECT, Actor
from cxr.readingroom.schema import INDETERMINATE, Film, Read, Reader
from cxr.readingroom.service import ReadingRoom

MANIFEST = "manifest.csv"
COLUMNS = ["path", "label", "patient_id", "split", "reader_disagreed", "model_predicted", "readers", "study_id"]


@dataclass
class ReviewedFilm:
    film: Film
    reads: dict[str, str] = field(default_factory=dict)  # reader -> current label (indeterminate left out)


def reviewed_films(room: ReadingRoom) -> list[ReviewedFilm]:
    """Films with at least one current read naming a class, oldest first."""
    with room.session() as session:
        rows = session.execute(
            select(Film, Reader.name, Read.label)
            .join(Read, Read.film_id == Film.id)
            .join(Reader, Reader.id == Read.reader_id)
            .where(queries.current_reads(), Read.label != INDETERMINATE)
            .order_by(Film.received_at, Film.id)
        ).all()
    out: dict[str, ReviewedFilm] = {}
    for film, reader, label in rows:
        out.setdefault(film.id, ReviewedFilm(film)).reads[reader] = label
    return list(out.values())


def consensus(labels: list[str]) -> str | None:
    """The readers' label: the most frequent; None on a tie (the film needs another reader, not a guess)."""
    counts = Counter(labels).most_common()
    return counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None


@dataclass(frozen=True)
class ExportResult:
    manifest: Path
    rows: int
    disagreed: int
    skipped: dict[str, int]


def export_feedback(room: ReadingRoom, out: str | Path, actor: Actor = DIRECT) -> ExportResult:
    """Copy each reviewed image once to OUT/images/<label>/ and write OUT/manifest.csv (label = the readers').

    Every film copied out is in the access log (action "export", by `actor`) before the first file is written.
    """
    if room.store is None:
        raise CxrError("no image store: pass --images DIR (the folder `cxr serve` kept the films in)")
    out = Path(out)
    skipped: Counter[str] = Counter()
    by_image: dict[str, list[ReviewedFilm]] = {}
    for reviewed in reviewed_films(room):
        by_image.setdefault(reviewed.film.sha256, []).append(reviewed)
    rows, copies = [], []
    for digest, films in by_image.items():  # the same image received twice is one training example
        film = films[-1].film
        label = consensus([lab for r in films for lab in r.reads.values()])
        source = room.store.path(digest, film.image_ext)
        if label is None:
            skipped["readers tie"] += 1
            continue
        if not any(f.film.image_stored for f in films) or not source.is_file():
            skipped["image not stored"] += 1
            continue
        target = out / "images" / _safe(label) / source.name
        copies.append((source, target, [f.film.id for f in films]))
        readers = sorted({name for f in films for name in f.reads})
        rows.append(
            [
                target.relative_to(out).as_posix(),
                label,
                film.patient_hash or "",
                "train",
                int(label != film.predicted),
                film.predicted,
                ";".join(readers),
                film.id,
            ]
        )
    if not rows:
        raise CxrError("no reviewed films to export: record reads first (POST /v1/studies/{id}/reads or the page)")
    with room.writing() as session:
        for _, _, film_ids in copies:
            for film_id in film_ids:
                access_log.append(session, actor, "export", film_id, f"to {out.resolve()}")
    for source, target, _ in copies:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    manifest = out / MANIFEST
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return ExportResult(manifest, len(rows), sum(r[4] for r in rows), dict(skipped))


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_ " else "_" for c in label).strip() or "label"


def agreement_stats(room: ReadingRoom, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Kappa of the model vs each reader and between readers, on the films both rated (indeterminate = not rated).

    Films of the latest model's class list only: kappa compares labels from one set of classes.
    """
    reviewed = reviewed_films(room)
    if not reviewed:
        raise CxrError("no reads recorded yet: nothing to compare")
    classes = list(reviewed[-1].film.classes)
    same = [r for r in reviewed if list(r.film.classes) == classes]
    index = {c: i for i, c in enumerate(classes)}
    readers = sorted({name for r in same for name in r.reads})
    ratings = {MODEL: np.array([index[r.film.predicted] for r in same], dtype=np.int64)}
    for name in readers:
        ratings[name] = np.array([index.get(r.reads.get(name, ""), NOT_READ) for r in same], dtype=np.int64)
    pairs = []
    for a, b in combinations(ratings, 2):
        both = (ratings[a] != NOT_READ) & (ratings[b] != NOT_READ)
        kappa, ci = None, None
        if both.sum() >= 2:  # one stratum: there is no ground truth to stratify the resamples by
            kappa, ci = kappa_with_ci(
                ratings[a][both], ratings[b][both], np.zeros(int(both.sum())), len(classes), n_bootstrap, seed
            )
        n_diff = int((ratings[a][both] != ratings[b][both]).sum())
        pairs.append({"a": a, "b": b, "n": int(both.sum()), "disagree": n_diff, "kappa": kappa, "ci": ci})
    return {
        "classes": classes,
        "films": len(same),
        "other_models_films": len(reviewed) - len(same),
        "readers": readers,
        "pairs": pairs,
        "n_bootstrap": n_bootstrap,
    }
