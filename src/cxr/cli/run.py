"""`cxr run export|guard|ensemble`: operations on finished runs (an ONNX copy, the input guard, an ensemble of runs).
`cxr export`, `cxr guard` and `cxr ensemble` still run them for one release (legacy.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.cli.checks import folder_out
from cxr.cli.legacy import keep_old_spelling
from cxr.cli.output import GROUPS_PANEL, console
from cxr.errors import CxrError
from cxr.rundir import RunDir


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        no_args_is_help=True,
        help="Operations on finished runs: export to ONNX, fit the input guard, combine runs into an ensemble.",
    )
    for name, command in (("export", export), ("guard", guard), ("ensemble", ensemble_runs)):
        group.command(name)(command)
        keep_old_spelling(app, name, f"run {name}", command)
    app.add_typer(group, name="run", rich_help_panel=GROUPS_PANEL)


def export(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    format: str = typer.Option("onnx", "--format", help="onnx (the only format so far)"),
) -> None:
    """Export the model for fast inference: writes model.onnx into the run, checked against PyTorch."""
    from cxr.inference.onnx_export import PARITY_TOLERANCE, export_onnx

    if format != "onnx":
        raise CxrError(f"--format must be onnx, not {format!r}")
    result = export_onnx(run)
    console.print(
        f"wrote {result.path} in {result.seconds} s; ONNX Runtime vs PyTorch max probability difference "
        f"{result.max_abs_diff:.1e} (limit {PARITY_TOLERANCE:.0e}); `cxr predict` and `cxr serve` now use it"
    )


def guard(run: Path = typer.Argument(..., help="finished run directory (model bundle)")) -> None:
    """Fit (again) the input guard of a run on its own training films, with the threshold that 99 % of its
    validation films pass; for models saved before cxr 0.6 and ensembles combined by hand."""
    from cxr.inference.guard_fit import fit_run_guard

    fitted = fit_run_guard(run)
    console.print(
        f"input guard fitted on {fitted['train_images']} training films ({sum(fitted['feature_dims'])} features "
        f"at {len(fitted['feature_dims'])} depths); "
        f"{100 * fitted['pass_rate']:.1f} % of {fitted['threshold_images']} {fitted['threshold_from']} "
        f"films pass; updated {RunDir(run).model}"
    )


def ensemble_runs(
    runs: list[Path] = typer.Argument(..., help="finished runs with the same classes, image size and validation split"),
    out: Path = typer.Option(..., help="run directory for the ensemble bundle", callback=folder_out),
    operating_point: str | None = typer.Option(None, help="binary: threshold rule chosen again on validation"),
) -> None:
    """Combine finished runs into one bundle that averages their probabilities (temperature refitted on val)."""
    from cxr.evaluation.calibration import calibrate_run
    from cxr.inference.ensemble import combine_runs

    if RunDir(out).model.exists():  # never over a member or an earlier model
        raise CxrError(f"{out} already holds a model; choose another --out")
    combine_runs(runs, out)
    try:
        cal = calibrate_run(out, operating_point or "none")
    except BaseException:
        RunDir(out).model.unlink(missing_ok=True)  # an uncalibrated bundle must not look like a finished model
        raise
    console.print(f"wrote {RunDir(out).model}: {len(runs)} members, validation temperature {cal.temperature:.3f}")
