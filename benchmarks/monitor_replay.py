"""`python -m benchmarks monitor-replay`: does `cxr monitor` notice when the films a service sees change, and how soon?
Streams are replayed to a running `cxr serve` of the shipped radiography model through its API (POST /v1/predict, then
the simulated reader's read with a key from `cxr readers add`): each starts with the model's own test films and then
changes (prevalence, an acquisition shift from the stress battery, Kermany's pediatric NORMAL films), or not.

A replay of minutes is one day of `received_at`, so the windows are of WINDOW films in stream order (`cxr monitor
--films-per-window`): the films are read back by the monitor's own `load_films` and its own `monitor_rows` runs over
them, so the tests, reference and Bonferroni family are `cxr monitor`'s as it ships. (The recorded run re-stamped each
film's received_at in memory to day = place // WINDOW with period "day", before the option existed: the same
windows.) The rule (RULE) is in docs/reading-room.md, "Does it work? A replayed stream", written before the first run.
That run found the monitor comparing full-precision confidences with a reference rounded to 4 decimals (every window
fired); the monitor now rounds both sides alike, and tests its baseline window against what the bundle recorded, so
the baseline window is a tested window here like any other.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import select

from benchmarks.common import ROOT, dataset_path, read_results, write_result
from benchmarks.load import HOST, free_port, serve_command, wait_until_up
from cxr.data.images import file_sha256, find_images, load_grayscale
from cxr.evaluation.shifts import SHIFTS, apply_shift
from cxr.inference.bundle import Bundle
from cxr.models.pretrained import RADIOGRAPHY_FILE
from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from cxr.readingroom.drift import ALPHA, MIN_FILMS, MIN_READS
from cxr.readingroom.monitor import FilmRow, MonitorReport, load_films, monitor_rows, table_rows
from cxr.readingroom.schema import GUARD_FLAG, Film
from cxr.rundir import VAL_REFERENCE, RunDir
from cxr.training.fit import val_reference

WINDOW = 100  # films per window
BASELINE = 1  # windows: the input statistics' reference (`cxr monitor --baseline 1`)
CHANGE_AT = 500  # film index of the change: the baseline window and four tested in-distribution windows before it
AFTER = 500  # films after the change
UNCHANGED = 2100  # the baseline window and 2,000 tested films
COVID_FACTOR = 2.0
SHIFT_SEVERITY = 2
PEDIATRIC_SHARE = 0.2  # pediatric-20
SIZE = 224  # the model's input size: shifted films are sent at it
STREAMS = ("unchanged", "prevalence", "contrast", "blur", "pediatric", "pediatric-20")
RETRIES = 5  # per request, on 503
RULE = {
    "window_films": WINDOW,
    "alpha": ALPHA,
    "family": "Bonferroni: each test of a window at alpha / m, m = the tests that ran in it",
    "baseline_windows": BASELINE,
    "min_films": MIN_FILMS,
    "min_reads": MIN_READS,
    "alert": "a tested window in which at least one drift test fires (cxr.readingroom.drift.window_tests)",
    "false_alarm": "an alert in a window that holds no film after the change point (every window of `unchanged`)",
    "detection": "the first alert in a window that holds films after the change point",
    "delay_films": "films sent from the change point to the end of the detecting window (windows are judged whole)",
    "since_the_first_run": "the rule is unchanged; the monitor changed: it rounds the served figures to the "
    "reference's decimals before the KS tests, and tests a baseline window against what the bundle recorded, so that "
    "window is a tested window and an alert in it a false alarm (false_alarms[].baseline)",
    "bars": {
        "unchanged": "no alert in the 20 tested windows (2,000 films); the stated rate allows 0.01 per window",
        "pediatric": f"an alert within {WINDOW} films of the change",
        "pediatric-20": f"an alert within {AFTER} films of the change",
    },
}
TEST_DIR = dataset_path("radiography") / "test"
KERMANY_NORMAL = [dataset_path("kermany") / split / "NORMAL" for split in ("train", "test")]


@dataclass(frozen=True)
class Item:
    """One film to send: the file, the simulated reader's label, and the shift applied before sending (or None)."""

    path: Path
    label: str
    shift: str | None = None
    png: bool = False  # decoded at SIZE and sent as PNG (the shifted streams, before and after the change)


