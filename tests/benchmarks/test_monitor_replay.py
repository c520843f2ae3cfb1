"""The replay benchmark's bookkeeping on tiny synthetic streams, where the answer is known: which windows are false
alarms, which is the detection and its delay in films, that re-stamped films fall into windows of WINDOW films in
stream order, that a baseline window the monitor tested counts like any other, and that the streams change where and
how the docs say. No service, no model."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from benchmarks.monitor_replay import (
    AFTER,
    CHANGE_AT,
    UNCHANGED,
    build_streams,
    draw,
    outcome,
    scaled_mix,
    window_alarms,
)
from cxr.readingroom.monitor import FilmRow, monitor_rows

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def test_alarms_before_the_change_are_false_and_the_first_after_it_is_the_detection():
    alarms = [None, [], ["confidence"], ["guard_score"], [], [], ["class_mix", "agreement"], ["class_mix"]]
    got = outcome(alarms, change_at=400, window=100, total=800)
    assert got["windows_tested_before_change"] == 3
    assert got["false_alarms"] == [
        {"window": 2, "films": [200, 300], "baseline": False, "tests": ["confidence"]},
        {"window": 3, "films": [300, 400], "baseline": False, "tests": ["guard_score"]},  # ends at the change
    ]
    assert got["detection"] == {"window": 6, "delay_films": 300, "tests": ["class_mix", "agreement"]}


def test_a_window_straddling_the_change_counts_as_after_it_and_an_unchanged_stream_has_only_false_alarms():
    assert outcome([None, [], ["class_mix"]], change_at=250, window=100, total=300)["detection"]["delay_films"] == 50
    got = outcome([None, [], ["guard_score"], []], change_at=None, window=100, total=400)
    assert got["detection"] is None and got["windows_tested_before_change"] == 3
    assert [a["window"] for a in got["false_alarms"]] == [2]


def rows(rng: np.random.Generator, n: int, mix: list[float]) -> list[FilmRow]:
    """Films whose predictions follow `mix`, read as the model's call; all received at one moment (as a replay is)."""
    out = []
    for k in rng.choice(3, n, p=mix):
        p = np.full(3, 0.05)
        p[k] = 0.9
        stats = {"pixel_mean": float(rng.normal(120, 10)), "pixel_std": float(rng.normal(60, 5)), "colourfulness": 0.0}
        out.append(FilmRow(datetime(2030, 1, 1), list(p), int(k), float(rng.gamma(8, 0.07)), "pass", stats, [int(k)]))
    return out


def test_windows_of_100_films_follow_stream_order_and_a_mix_change_is_found_in_its_window():
    rng = np.random.default_rng(0)
    stream = rows(rng, 300, [0.33, 0.54, 0.13]) + rows(rng, 100, [0.05, 0.15, 0.8])
    report = monitor_rows(CLASSES, stream, {}, "day", 1, 0.01, films_per_window=100)
    assert [len(w.data.predicted) for w in report.windows] == [100] * 4
    assert [w.baseline for w in report.windows] == [True, False, False, False]
    assert np.array_equal(report.windows[3].data.predicted, [r.predicted for r in stream[300:]])
    alarms = window_alarms(report)
    assert alarms[0] is None  # no bundle reference: the baseline window has nothing to be tested against
    got = outcome(alarms, change_at=300, window=100, total=400)
    assert got["false_alarms"] == []
    assert got["detection"]["delay_films"] == 100 and "class_mix" in got["detection"]["tests"]


def test_a_baseline_window_unlike_what_the_bundle_recorded_is_tested_and_its_alert_is_a_false_alarm():
    """The monitor now tests the baseline window against the bundle's validation mix; the benchmark must count that
    window as tested, and an alert in it before the change as a false alarm, marked as the baseline's."""
    rng = np.random.default_rng(0)
    metrics = {"val_reference": {"predicted_counts": dict(zip(CLASSES, (330, 540, 130)))}}
    stream = rows(rng, 100, [0.05, 0.15, 0.8]) + rows(rng, 300, [0.33, 0.54, 0.13])
    report = monitor_rows(CLASSES, stream, metrics, "day", 1, 0.01, films_per_window=100)
    alarms = window_alarms(report)
    assert report.windows[0].baseline and alarms[0] is not None and "class_mix" in alarms[0]
    got = outcome(alarms, change_at=None, window=100, total=400)
    assert got["windows_tested_before_change"] == 4
    assert [(a["window"], a["baseline"]) for a in got["false_alarms"]] == [(0, True)]


def test_the_prevalence_mix_doubles_covid_and_keeps_the_others_ratio():
    films = {c: [Path(f"{c}/{i}.jpg") for i in range(n)] for c, n in zip(CLASSES, (503, 834, 201))}
    mix = scaled_mix(films, "COVID", 2.0)
    assert mix["COVID"] == pytest.approx(2 * 503 / 1538)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["Normal"] / mix["Viral Pneumonia"] == pytest.approx(834 / 201)
    drawn = draw(films, 4000, np.random.default_rng(0), mix)
    assert np.mean([c == "COVID" for _, c in drawn]) == pytest.approx(mix["COVID"], abs=0.03)
    assert all(p.parent.name == c for p, c in drawn)  # the label is the film's own class


def test_the_streams_change_where_and_how_the_docs_say():
    films = {c: [Path(f"{c}/{i}.jpg") for i in range(50)] for c in CLASSES}
    children = [Path(f"kids/{i}.jpg") for i in range(1000)]
    streams = {s.name: s for s in build_streams(films, children, "Normal", seed=0)}
    assert len(streams["unchanged"].items) == UNCHANGED and streams["unchanged"].change_at is None
    for name in ("prevalence", "contrast", "blur", "pediatric", "pediatric-20"):
        assert streams[name].change_at == CHANGE_AT and len(streams[name].items) == CHANGE_AT + AFTER
        assert all(i.path.parent.name in CLASSES and not i.shift for i in streams[name].items[:CHANGE_AT])
    assert all(i.shift == "contrast:2" and i.png for i in streams["contrast"].items[CHANGE_AT:])
    assert all(i.png for i in streams["blur"].items) and not any(i.png for i in streams["pediatric"].items)
    kids = [i for i in streams["pediatric"].items[CHANGE_AT:] if i.path.parent.name == "kids"]
    assert len(kids) == AFTER and {i.label for i in kids} == {"Normal"} and len({i.path for i in kids}) == AFTER
    some = [i for i in streams["pediatric-20"].items[CHANGE_AT:] if i.path.parent.name == "kids"]
    assert 0.15 < len(some) / AFTER < 0.25 and {i.label for i in some} == {"Normal"}
