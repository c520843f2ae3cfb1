"""`cxr explain` and `cxr audit-shortcuts`: where the model looks (cli.py registers them and reports errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxr.cli_checks import folder_out, split_name
from cxr.cli_output import console, print_table, warn
from cxr.errors import CxrError


def explain(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    inputs: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
    out: Path = typer.Option(..., help="folder for the overlay PNGs and explanations.csv", callback=folder_out),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++"),
    layer: Optional[str] = typer.Option(None, help="target layer name (default: last layer with a spatial map)"),
    class_name: Optional[str] = typer.Option(None, "--class", help="class to explain (default: the predicted one)"),
    alpha: float = typer.Option(0.5, min=0.0, max=1.0, help="heatmap opacity at its hottest"),
    feature_maps: bool = typer.Option(False, "--feature-maps", help="also write the first conv layers' activations"),
    batch_size: int = typer.Option(16, min=1, help="images per forward pass"),
) -> None:
    """Grad-CAM overlays: where the model looked, with predicted class, probability and (if known) true label."""
    from cxr.explain.images import explain_images
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run)
    result = explain_images(bundle, inputs, out, method=method, layer=layer, class_name=class_name, alpha=alpha,
                            feature_maps=feature_maps, batch_size=batch_size, progress=True)  # fmt: skip
    for msg in result.errors:
        warn(f"skipped {msg}")
    if not result.files:
        raise CxrError("no readable images to explain")
    console.print(f"{len(result.files)} explained with {method} on layer {result.layer!r}; wrote {out}/, {result.csv}")


def audit_shortcuts(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Optional[Path] = typer.Option(None, help="dataset root with the same classes (default: the run's data)"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: RUN/audit)", callback=folder_out),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++"),
    layer: Optional[str] = typer.Option(None, help="target layer (default: last layer with a spatial map)"),
    border: float = typer.Option(0.1, min=0.0, max=0.45, help="border band, as a fraction of each side"),
    flag_above: float = typer.Option(0.5, min=0.0, max=1.0, help="flag images with more border mass than this"),
) -> None:
    """Shortcut audit: Grad-CAM mass on the image border (markers, text) per class; flags border-heavy images."""
    from cxr.explain.shortcut import audit_run

    summary, paths = audit_run(run, split, data, out, method, layer, border, flag_above, progress=True)
    title = f"Grad-CAM mass on the outer {border:.0%} border ({split})"
    table = Table("class", "n", "mean", "median", "p90", "flagged", title=title)
    for name, st in [*summary["per_class"].items(), ("all", summary["overall"])]:
        if "mean" in st:
            table.add_row(name, str(st["n"]), f"{st['mean']:.3f}", f"{st['median']:.3f}", f"{st['p90']:.3f}",
                          f"{st['flagged']} ({st['flagged_share']:.0%})")  # fmt: skip
    print_table(table)
    if summary["unreadable_skipped"]:
        warn(f"{summary['unreadable_skipped']} unreadable image(s) skipped")
    written = ", ".join(map(str, paths.values()))
    console.print(f"a uniform map puts {summary['uniform_baseline']:.2f} on the border; wrote {written}")