@dataclass
class Stream:
    name: str
    description: str
    change_at: int | None
    items: list[Item]


# --- the streams ---------------------------------------------------------------------------------------------------


def pool(folder: Path, classes: Sequence[str]) -> dict[str, list[Path]]:
    """The split's films per class folder (the folder name is the true label)."""
    return {c: find_images([folder / c]) for c in classes}


def draw(films: dict[str, list[Path]], n: int, rng: np.random.Generator, shares: dict[str, float] | None = None):
    """n (path, label) draws with replacement: uniform over all films (the split's own mix), or by class `shares`."""
    classes = list(films)
    if shares is None:
        flat = [(p, c) for c in classes for p in films[c]]
        return [flat[i] for i in rng.integers(len(flat), size=n)]
    p = np.array([shares[c] for c in classes], float)
    picks = rng.choice(len(classes), size=n, p=p / p.sum())
    return [(films[classes[k]][rng.integers(len(films[classes[k]]))], classes[k]) for k in picks]


def scaled_mix(films: dict[str, list[Path]], boosted: str, factor: float) -> dict[str, float]:
    """The split's own mix with `boosted`'s share times `factor`; the others keep their ratio."""
    counts = {c: len(v) for c, v in films.items()}
    total = sum(counts.values())
    share = min(counts[boosted] / total * factor, 1.0)
    rest = total - counts[boosted]
    return {c: share if c == boosted else (1 - share) * counts[c] / rest for c in counts}


def build_streams(films: dict[str, list[Path]], children: list[Path], normal: str, seed: int) -> list[Stream]:
    """The six streams, each from its own generator (seed, stream number)."""

    def rng(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, k])

    def items(pairs, **kw) -> list[Item]:
        return [Item(p, c, **kw) for p, c in pairs]

    def pediatric(k: int, share: float) -> list[Item]:
        r = rng(k)
        before = items(draw(films, CHANGE_AT, r))
        kids = [children[i] for i in r.permutation(len(children))]  # without replacement
        after, used = [], 0
        for other in draw(films, AFTER, r):
            if r.random() < share:
                after.append(Item(kids[used], normal))
                used += 1
            else:
                after.append(Item(*other))
        return before + after

    boosted = next(c for c in films if c.lower().startswith("covid"))
    mix = scaled_mix(films, boosted, COVID_FACTOR)
    r = rng(1)
    prevalence = items(draw(films, CHANGE_AT, r)) + items(draw(films, AFTER, r, mix))
    shifted = []
    for k, name in ((2, "contrast"), (3, "blur")):
        r = rng(k)
        tag = f"{name}:{SHIFT_SEVERITY}"
        shifted.append(
            Stream(
                name,
                f"{name} severity {SHIFT_SEVERITY} ({SHIFTS[name].unit} {SHIFTS[name].levels[SHIFT_SEVERITY - 1]}); "
                f"every film sent as {SIZE}-px PNG",
                CHANGE_AT,
                items(draw(films, CHANGE_AT, r), png=True) + items(draw(films, AFTER, r), shift=tag, png=True),
            )
        )
    share = ", ".join(f"{c} {100 * s:.1f} %" for c, s in mix.items())
    kids = f"Kermany NORMAL films, read {normal}"
    return [
        Stream("unchanged", "test films in the split's own mix", None, items(draw(films, UNCHANGED, rng(0)))),
        Stream("prevalence", f"the {boosted} share x{COVID_FACTOR:g}: {share}", CHANGE_AT, prevalence),
        *shifted,
        Stream("pediatric", f"only {kids}", CHANGE_AT, pediatric(4, 1)),
        Stream("pediatric-20", f"{100 * PEDIATRIC_SHARE:.0f} % {kids}", CHANGE_AT, pediatric(5, PEDIATRIC_SHARE)),
    ]


