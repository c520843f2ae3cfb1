"""`cxr monitor`'s drift tests on synthetic streams where the answer is known: each statistic fires on a shifted window
and the family stays quiet, at its stated rate, on unshifted ones (fixed seed); and the monitor over a reading room."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from cxr.readingroom.drift import ALPHA, Reference, WindowData, expected_accuracy, window_tests
from cxr.readingroom.monitor import FilmRow, monitor, monitor_rows, table_rows, write_csv
from cxr.readingroom.schema import Film
from tests.readingroom.conftest import MODEL, fake_png

CLASSES = ["Covid", "Normal", "Viral Pneumonia"]
MIX = np.array([0.3, 0.5, 0.2])


def probabilities(rng, predicted: np.ndarray, confidence: float) -> np.ndarray:
    """Calibrated-looking probabilities: the predicted class gets Beta(confidence) mass above a third."""
    top = 1 / 3 + (2 / 3) * rng.beta(confidence * 10, (1 - confidence) * 10, len(predicted))
    p = np.repeat(((1 - top) / 2)[:, None], 3, axis=1)
    p[np.arange(len(predicted)), predicted] = top
    return p


def stream_window(rng, n=80, mix=MIX, confidence=0.7, score_shift=0.0, flag_rate=0.01, pixel_shift=0.0, agree=0.85):
    predicted = rng.choice(3, n, p=mix)
    reads_model = predicted[: n // 2]
    agrees = rng.random(len(reads_model)) < agree
    reads_label = np.where(agrees, reads_model, (reads_model + 1) % 3)
    return WindowData(
        probabilities=probabilities(rng, predicted, confidence),
        predicted=predicted,
        guard_scores=rng.gamma(8, 0.07, n) + score_shift,
        guard_flags=int(rng.binomial(n, flag_rate)),
        guard_known=n,
        inputs={
            "pixel_mean": rng.normal(120 + pixel_shift, 15, n),
            "pixel_std": rng.normal(60, 8, n),
            "colourfulness": rng.exponential(1.0, n),
        },
        reads=np.stack([reads_model, reads_label], axis=1),
    )


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(1)
    base = stream_window(rng, n=2000)
    return Reference(
        CLASSES,
        mix=MIX,
        confidence=base.probabilities.max(axis=1),
        guard_scores=base.guard_scores,
        flag_rate=0.01,
        agreement=0.85,
        inputs=base.inputs,
    )


def alarms(window: WindowData, ref: Reference) -> set[str]:
    return {t.name for t in window_tests(window, ref) if t.alarm}


@pytest.mark.parametrize(
    ("shift", "fires"),
    [
        ({"mix": np.array([0.6, 0.3, 0.1])}, "class_mix"),
        ({"confidence": 0.45}, "confidence"),
        ({"score_shift": 0.4}, "guard_score"),
        ({"flag_rate": 0.12}, "guard_flag_rate"),
        ({"pixel_shift": 25.0}, "input_pixel_mean"),
        ({"agree": 0.55}, "agreement"),
    ],
)
def test_each_statistic_fires_on_a_shifted_window(reference, shift, fires):
    rng = np.random.default_rng(7)
    hits = [fires in alarms(stream_window(rng, n=200, **shift), reference) for _ in range(20)]
    assert sum(hits) >= 18, (fires, sum(hits))


def test_the_family_stays_quiet_at_its_stated_rate_on_unshifted_windows(reference):
    rng = np.random.default_rng(11)
    results = [window_tests(stream_window(rng), reference) for _ in range(300)]
    assert all(len(r) == 8 for r in results)  # mix, confidence, score, flags, 3 inputs, agreement
    family = sum(any(t.alarm for t in r) for r in results)
    # at most ALPHA per window (Bonferroni): 3 expected of 300; P(Binomial(300, 0.01) > 8) < 0.4 %
    assert family <= 8, family
    p_confidence = np.array([t.p_value for r in results for t in r if t.name == "confidence"])
    assert 0.03 < (p_confidence < 0.05).mean() < 0.08  # the raw p-values are calibrated too


def test_a_window_too_small_is_reported_not_tested(reference):
    assert window_tests(stream_window(np.random.default_rng(0), n=10), reference) == []


def test_expected_accuracy_is_the_mean_top_probability_and_matches_when_calibrated():
    rng = np.random.default_rng(3)
    top = rng.uniform(0.5, 1.0, 20000)
    correct = rng.random(20000) < top  # calibrated: right with the stated probability
    p = np.stack([top, 1 - top], axis=1)
    assert expected_accuracy(p) == pytest.approx(top.mean())
    assert expected_accuracy(p) == pytest.approx(correct.mean(), abs=0.01)


def test_the_monitor_over_a_reading_room_windows_reads_and_reference(tmp_path):
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), None, salt=b"s")
    try:
        key = room.add_reader("ann")
        film = room.record(fake_png(1), "a.png", MODEL, [0.7, 0.2, 0.1], "Covid", ood_score=0.5, in_distribution=True)
        room.record(fake_png(2), "b.png", MODEL, [0.1, 0.8, 0.1], "Normal", ood_score=2.0, in_distribution=False)
        room.record(fake_png(3), "c.png", MODEL, [0.1, 0.8, 0.1], "Normal")  # no guard: verdict unknown
        room.add_read(film["id"], key, "Normal")  # ann overrules a positive
        metrics = {"guard": {"pass_rate": 0.99}, "test": {"accuracy": 0.8}}
        report = monitor(room, metrics, period="day", baseline=0)
    finally:
        room.close()
    (row,) = table_rows(report)
    assert row["films"] == 3 and row["share_Normal"] == pytest.approx(2 / 3)
    assert row["mean_p_Covid"] == pytest.approx(0.3) and row["expected_accuracy"] == pytest.approx(2.3 / 3)
    assert row["reads"] == 1 and row["agreement"] == 0.0 and row["overruled_Covid"] == 1.0
    assert row["overruled_Normal"] is None
    assert row["guard_known"] == 2 and row["guard_flag_rate"] == 0.5 and row["alarms"] == ""  # under 30: no test
    assert report.reference.flag_rate == pytest.approx(0.01) and report.reference.agreement == 0.8
    assert write_csv(report, tmp_path / "m.csv").read_text().startswith("window,films,baseline,share_Covid")


def test_a_drifting_week_raises_an_alert_line_against_the_baseline():
    rng = np.random.default_rng(5)
    start = datetime(2027, 1, 4)  # a Monday
    rows = []
    for week, mix in enumerate([MIX, MIX, np.array([0.8, 0.1, 0.1])]):
        window = stream_window(rng, n=120, mix=mix)
        for i in range(120):
            when = start + timedelta(weeks=week, minutes=i)
            rows.append(FilmRow(when, list(window.probabilities[i]), int(window.predicted[i]), None, None, {}))
    report = monitor_rows(CLASSES, rows, {}, "week", baseline=1, alpha=ALPHA)
    assert [w.baseline for w in report.windows] == [True, False, False]
    assert report.reference.source["class_mix"] == "baseline"
    assert not report.windows[1].alarms and "class_mix" in {t.name for t in report.windows[2].alarms}
    (line,) = [x for x in report.alert_lines() if "class_mix" in x]
    assert line.startswith("model drift: class_mix in the week of 2027-01-18")


def test_the_validation_reference_training_wrote_tests_the_first_window_with_no_baseline():
    rng = np.random.default_rng(7)
    val = stream_window(rng, n=600)
    counts = np.bincount(val.predicted, minlength=3)
    metrics = {
        "val_reference": {
            "n": 600,
            "predicted_counts": {c: int(k) for c, k in zip(CLASSES, counts)},
            "max_probability": [round(float(p), 4) for p in val.probabilities.max(axis=1)],
            "guard_scores": [round(float(x), 4) for x in val.guard_scores],
        }
    }
    start = datetime(2027, 1, 4)

    def rows(window):
        return [
            FilmRow(start + timedelta(minutes=i), list(window.probabilities[i]), int(window.predicted[i]), s, None, {})
            for i, s in enumerate(window.guard_scores)
        ]

    shifted = stream_window(rng, n=120, mix=np.array([0.8, 0.1, 0.1]), confidence=0.9, score_shift=0.5)
    report = monitor_rows(CLASSES, rows(shifted), metrics, "week", baseline=0, alpha=ALPHA)
    assert {report.reference.source[k] for k in ("class_mix", "confidence", "guard_scores")} == {"bundle (val)"}
    assert report.reference.mix == pytest.approx(counts / 600)
    (window,) = report.windows
    assert not window.baseline and {"class_mix", "confidence", "guard_score"} <= {t.name for t in window.alarms}
    quiet = monitor_rows(CLASSES, rows(stream_window(rng, n=120)), metrics, "week", baseline=0, alpha=ALPHA)
    assert not quiet.windows[0].alarms


def test_films_are_stored_with_the_guards_verdict(tmp_path):
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), None, salt=b"s")
    try:
        film = room.record(fake_png(1), "a.png", MODEL, [0.7, 0.2, 0.1], "Covid", in_distribution=False)
        with room.session() as session:
            assert session.get(Film, film["id"]).guard_verdict == "flag"
    finally:
        room.close()


def test_cxr_monitor_prints_the_table_and_writes_the_csv_and_plot(tmp_path, capsys, monkeypatch):
    from tests.cli.helpers import run_cli_inprocess

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"guard": {"pass_rate": 0.99}}')
    room = ReadingRoom(sqlite_url(run / "reading.db"), None, salt=b"s")
    try:
        for i in range(3):
            room.record(fake_png(i), f"{i}.png", MODEL, [0.7, 0.2, 0.1], "Covid", ood_score=0.5, in_distribution=True)
    finally:
        room.close()
    done = run_cli_inprocess(capsys, monkeypatch, "monitor", run, "--period", "day", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "cxr monitor: 1 day(s)" in done.stdout and "guard_flag_rate: bundle" in done.stdout
    assert (tmp_path / "out" / "monitor.csv").is_file() and (tmp_path / "out" / "monitor.png").stat().st_size > 0


def test_a_confident_model_against_its_rounded_reference_raises_no_false_alarm():
    """Found by the replay benchmark: val_reference keeps 4 decimals, so a confident model's reference holds many
    exact 1.0s that full-precision served values never equal; the KS test then fired on every window."""
    rng = np.random.default_rng(11)

    def confident(n: int) -> np.ndarray:
        top = 1.0 - rng.exponential(2e-4, n)  # most films above 0.9999: rounded, a third or more are 1.0
        rest = (1.0 - top)[:, None] * np.array([0.5, 0.5])
        return np.column_stack([top, rest])

    reference = [round(float(p), 4) for p in confident(2000)[:, 0]]
    assert reference.count(1.0) > 300
    metrics = {"val_reference": {"predicted_counts": dict(zip(CLASSES, (2000, 0, 0))), "max_probability": reference}}
    start = datetime(2027, 1, 4)
    served = confident(300)
    rows = [FilmRow(start + timedelta(days=i // 100), list(p), 0, None, None, {}) for i, p in enumerate(served)]
    report = monitor_rows(CLASSES, rows, metrics, "day", baseline=0, alpha=ALPHA)
    assert [[t.name for t in w.alarms] for w in report.windows] == [[], [], []]
    assert all("confidence" in {t.name for t in w.tests} for w in report.windows)


def test_the_baseline_window_is_tested_against_what_the_bundle_recorded():
    """A service's first week is its baseline: with a validation reference it is still tested (a model served to
    the wrong population alerts at once), against the bundle's figures only, never against itself."""
    rng = np.random.default_rng(13)
    val = stream_window(rng, n=600)
    counts = np.bincount(val.predicted, minlength=3)
    metrics = {"val_reference": {"predicted_counts": {c: int(k) for c, k in zip(CLASSES, counts)}}}
    shifted = stream_window(rng, n=120, mix=np.array([0.05, 0.05, 0.9]))
    start = datetime(2027, 1, 4)
    rows = [FilmRow(start, list(p), int(c), None, None, {}) for p, c in zip(shifted.probabilities, shifted.predicted)]
    (window,) = monitor_rows(CLASSES, rows, metrics, "week", baseline=1, alpha=ALPHA).windows
    assert window.baseline and [t.name for t in window.tests] == ["class_mix"] and window.alarms
    (quiet,) = monitor_rows(CLASSES, rows, {}, "week", baseline=1, alpha=ALPHA).windows
    assert quiet.baseline and quiet.tests == []  # nothing recorded: the baseline is the reference, not tested


