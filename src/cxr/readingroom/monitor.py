"""`cxr monitor`: the served films and the readers' reads, per day or week, against the model's own figures.

Per window: the predicted-class mix, the mean probability per class, the label-free expected accuracy, the guard's
scores and flag rate, the input statistics the guard read, and the readers' agreement with the model (per class, how
often a reader overrules it). Each window is tested by cxr.readingroom.drift against a reference: what the bundle
recorded (metrics.json: the guard's validation pass rate, the test accuracy, the test split's predicted-class mix,
and "val_reference", the validation films' class counts, largest probabilities and guard scores, when training wrote
it), else the baseline period, the first windows of the stream.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select

from cxr.atomic import atomic_path
from cxr.figures import plt, save_figure
from cxr.readingroom import queries
from cxr.readingroom.drift import (
    ALPHA,
    INPUT_STATS,
    Reference,
    TestResult,
    WindowData,
    expected_accuracy,
    overrule_rates,
    window_tests,
)
from cxr.readingroom.schema import GUARD_FLAG, INDETERMINATE, Film, Read
from cxr.readingroom.service import ReadingRoom, normal_class
from cxr.rundir import VAL_REFERENCE

PERIODS = ("day", "week")
FILMS = "films"  # the period of windows by film count (`cxr monitor --films-per-window N`)


@dataclass
class FilmRow:
    received_at: datetime
    probabilities: list[float]
    predicted: int
    guard_score: float | None
    guard_verdict: str | None
    inputs: dict[str, Any]
    reads: list[int] = field(default_factory=list)  # the readers' current labels (class indices)


@dataclass
class WindowReport:
    start: date
    data: WindowData
    baseline: bool
    tests: list[TestResult]
    expected_accuracy: float
    overrule: dict[str, float | None]
    label: str  # how tables and alerts name it: "2027-01-18", or "films 201-300" for windows by film count

    @property
    def alarms(self) -> list[TestResult]:
        return [t for t in self.tests if t.alarm]


@dataclass
class MonitorReport:
    classes: list[str]
    period: str
    alpha: float
    reference: Reference
    windows: list[WindowReport]

    def alert_lines(self) -> list[str]:
        """One line per alarm in the latest tested window: what the service logs and /v1/health shows."""
        tested = [w for w in self.windows if w.tests]
        if not tested:
            return []
        last = tested[-1]
        where = last.label if self.period == FILMS else f"the {self.period} of {last.start}"
        return [
            f"model drift: {t.name} in {where} (p = {t.p_value:.2g} < {self.alpha:g}/{len(last.tests)}; {t.detail})"
            for t in last.alarms
        ]


def window_start(when: datetime, period: str) -> date:
    day = when.date()
    return day - timedelta(days=day.weekday()) if period == "week" else day


def load_films(
    room: ReadingRoom, classes: list[str] | None = None, spans: list[tuple[datetime, datetime | None]] | None = None
) -> tuple[list[str], list[FilmRow]]:
    """Films served under `classes` (default: the latest film's), oldest first, with their current reads; only those
    received within `spans` ([start, end), end None: open) when given."""
    in_spans = or_(*(_within(start, end) for start, end in spans)) if spans else None
    with room.session() as session:
        classes = _latest_classes(session) if classes is None else classes
        index = {c: i for i, c in enumerate(classes)}
        films: dict[str, FilmRow] = {}
        query = select(Film).order_by(Film.received_at, Film.id)
        if in_spans is not None:
            query = query.where(in_spans)
        for f in session.scalars(query.execution_options(yield_per=1000)):
            if list(f.classes) != list(classes):
                continue
            films[f.id] = FilmRow(
                f.received_at,
                list(f.probabilities),
                index[f.predicted],
                f.ood_score,
                f.guard_verdict,
                f.input_stats or {},
            )
        reads = select(Read.film_id, Read.label).where(queries.current_reads(), Read.label != INDETERMINATE)
        if in_spans is not None:
            reads = reads.join(Film, Film.id == Read.film_id).where(in_spans)
        for film_id, label in session.execute(reads):
            if film_id in films and label in index:
                films[film_id].reads.append(index[label])
    return list(classes), list(films.values())


def _latest_classes(session) -> list[str]:
    """The classes of the latest film served: the model the room serves now."""
    return session.scalar(select(Film.classes).order_by(Film.received_at.desc()).limit(1)) or []


def _within(start: datetime, end: datetime | None):
    return Film.received_at >= start if end is None else and_(Film.received_at >= start, Film.received_at < end)


def recent_spans(
    room: ReadingRoom, classes: list[str] | None, period: str, baseline: int, recent: int
) -> tuple[list[str] | None, list[tuple[datetime, datetime | None]] | None]:
    """The received-at spans of the baseline windows and of the latest `recent` windows of the films served under
    `classes`: all a report of those windows reads (None: the whole stream is that short, or empty)."""
    step = timedelta(weeks=1) if period == "week" else timedelta(days=1)
    with room.session() as session:
        classes = _latest_classes(session) if classes is None else classes
        ends = []
        for order in (Film.received_at, Film.received_at.desc()):  # the first and the latest film of these classes
            rows = session.execute(
                select(Film.received_at, Film.classes).order_by(order).execution_options(yield_per=200)
            )
            ends.append(next((at for at, c in rows if list(c) == list(classes)), None))
    if ends[0] is None:
        return classes, None
    first, latest = (datetime.combine(window_start(at, period), datetime.min.time()) for at in ends)
    baseline_end = first + baseline * step
    recent_start = latest - (recent - 1) * step
    if recent_start <= baseline_end:
        return classes, None
    return classes, [(first, baseline_end), (recent_start, None)]


def window_data(rows: list[FilmRow], n_classes: int) -> WindowData:
    scores = [r.guard_score for r in rows if r.guard_score is not None and math.isfinite(r.guard_score)]
    return WindowData(
        probabilities=np.array([r.probabilities for r in rows], float).reshape(-1, n_classes),
        predicted=np.array([r.predicted for r in rows], int),
        guard_scores=np.array(scores, float),
        guard_flags=sum(r.guard_verdict == GUARD_FLAG for r in rows),
        guard_known=sum(r.guard_verdict is not None for r in rows),
        inputs={
            name: np.array([float(r.inputs[name]) for r in rows if isinstance(r.inputs.get(name), (int, float))])
            for name in INPUT_STATS
        },
        reads=np.array([(r.predicted, label) for r in rows for label in r.reads], int).reshape(-1, 2),
    )


def bundle_reference(metrics: dict[str, Any], classes: list[str]) -> Reference:
    """What the bundle's metrics.json recorded about the model on held-out films."""
    ref = Reference(list(classes))
    guard = metrics.get("guard") or {}
    if isinstance(guard.get("pass_rate"), (int, float)):
        ref.flag_rate, ref.source["guard_flag_rate"] = 1.0 - float(guard["pass_rate"]), "bundle (guard pass rate)"
    val = metrics.get(VAL_REFERENCE) or {}  # written at the end of training (none after a refit)
    counts = val.get("predicted_counts")
    if isinstance(counts, dict) and set(counts) == set(classes) and sum(counts.values()) > 0:
        mix = np.array([counts[c] for c in classes], float)
        ref.mix, ref.source["class_mix"] = mix / mix.sum(), "bundle (val)"
    for name, key in (("confidence", "max_probability"), ("guard_scores", "guard_scores")):
        if isinstance(val.get(key), list) and val[key]:
            setattr(ref, name, np.array(val[key], float))
            ref.source[name] = "bundle (val)"
    test = metrics.get("test") or {}
    matrix = test.get("confusion_matrix")
    if ref.mix is None and matrix and test.get("classes") == list(classes):
        predicted = np.asarray(matrix, float).sum(axis=0)  # columns: what the model called the test films
        if predicted.sum() > 0:
            ref.mix, ref.source["class_mix"] = predicted / predicted.sum(), "bundle (test predictions)"
    if isinstance(test.get("accuracy"), (int, float)):
        ref.agreement, ref.source["agreement"] = float(test["accuracy"]), "bundle (test accuracy)"
    return ref


def fill_from_baseline(ref: Reference, base: WindowData) -> Reference:
    """Whatever the bundle did not record, from the baseline period."""
    n = len(base.predicted)
    if ref.mix is None and n:
        ref.mix, ref.source["class_mix"] = np.bincount(base.predicted, minlength=len(ref.classes)) / n, "baseline"
    if ref.confidence is None and n:
        ref.confidence, ref.source["confidence"] = base.probabilities.max(axis=1), "baseline"
    if ref.guard_scores is None and len(base.guard_scores):
        ref.guard_scores, ref.source["guard_scores"] = base.guard_scores, "baseline"
    for name, values in base.inputs.items():
        if name not in ref.inputs and len(values):
            ref.inputs[name], ref.source[f"input_{name}"] = values, "baseline"
    if ref.agreement is None and len(base.reads):
        ref.agreement = float((base.reads[:, 0] == base.reads[:, 1]).mean())
        ref.source["agreement"] = "baseline"
    return ref


def monitor(
    room: ReadingRoom,
    metrics: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    period: str = "week",
    baseline: int = 1,
    alpha: float = ALPHA,
    films_per_window: int | None = None,
    recent: int | None = None,
) -> MonitorReport:
    """Every window of the stream with its figures and tests; the first `baseline` windows are the reference for
    what the bundle did not record, and are tested only against what it did (so a service alerts in its first
    week when the bundle has a validation reference). `recent`: only the baseline and the latest `recent` windows
    are read and reported, each as in the whole report (what /v1/health shows: a large room stays a small query)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: one of {', '.join(PERIODS)}")
    spans = None
    if recent and not films_per_window:
        classes, spans = recent_spans(room, classes, period, baseline, recent)
    classes, rows = load_films(room, classes, spans)
    return monitor_rows(classes, rows, metrics or {}, period, baseline, alpha, films_per_window)


def monitor_rows(
    classes: list[str],
    rows: list[FilmRow],
    metrics: dict[str, Any],
    period: str,
    baseline: int,
    alpha: float,
    films_per_window: int | None = None,
) -> MonitorReport:
    """`films_per_window`: windows of that many films in arrival order instead of days or weeks (a busy service
    tests every few hours; a benchmark replays weeks in minutes)."""
    groups: list[tuple[date, str, list[FilmRow]]] = []
    if films_per_window:
        for i in range(0, len(rows), films_per_window):
            chunk = rows[i : i + films_per_window]
            groups.append((chunk[0].received_at.date(), f"films {i + 1}-{i + len(chunk)}", chunk))
        period = FILMS
    else:
        grouped: dict[date, list[FilmRow]] = defaultdict(list)
        for r in rows:
            grouped[window_start(r.received_at, period)].append(r)
        groups = [(start, start.isoformat(), grouped[start]) for start in sorted(grouped)]
    base_rows = [r for _, _, chunk in groups[:baseline] for r in chunk]
    ref = fill_from_baseline(bundle_reference(metrics, classes), window_data(base_rows, len(classes)))
    recorded = bundle_reference(metrics, classes)  # a baseline window is tested against this alone (not itself)
    normal = classes.index(normal_class(classes)) if classes else 0
    windows = []
    for i, (start, label, chunk) in enumerate(groups):
        data = window_data(chunk, len(classes))
        is_base = i < baseline
        tests = window_tests(data, recorded if is_base else ref, alpha)
        windows.append(
            WindowReport(
                start,
                data,
                is_base,
                tests,
                expected_accuracy(data.probabilities),
                overrule_rates(data.reads, classes, normal),
                label,
            )
        )
    return MonitorReport(list(classes), period, alpha, ref, windows)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def table_rows(report: MonitorReport) -> list[dict[str, Any]]:
    """One flat row per window: the console table, the CSV and the worklist's "model health" section."""
    names = sorted({t.name for w in report.windows for t in w.tests})
    out = []
    for w in report.windows:
        d, n = w.data, len(w.data.predicted)
        row: dict[str, Any] = {"window": w.label, "films": n, "baseline": w.baseline}
        for c, name in enumerate(report.classes):
            row[f"share_{name}"] = float((d.predicted == c).mean()) if n else None
            row[f"mean_p_{name}"] = float(d.probabilities[:, c].mean()) if n else None
        row["expected_accuracy"] = None if not n else w.expected_accuracy
        row["reads"] = len(d.reads)
        row["agreement"] = float((d.reads[:, 0] == d.reads[:, 1]).mean()) if len(d.reads) else None
        for name, rate in w.overrule.items():
            row[f"overruled_{name}"] = rate
        row["guard_known"] = d.guard_known
        row["guard_flag_rate"] = d.guard_flags / d.guard_known if d.guard_known else None
        row["guard_score_median"] = float(np.median(d.guard_scores)) if len(d.guard_scores) else None
        for name in INPUT_STATS:
            row[f"mean_{name}"] = _mean(d.inputs.get(name, np.array([])))
        results = {t.name: t for t in w.tests}
        for name in names:
            row[f"p_{name}"] = results[name].p_value if name in results else None
        row["alarms"] = " ".join(t.name for t in w.alarms)
        out.append(row)
    return out


def write_csv(report: MonitorReport, path: Path) -> Path:
    rows = table_rows(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["window"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(report: MonitorReport, path: Path) -> Path:
    """Class mix, expected accuracy vs agreement, and the guard's flag rate per window; alarms marked in red."""
    rows = table_rows(report)
    x = np.arange(len(rows))
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    bottom = np.zeros(len(rows))
    for name in report.classes:
        shares = np.array([r[f"share_{name}"] or 0.0 for r in rows])
        axes[0].bar(x, shares, bottom=bottom, label=name)
        bottom += shares
    axes[0].set_ylabel("predicted share")
    axes[0].legend(fontsize=8, loc="upper right")
    for key, label in (("expected_accuracy", "expected accuracy (label-free)"), ("agreement", "readers agree")):
        axes[1].plot(x, [np.nan if r[key] is None else r[key] for r in rows], marker="o", label=label)
    axes[1].set_ylabel("share")
    axes[1].legend(fontsize=8)
    axes[2].plot(x, [np.nan if r["guard_flag_rate"] is None else r["guard_flag_rate"] for r in rows], marker="o")
    if report.reference.flag_rate is not None:
        axes[2].axhline(report.reference.flag_rate, color="gray", linestyle="--", label="expected (validation)")
        axes[2].legend(fontsize=8)
    axes[2].set_ylabel("guard flag rate")
    for ax in axes:
        for i, r in enumerate(rows):
            if r["alarms"]:
                ax.axvspan(i - 0.45, i + 0.45, color="red", alpha=0.12)
    axes[2].set_xticks(x, [r["window"] for r in rows], rotation=45, ha="right", fontsize=8)
    axes[0].set_title(f"cxr monitor, per {report.period} (red: a drift test fired at family rate {report.alpha:g})")
    return save_figure(fig, path)