def payload(item: Item, index: int, seed: int) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) as posted: the file as it is, or decoded, shifted and encoded as PNG."""
    if not item.png:
        return item.path.name, item.path.read_bytes(), mimetypes.guess_type(item.path.name)[0] or "image/jpeg"
    image = load_grayscale(item.path, SIZE)[None]
    if item.shift:
        name, severity = item.shift.split(":")
        image = apply_shift(SHIFTS[name], int(severity), image, seed=seed + index)
    buffer = io.BytesIO()
    Image.fromarray(image[0]).save(buffer, format="PNG")
    return f"{item.path.stem}.png", buffer.getvalue(), "image/png"


# --- the windows and what they say ---------------------------------------------------------------------------------


def window_alarms(report: MonitorReport) -> list[list[str] | None]:
    """Each window's fired tests in stream order; None for a window where no test ran (not a tested window)."""
    return [[t.name for t in w.alarms] if w.tests else None for w in report.windows]


def outcome(
    alarms: list[list[str] | None], change_at: int | None, window: int, total: int, baseline: int = BASELINE
) -> dict[str, Any]:
    """False alarms and the detection, from each window's fired tests in stream order (None: not tested)."""
    false_alarms, detection = [], None
    for w, fired in enumerate(alarms):
        if not fired:
            continue
        end = min((w + 1) * window, total)
        if change_at is None or end <= change_at:
            false_alarms.append({"window": w, "films": [w * window, end], "baseline": w < baseline, "tests": fired})
        elif detection is None:
            detection = {"window": w, "delay_films": end - change_at, "tests": fired}
    tested_before = [
        w for w, a in enumerate(alarms) if a is not None and (change_at is None or (w + 1) * window <= change_at)
    ]
    return {
        "windows_tested_before_change": len(tested_before),
        "false_alarms": false_alarms,
        "detection": detection,
    }


def analyse(classes: list[str], rows: list[FilmRow], metrics: dict[str, Any], change_at: int | None) -> dict[str, Any]:
    """`cxr monitor`'s report over windows of WINDOW films: false alarms, the detection, and every window."""
    report = monitor_rows(classes, rows, metrics, "day", BASELINE, ALPHA, films_per_window=WINDOW)
    return {
        **outcome(window_alarms(report), change_at, WINDOW, len(rows)),
        "reference": report.reference.source,
        "windows": window_figures(report),
    }


def window_figures(report: MonitorReport) -> list[dict[str, Any]]:
    """Per window: films, predicted shares, agreement, flag rate, expected accuracy, and the tests that fired (p)."""
    out = []
    for index, (row, w) in enumerate(zip(table_rows(report), report.windows)):
        out.append(
            {
                "window": index,
                "films": row["films"],
                "baseline": row["baseline"],
                "predicted_share": {c: round(row[f"share_{c}"], 3) for c in report.classes},
                "agreement": None if row["agreement"] is None else round(row["agreement"], 3),
                "guard_flag_rate": None if row["guard_flag_rate"] is None else round(row["guard_flag_rate"], 3),
                "expected_accuracy": round(row["expected_accuracy"], 3),
                "tests": len(w.tests),
                "fired": {t.name: float(f"{t.p_value:.3g}") for t in w.alarms},
            }
        )
    return out


# --- the service ---------------------------------------------------------------------------------------------------


