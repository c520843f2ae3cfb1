"""`cxr predict` and `cxr explain`: a model on new films, what it predicts and where it looked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxr.cli.checks import csv_out, folder_out
from cxr.cli.output import console, display_path, print_table, warn
from cxr.errors import CxrError

TTA_HELP = "average each image's prediction over nine small shifts, rotations and zooms (9x slower)"


def register(app: typer.Typer) -> None:
    for command in (predict, explain):
        app.command()(command)


def no_guard_notice(bundle) -> None:
    """Said once per command: an old model predicts as before, with nothing to say about unfamiliar inputs."""
    if bundle.guard is None:
        warn(
            f"this model has no input guard (saved by cxr {bundle.info.get('cxr_version', '?')}), so films unlike "
            "its training films are not flagged; `cxr run guard RUN` fits one"
        )


def predict(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    inputs: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
    out: Path | None = typer.Option(
        None,
        help="CSV file: path, predicted class, one probability per class, ood_score, in_distribution",
        callback=csv_out,
    ),
    batch_size: int = typer.Option(32, min=1, help="images decoded and predicted together"),
    backend: str = typer.Option(
        "auto", help="auto (onnx when `cxr run export` made model.onnx, else torch) | onnx | torch"
    ),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    reject_ood: bool = typer.Option(
        False, "--reject-ood", help="leave out images the input guard flags as unlike the training films"
    ),
) -> None:
    """Predict classes for images and folders of images; the input guard flags films unlike the training films."""
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run, backend=backend)
    no_guard_notice(bundle)
    preds = bundle.predict(inputs, batch_size=batch_size, progress=True, tta=tta)
    for msg in preds.errors:
        warn(f"skipped {msg}")
    if not preds.paths:
        raise CxrError(
            f"no readable image among the inputs ({len(preds.errors)} skipped); pass image files "
            "(PNG, JPEG, DICOM) or folders that hold them"
        )
    flagged = preds.flagged
    guarded = preds.in_distribution is not None
    for i in [] if not guarded else [i for i, ok in enumerate(preds.in_distribution) if not ok][:20]:
        warn(f"{display_path(preds.paths[i], inputs)}: unlike the training films ({preds.ood_reason[i]})")
    if reject_ood and guarded:
        preds = preds.subset(preds.in_distribution)
    table = Table("file", "predicted", *[f"p({c})" for c in preds.classes], *(["ood", "in dist."] if guarded else []))
    shown = 20
    for i, (p, label, probs) in enumerate(list(zip(preds.paths, preds.predicted, preds.probabilities))[:shown]):
        guard = [f"{preds.ood_score[i]:.2f}", "yes" if preds.in_distribution[i] else "NO"] if guarded else []
        table.add_row(display_path(p, inputs), label, *[f"{x:.3f}" for x in probs], *guard)
    print_table(table)
    if len(preds.paths) > shown:
        where = f"all of them in {out}" if out is not None else "pass --out FILE.csv for all of them"
        console.print(f"... and {len(preds.paths) - shown} more ({where})")
    rejected = f", {flagged} flagged as unlike the training films" + (" and left out" if reject_ood else "")
    console.print(
        f"{len(preds.paths)} predicted, {len(preds.errors)} skipped{rejected if guarded else ''} "
        f"({bundle.backend} backend)"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        preds.write_csv(out)
        console.print(f"wrote {out}")


def explain(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    inputs: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
    out: Path = typer.Option(..., help="folder for the overlay PNGs and explanations.csv", callback=folder_out),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++"),
    layer: str | None = typer.Option(None, help="target layer name (default: last layer with a spatial map)"),
    class_name: str | None = typer.Option(None, "--class", help="class to explain (default: the predicted one)"),
    alpha: float = typer.Option(0.5, min=0.0, max=1.0, help="heatmap opacity at its hottest"),
    feature_maps: bool = typer.Option(False, "--feature-maps", help="also write the first conv layers' activations"),
    batch_size: int = typer.Option(16, min=1, help="images per forward pass"),
) -> None:
    """Grad-CAM overlays: where the model looked, with predicted class, probability and (if known) true label."""
    from cxr.explain.images import explain_images
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run)
    result = explain_images(
        bundle,
        inputs,
        out,
        method=method,
        layer=layer,
        class_name=class_name,
        alpha=alpha,
        feature_maps=feature_maps,
        batch_size=batch_size,
        progress=True,
    )
    for msg in result.errors:
        warn(f"skipped {msg}")
    if not result.files:
        raise CxrError("no readable images to explain")
    console.print(f"{len(result.files)} explained with {method} on layer {result.layer!r}; wrote {out}/, {result.csv}")