def test_windows_by_film_count_follow_arrival_order_within_one_day():
    """`--films-per-window 100`: a replay or a busy service is tested every 100 films, all on one day here."""
    rng = np.random.default_rng(17)
    start = datetime(2027, 1, 4, 9)
    rows = []
    for k, mix in enumerate([MIX, MIX, np.array([0.8, 0.1, 0.1])]):
        window = stream_window(rng, n=100 if k < 2 else 50, mix=mix)
        for i in range(len(window.predicted)):
            when = start + timedelta(seconds=100 * k + i)
            rows.append(FilmRow(when, list(window.probabilities[i]), int(window.predicted[i]), None, None, {}))
    report = monitor_rows(CLASSES, rows, {}, "week", baseline=1, alpha=ALPHA, films_per_window=100)
    assert [w.label for w in report.windows] == ["films 1-100", "films 101-200", "films 201-250"]
    assert [len(w.data.predicted) for w in report.windows] == [100, 100, 50]
    assert not report.windows[1].alarms and "class_mix" in {t.name for t in report.windows[2].alarms}
    assert any(line.startswith("model drift: class_mix in films 201-250") for line in report.alert_lines())
    assert table_rows(report)[2]["window"] == "films 201-250"


def test_the_latest_windows_alone_read_as_in_the_whole_report(tmp_path):
    """/v1/health reads the baseline week and the weeks it shows, not every film: those windows' figures, tests and
    alerts are the whole report's, and the weeks between are not read."""
    from sqlalchemy import update

    rng = np.random.default_rng(3)
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), None, salt=b"s")
    start = datetime(2027, 1, 4)  # a Monday
    try:
        key = room.add_reader("ann")
        for week in range(12):
            n = 40
            mix = MIX if week < 10 else np.array([0.7, 0.2, 0.1])  # the last two weeks drift
            for i, c in enumerate(rng.choice(3, n, p=mix)):
                p = [0.1, 0.1, 0.1]
                p[c] = 0.8
                film = room.record(fake_png(week * 100 + i), f"{week}-{i}.png", MODEL, p, CLASSES[c], ood_score=1.0)
                when = start + timedelta(weeks=week, hours=i)
                with room.session() as s:
                    s.execute(update(Film).where(Film.id == film["id"]).values(received_at=when))
                    s.commit()
                if i % 4 == 0:
                    room.add_read(film["id"], key, CLASSES[c] if i % 8 else CLASSES[(c + 1) % 3])
        metrics = {"guard": {"pass_rate": 0.99}, "test": {"accuracy": 0.8}}
        whole = monitor(room, metrics)
        recent = monitor(room, metrics, recent=4)
    finally:
        room.close()
    assert len(whole.windows) == 12 and len(recent.windows) == 1 + 4  # the baseline week and the latest four
    assert table_rows(recent)[-4:] == table_rows(whole)[-4:] and table_rows(recent)[0] == table_rows(whole)[0]
    assert recent.alert_lines() == whole.alert_lines() and any("class" in line for line in whole.alert_lines())