def make_run(folder: Path) -> dict[str, Any]:
    """A run directory of the shipped model, with the metrics.json sections training writes and the monitor reads.

    The file's training run is gone (results/radiography.json), so they are rebuilt: "guard" from the guard fitted
    in model.pt, "val_reference" by cxr.training.fit.val_reference over the val split predicted by this bundle
    (as the service scores films), "test" the recorded test accuracy (the readers' agreement reference)."""
    folder.mkdir(parents=True)
    shutil.copy(RADIOGRAPHY_FILE, folder / "model.pt")
    bundle = Bundle.load(folder, backend="torch")
    val = bundle.predict([dataset_path("radiography") / "val"])
    bundle.guard.val_scores = val.ood_score
    sha = file_sha256(RADIOGRAPHY_FILE)
    recorded = next(r for r in read_results("radiography")["runs"] if r.get("weights_sha256") == sha)
    RunDir(folder).merge_metrics(
        {
            "guard": bundle.guard.fitted,
            VAL_REFERENCE: val_reference(val.logits, bundle.meta, bundle.guard),
            "test": {"n": recorded["test"]["n"], "accuracy": recorded["test"]["accuracy"], "classes": bundle.classes},
        }
    )
    return {
        "file": str(RADIOGRAPHY_FILE.relative_to(ROOT)),
        "sha256": sha,
        "classes": bundle.classes,
        "val_films": len(val.paths),
        "test_accuracy_recorded": recorded["test"]["accuracy"],
    }


