"""`cxr predict`, `cxr stress` and `cxr guard`: predictions, and when not to trust them (cli.py registers them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxr.cli_checks import csv_out, split_name
from cxr.cli_output import console, display_path, print_table, warn
from cxr.errors import CxrError

TTA_HELP = "average each image's prediction over nine small shifts, rotations and zooms (9x slower)"


def no_guard_notice(bundle) -> None:
    """Said once per command: an old model predicts as before, with nothing to say about unfamiliar inputs."""
    if bundle.guard is None:
        warn(f"this model has no input guard (saved by cxr {bundle.info.get('cxr_version', '?')}), so films unlike "
             "its training films are not flagged; `cxr guard RUN` fits one")  # fmt: skip


def predict(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    inputs: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
    out: Optional[Path] = typer.Option(
        None, help="CSV file: path, predicted class, one probability per class, ood_score, in_distribution",
        callback=csv_out,
    ),  # fmt: skip
    batch_size: int = typer.Option(32, min=1, help="images decoded and predicted together"),
    backend: str = typer.Option("auto", help="auto (onnx when `cxr export` made model.onnx, else torch) | onnx | torch"),
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
        raise CxrError(f"no readable image among the inputs ({len(preds.errors)} skipped); pass image files "
                       "(PNG, JPEG, DICOM) or folders that hold them")  # fmt: skip
    flagged = preds.flagged
    guarded = preds.in_distribution is not None
    for i in ([] if not guarded else [i for i, ok in enumerate(preds.in_distribution) if not ok][:20]):
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
    console.print(f"{len(preds.paths)} predicted, {len(preds.errors)} skipped{rejected if guarded else ''} "
                  f"({bundle.backend} backend)")  # fmt: skip
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        preds.write_csv(out)
        console.print(f"wrote {out}")


def stress(
    run: Path = typer.Argument(..., help="finished run directory (model bundle, ensemble or not)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Optional[Path] = typer.Option(None, help="another dataset root (or manifest) with the same classes"),
    shift: Optional[list[str]] = typer.Option(None, help="run only this shift (repeatable; default: all)"),
    severity: Optional[int] = typer.Option(None, help="run only this severity, 1 (mild) to 4 (severe)"),
    backend: str = typer.Option("auto", help="auto (onnx when `cxr export` made model.onnx: fastest) | onnx | torch"),
    batch_size: int = typer.Option(64, min=1, help="images predicted together"),
    seed: int = typer.Option(0, help="seed of the random shifts (noise)"),
    device: str = typer.Option("cpu", help="cpu | cuda: where the torch backend runs the model (the shifts: CPU)"),
) -> None:
    """The model's figures under acquisition shifts (gamma, contrast, blur, noise, JPEG, resolution, geometry,
    padding, inversion, markers, collimation), each at up to 4 severities, beside the clean figures."""
    from cxr.evaluation.shifts import SHIFTS
    from cxr.evaluation.stress import run_stress

    if device not in ("cpu", "cuda"):
        raise CxrError(f"--device {device!r}: choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CxrError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")
        backend = "torch"
    section = run_stress(run, split, data, backend, shift, severity, batch_size, seed, progress=True, device=device)
    clean, s = section["clean"], section["summary"]
    table = Table("shift", "unit", *[f"sev. {k}" for k in range(1, 5)], "mean", title=f"accuracy under shift "
                  f"({section['key']}, n={section['n']}; clean {clean['accuracy']:.3f})")  # fmt: skip
    for name, mean in s["shift_means"].items():
        cells = {r["severity"]: f"{r['accuracy']:.3f}" for r in section["conditions"] if r["shift"] == name}
        table.add_row(name, SHIFTS[name].unit, *[cells.get(k, "") for k in range(1, 5)], f"{mean:.3f}")
    print_table(table)
    w = s["worst_condition"]
    console.print(f"clean {clean['accuracy']:.3f}; mean under shift {s['mean_accuracy']:.3f}; weakest shift "
                  f"{s['worst_shift']['shift']} (mean {s['worst_shift']['mean_accuracy']:.3f}); worst condition "
                  f"{w['shift']} at severity {w['severity']} ({w['accuracy']:.3f}); {section['seconds']} s on the "
                  f"{section['backend']} backend")  # fmt: skip
    key = section["key"]
    console.print(f"wrote metrics.json['{key}']['stress'], {run / f'stress_{key}.csv'} and "
                  f"{run / 'plots' / f'stress_{key}.png'}")  # fmt: skip


def guard(run: Path = typer.Argument(..., help="finished run directory (model bundle)")) -> None:
    """Fit (again) the input guard of a run on its own training films, with the threshold that 99 % of its
    validation films pass; for models saved before cxr 0.6 and ensembles combined by hand."""
    from cxr.inference.guard_fit import fit_run_guard

    fitted = fit_run_guard(run)
    console.print(f"input guard fitted on {fitted['train_images']} training films ({sum(fitted['feature_dims'])} features at {len(fitted['feature_dims'])} depths); "
                  f"{100 * fitted['pass_rate']:.1f} % of {fitted['threshold_images']} {fitted['threshold_from']} "
                  f"films pass; updated {run / 'model.pt'}")  # fmt: skip
