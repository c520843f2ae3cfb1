"""`cxr site calibrate|adapt`: a model fitted to where it is used, without retraining. `calibrate`: temperature and
threshold on the run's validation split (in place), or on a new site's own labelled films into a new run (`--data SITE
--out NEW [--adapt FILMS...]`); `adapt`: batch-norm statistics re-measured on a site's unlabelled films (AdaBN).
`cxr calibrate` and `cxr adapt` still run them for one release (legacy.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.cli.checks import folder_out
from cxr.cli.legacy import keep_old_spelling
from cxr.cli.output import GROUPS_PANEL, console, warn
from cxr.errors import CxrError
from cxr.rundir import RunDir


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        no_args_is_help=True,
        help="A model at a new site, without retraining: calibrate its "
        "probabilities and threshold, adapt its batch-norm statistics.",
    )
    for name, command in (("calibrate", calibrate), ("adapt", adapt)):
        group.command(name)(command)
        keep_old_spelling(app, name, f"site {name}", command)
    app.add_typer(group, name="site", rich_help_panel=GROUPS_PANEL)


def calibrate(
    run: Path = typer.Argument(..., help="finished run directory"),
    operating_point: str | None = typer.Option(
        None, help="binary: sensitivity=0.95 | specificity=0.90 | youden | none (default: keep the run's rule)"
    ),
    temperature: bool = typer.Option(True, "--temperature/--no-temperature", help="fit temperature scaling"),
    data: Path | None = typer.Option(
        None,
        help="a new site's labelled films (class folders or a manifest, e.g. from `cxr data split SITE "
        "--calibration 0.3`): calibrate on them instead of the run's validation split; needs --out",
    ),
    split: str = typer.Option("calibration", help="with --data: the split of the site set to calibrate on"),
    out: Path | None = typer.Option(
        None,
        help="with --data: new run directory for the site-calibrated model (RUN is not changed)",
        callback=folder_out,
    ),
    adapt: list[Path] | None = typer.Option(
        None,
        help="with --data: first re-estimate batch-norm statistics (AdaBN) on these unlabelled site films or "
        "folders (repeat the option for more)",
    ),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass"),
) -> None:
    """Fit temperature (and the operating-point threshold) on the run's validation split, without retraining;
    with --data, on a new site's labelled films, written as a new run that `cxr evaluate` refuses to score them with."""
    if data is None:
        if out is not None or adapt:
            raise CxrError("--out and --adapt belong to site calibration; add --data SITE (its labelled films)")
        return _calibrate_in_place(run, operating_point, temperature, batch_size)
    if out is None:
        raise CxrError(f"--data needs --out NEW: site calibration writes a new run and keeps {run} as it is")
    from cxr.evaluation.site import calibrate_on_site

    result = calibrate_on_site(run, data, out, split, adapt, operating_point, temperature, batch_size, progress=True)
    if result.adapted is not None:
        a = result.adapted
        for msg in a.skipped:
            warn(f"skipped {msg}")
        console.print(f"adapted: {a.batch_norm_layers} batch-norm layers re-estimated on {a.images} unlabelled films")
    counts = ", ".join(f"{n} {c}" for c, n in result.record["n_per_class"].items())
    console.print(f"calibrated on {result.record['n']} films of site {result.record['site']} ({counts})")
    console.print(_summary_line(result.calibration, "site"))
    console.print(
        f"wrote {result.path} ({run} is unchanged); score the site's other films with "
        f"`cxr evaluate {out} --data {data} --split test`",
        soft_wrap=True,
    )


def adapt(
    run: Path = typer.Argument(..., help="finished run directory (model bundle); it is not changed"),
    inputs: list[Path] = typer.Argument(..., help="unlabeled images from the new site: files and/or folders"),
    out: Path = typer.Option(..., help="new run directory for the adapted model", callback=folder_out),
    batch_size: int = typer.Option(32, min=1, help="images per forward pass"),
) -> None:
    """Adapt a model to a new site without labels: batch-norm statistics re-measured on its images (AdaBN)."""
    from cxr.inference.adapt import adapt_batchnorm

    result = adapt_batchnorm(run, inputs, out, batch_size=batch_size, progress=True)
    for msg in result.skipped:
        warn(f"skipped {msg}")
    console.print(
        f"wrote {result.path}: {result.batch_norm_layers} batch-norm layers re-estimated on {result.images} images "
        f"({len(result.skipped)} skipped); temperature and threshold kept from {run}"
    )


def _calibrate_in_place(run: Path, operating_point: str | None, temperature: bool, batch_size: int) -> None:
    from cxr.evaluation.calibration import calibrate_run

    cal = calibrate_run(run, operating_point, fit_temp=temperature, batch_size=batch_size, progress=True)
    console.print(_summary_line(cal, "validation"))
    console.print(f"updated {RunDir(run).model}; re-run `cxr evaluate {run}` for test figures")


def _summary_line(cal, where: str) -> str:
    s = cal.summary
    line = (
        f"temperature {cal.temperature:.3f} ({where} NLL {s['nll_before']:.4f} -> {s['nll_after']:.4f}, "
        f"ECE {s['ece_before']:.3f} -> {s['ece_after']:.3f})"
    )
    if cal.threshold is not None:
        line += (
            f"; threshold {cal.threshold:.4f} for {cal.operating_point}: {where} sensitivity "
            f"{s['val_sensitivity']:.3f}, specificity {s['val_specificity']:.3f}"
        )
    return line