def reader_key(run: Path) -> str:
    """A reader made by `cxr readers add` (the key is the last line it prints)."""
    cmd = [sys.executable, "-m", "cxr.cli", "readers", "add", "simulated reader", "--db", str(run)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    key = out.strip().splitlines()[-1].strip()
    if not re.fullmatch(r"cxr_\S+", key):
        raise SystemExit(f"`cxr readers add` printed no key: {out!r}")
    return key


def post(client: httpx.Client, url: str, retried: list[str], **kwargs) -> httpx.Response:
    """POST; a 503 (busy, or the reading room could not store the record) is retried after Retry-After, as the API
    asks a client to, and its reason kept for the results."""
    for _ in range(RETRIES):
        r = client.post(url, **kwargs)
        if r.status_code != 503:
            break
        retried.append(f"{url.split('/')[-1]}: {r.json().get('detail', '')}")
        time.sleep(float(r.headers.get("Retry-After", 1)))
    return r.raise_for_status()


def replay(run: Path, stream: Stream, key: str, seed: int) -> tuple[list[str], dict[str, Any]]:
    """Send the stream to `cxr serve RUN`, one film and its read at a time; the study ids in stream order."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {**os.environ, "CXR_API_KEY": ""}
    cmd = serve_command(run, port, 1, "--no-store-images")
    log = open(run / "serve.log", "w")  # closed below, after the server
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    ids: list[str] = []
    retried: list[str] = []
    headers = {"X-Reader-Key": key}
    try:
        wait_until_up(base, server)  # answers 401 once a key exists: the model is asked again below, with the key
        t0 = time.perf_counter()
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            info = client.get("/v1/model").raise_for_status().json()
            for i, item in enumerate(stream.items):
                name, data, kind = payload(item, i, seed)
                ids.append(post(client, "/v1/predict", retried, files={"file": (name, data, kind)}).json()["study_id"])
                post(client, f"/v1/studies/{ids[-1]}/reads", retried, json={"label": item.label})
            health = client.get("/v1/health").raise_for_status().json()
        seconds = time.perf_counter() - t0
    except httpx.HTTPError:
        print(f"{stream.name}: failed after {len(ids)} films; the server's log ends:", flush=True)
        print("".join((run / "serve.log").read_text().splitlines(keepends=True)[-20:]), flush=True)
        raise
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    latest = health["details"]["windows"][-1] if health["details"]["windows"] else {}
    service = {
        "backend": info["backend"],
        "replay_seconds": round(seconds, 1),
        "films_per_second": round(len(ids) / seconds, 1),
        "retried_503": retried,
        "v1_health": {  # the service's own view: cxr monitor per week, so the whole replay is its first (baseline) week
            "status": health["status"],
            "period": health["details"]["period"],
            "windows": len(health["details"]["windows"]),
            "latest_window_films": latest.get("films"),
            "tests_run": sorted(
                k.removeprefix("p_") for k, v in latest.items() if k.startswith("p_") and v is not None
            ),
            "alerts": health["details"]["alerts"],
        },
    }
    return ids, service


def stream_rows(run: Path, ids: list[str]) -> tuple[list[str], list[FilmRow]]:
    """The films as the monitor reads them (load_films), put in stream order by their study ids."""
    room = ReadingRoom(sqlite_url(run / "reading.db"), None, salt=b"")
    try:
        classes, rows = load_films(room)
        with room.session() as session:  # load_films's own order, to name its rows
            stored = list(session.scalars(select(Film.id).order_by(Film.received_at, Film.id)))
    finally:
        room.close()
    by_id = dict(zip(stored, rows))
    if len(by_id) != len(ids) or set(by_id) != set(ids):
        raise SystemExit(f"the database holds {len(by_id)} films, the replay sent {len(ids)}")
    return classes, [by_id[i] for i in ids]


def run_stream(folder: Path, stream: Stream, seed: int) -> dict[str, Any]:
    run = folder / stream.name
    shutil.copytree(folder / "model", run)
    ids, service = replay(run, stream, reader_key(run), seed)
    classes, rows = stream_rows(run, ids)
    metrics = RunDir(run).read_metrics()
    after = rows[stream.change_at :] if stream.change_at is not None else []
    result = {
        "description": stream.description,
        "films": len(rows),
        "change_at": stream.change_at,
        "after_change": None
        if not after
        else {
            "predicted_share": {
                c: round(sum(r.predicted == k for r in after) / len(after), 3) for k, c in enumerate(classes)
            },
            "guard_flag_rate": round(sum(r.guard_verdict == GUARD_FLAG for r in after) / len(after), 3),
            "agreement": round(np.mean([r.predicted == x for r in after for x in r.reads]), 3),
        },
        "service": service,
        **analyse(classes, rows, metrics, stream.change_at),
    }
    brief = {k: result[k] for k in ("false_alarms", "detection")} | {"v1_health": service["v1_health"]["alerts"]}
    print(stream.name, json.dumps(brief), flush=True)
    return result


def commit() -> dict[str, Any]:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return {"cxr_commit": head, "working_tree_changed": dirty}


def monitor_replay(names: list[str] | None, seed: int, command: str) -> None:
    unknown = sorted(set(names or []) - set(STREAMS))
    if unknown:
        raise SystemExit(f"unknown stream(s) {unknown}; choose from {', '.join(STREAMS)}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_run(folder / "model")
        films = pool(TEST_DIR, model["classes"])
        children = find_images(KERMANY_NORMAL)
        streams = build_streams(films, children, "Normal", seed)
        chosen = [s for s in streams if not names or s.name in names]
        results = {s.name: run_stream(folder, s, seed) for s in chosen}
    in_distribution = sum(r["windows_tested_before_change"] for r in results.values())
    write_result(
        "monitor",
        {
            "command": command,
            **commit(),
            "seed": seed,
            "rule": RULE,
            "model": model | {"precision": "fp32 (PyTorch CPU inference)"},
            "service": f"cxr serve --workers 1 --no-store-images on {HOST} (own process); one client, film then read",
            "films": {
                "in_distribution": os.path.relpath(TEST_DIR, ROOT),
                "pediatric": [os.path.relpath(k, ROOT) for k in KERMANY_NORMAL],
            },
            "summary": {
                "in_distribution_windows_tested": in_distribution,
                "false_alarms_expected_at_most": round(in_distribution * ALPHA, 2),
                "false_alarms": sum(len(r["false_alarms"]) for r in results.values()),
                "detected": {n: r["detection"] for n, r in results.items() if r["change_at"] is not None},
                "v1_health": {n: r["service"]["v1_health"]["status"] for n, r in results.items()},
            },
            "streams": results,
            "wall_seconds": round(time.perf_counter() - t0, 1),
        },
    )
