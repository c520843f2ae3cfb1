"""`cxr monitor RUN`: the model's health over the films the service scored (docs/reading-room.md, "Monitoring")."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxr.cli.output import console, print_table, warn


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def monitor_command(
    run_dir: Path = typer.Argument(..., help="the run directory the service serves (its metrics.json: the reference)"),
    db: str | None = typer.Option(None, "--db", help="reading-room database (default: RUN/reading.db)"),
    period: str = typer.Option("week", help="window: day or week"),
    baseline: int = typer.Option(
        1, min=0, help="first windows that stand in for what the bundle did not record (not tested themselves)"
    ),
    films_per_window: int | None = typer.Option(
        None, min=30, help="windows of this many films in arrival order instead of days or weeks"
    ),
    out: Path | None = typer.Option(None, help="folder for monitor.csv and monitor.png"),
) -> None:
    """Per day or week: class mix, mean probabilities, guard scores and flags, input statistics and the readers'
    agreement, each tested for drift at a 1 % family false-alarm rate per window (Bonferroni)."""
    from cxr.cli.reading import open_room
    from cxr.errors import CxrError
    from cxr.readingroom.monitor import PERIODS, monitor, plot, table_rows, write_csv
    from cxr.rundir import RunDir

    if period not in PERIODS:
        raise CxrError(f"--period {period}: one of {', '.join(PERIODS)}")
    room = open_room(db or str(run_dir))
    try:
        report = monitor(
            room, RunDir(run_dir).read_metrics(), period=period, baseline=baseline, films_per_window=films_per_window
        )
    finally:
        room.close()
    rows = table_rows(report)
    windows = f"window(s) of {films_per_window} films" if films_per_window else f"{period}(s)"
    table = Table(
        "window" if films_per_window else period,
        "films",
        *(f"% {c}" for c in report.classes),
        "exp. acc",
        "reads",
        "agree",
        "flagged",
        "score med",
        "alarms",
        title=f"cxr monitor: {len(rows)} {windows}; family false-alarm rate {report.alpha:g} per window",
    )
    for r in rows:
        shares = [_fmt(None if r[f"share_{c}"] is None else 100 * r[f"share_{c}"]) for c in report.classes]
        alarms = "baseline" if r["baseline"] else r["alarms"] or "-"
        table.add_row(
            r["window"],
            str(r["films"]),
            *shares,
            _fmt(r["expected_accuracy"]),
            str(r["reads"]),
            _fmt(r["agreement"]),
            _fmt(r["guard_flag_rate"]),
            _fmt(r["guard_score_median"]),
            alarms,
        )
    print_table(table)
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(report.reference.source.items())) or "none"
    console.print(f"reference: {sources}")
    for line in report.alert_lines():
        warn(line)
    if out is not None:
        console.print(f"wrote {write_csv(report, out / 'monitor.csv')}")
        if rows:
            console.print(f"wrote {plot(report, out / 'monitor.png')}")
