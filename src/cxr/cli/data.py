"""`cxr data split|audit|dedup|preview|audit-shortcuts`: dataset tools, and the shortcut audit of a model on a
dataset (`cxr audit-shortcuts` still runs it for one release, legacy.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxr.cli.checks import csv_out, folder_out, image_out, split_name
from cxr.cli.legacy import keep_old_spelling
from cxr.cli.output import GROUPS_PANEL, console, err_console, print_table, warn
from cxr.rundir import PLOTS

PATIENT_PATTERN_HELP = "regex for patient ids in file names ('' = none; default: the Kermany names)"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        no_args_is_help=True,
        help="Dataset tools: split, audit, dedup, preview; audit-shortcuts: "
        "does a model look at the film's border (markers, text)?",
    )
    for name, command in (
        ("split", data_split),
        ("audit", data_audit),
        ("dedup", data_dedup),
        ("preview", data_preview),
        ("audit-shortcuts", audit_shortcuts),
    ):
        group.command(name)(command)
    keep_old_spelling(app, "audit-shortcuts", "data audit-shortcuts", audit_shortcuts)
    app.add_typer(group, name="data", rich_help_panel=GROUPS_PANEL)


def data_split(
    data: Path = typer.Argument(..., help="class folders (train/<class>/ or <class>/) or a CSV manifest; all pooled"),
    out: Path = typer.Option(..., help="manifest CSV to write: path,label,patient_id,split", callback=csv_out),
    val: float | None = typer.Option(None, help="validation fraction of all images (default 0.1)"),
    test: float | None = typer.Option(None, help="test fraction of all images (default 0.2)"),
    calibration: float | None = typer.Option(
        None,
        help="a new site's labelled films instead: this fraction to calibrate a model on (`cxr site "
        "calibrate --data`), the rest to score it on (test); e.g. 0.3",
    ),
    by_patient: bool = typer.Option(True, "--by-patient/--by-image", help="keep each patient's images in one split"),
    seed: int = typer.Option(0, help="seed of the split"),
    patient_pattern: str | None = typer.Option(None, help=PATIENT_PATTERN_HELP),
) -> None:
    """Write a stratified, seeded train/val/test (or calibration/test) manifest, grouped by patient when ids exist."""
    from cxr.data.manifest import write_manifest
    from cxr.data.splits import resolve_patient_pattern, resplit_dataset
    from cxr.errors import CxrError

    if calibration is not None and (val is not None or test is not None):
        raise CxrError("--calibration cuts a site set into calibration and test only; drop --val and --test")
    pattern = resolve_patient_pattern(patient_pattern)
    val, test = 0.1 if val is None else val, 0.2 if test is None else test
    result = resplit_dataset(data, val, test, seed, by_patient, pattern, calibration)
    write_manifest(out, result.splits, result.classes, result.patient_ids)
    table = Table("split", *result.classes, "images", "patients")
    for name, files in result.splits.items():
        per_class = [str(files.labels.count(i)) for i in range(len(result.classes))]
        ids = {result.patient_ids[p] for p in files.paths if result.patient_ids[p]}
        table.add_row(name, *per_class, str(len(files)), str(len(ids)))
    print_table(table)
    n_ids = sum(pid is not None for pid in result.patient_ids.values())
    how = "grouped by patient" if result.grouped else "by image (no patient ids found)" if by_patient else "by image"
    n_all = len(result.patient_ids)
    console.print(f"split {how}; {n_ids} of {n_all} images have a patient id; wrote {out}", soft_wrap=True)


def data_audit(
    data: Path = typer.Argument(..., help="dataset root with train/<class>/ (test/, val/) or a CSV manifest"),
    out: Path | None = typer.Option(
        None, help="where audit.json and plots/ go (default: audit/<data name>)", callback=folder_out
    ),
    threshold: int = typer.Option(32, min=0, max=256, help="near-duplicate pHash distance (of 256 bits)"),
    patient_pattern: str | None = typer.Option(None, help=PATIENT_PATTERN_HELP),
    workers: int | None = typer.Option(None, min=1, help="processes for hashing (default: all cores)"),
    confounds: bool = typer.Option(
        False,
        "--confounds/--no-confounds",
        help="also cluster the train films in ImageNet EfficientNet-Lite0 features and flag clusters that carry one "
        "class without the disease (a subgroup from elsewhere); galleries in plots/",
    ),
    confound_films: int = typer.Option(2000, min=10, help="--confounds: at most this many train films (seeded sample)"),
    confound_size: int = typer.Option(160, min=32, help="--confounds: image size for the features, px"),
) -> None:
    """Find leakage, data problems and shortcut cues; exit code 1 when anything is shared across splits."""
    from cxr.data.audit import run_audit, summary_lines
    from cxr.data.splits import resolve_patient_pattern

    pattern = resolve_patient_pattern(patient_pattern)
    out = out or Path("audit") / data.stem
    report = run_audit(data, out, threshold=threshold, pattern=pattern, workers=workers, progress=True)
    lines = summary_lines(report)
    if confounds:
        lines += _confound_section(data, out, report, confound_films, confound_size)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out / 'audit.json'} and {out / PLOTS}/", soft_wrap=True)
    if report["summary"]["leakage"]:
        err_console.print("[red]leakage:[/] images or patients are shared across splits (see audit.json)")
        raise typer.Exit(1)


def _confound_section(data: Path, out: Path, report: dict, films: int, size: int) -> list[str]:
    """Add the confound finder's section (cxr.explain: it needs a network) to the written audit.json."""
    import json

    from cxr.atomic import write_text_atomic
    from cxr.explain.confounds import confound_audit, confound_lines

    section = confound_audit(data, out / PLOTS, size=size, max_films=films)
    report["confounds"] = section
    report["summary"]["confound_suspects"] = section["suspects"]
    report["plots"] += section["galleries"]
    write_text_atomic(out / "audit.json", json.dumps(report, indent=1))
    return confound_lines(section)


def data_dedup(
    data: Path = typer.Argument(..., help="dataset to filter (class folders or a CSV manifest)"),
    against: Path = typer.Option(..., help="dataset whose images must not appear in DATA (e.g. the one you test on)"),
    out: Path = typer.Option(
        ..., help="manifest CSV to write: DATA's images minus the copies, splits kept", callback=csv_out
    ),
    threshold: int = typer.Option(32, min=0, max=256, help="near-duplicate pHash distance (of 256 bits)"),
    patient_pattern: str | None = typer.Option(None, help=PATIENT_PATTERN_HELP),
    workers: int | None = typer.Option(None, min=1, help="processes for hashing (default: all cores)"),
) -> None:
    """Write a manifest of DATA without the images that (nearly) duplicate any image of --against."""
    import csv

    from cxr.data.dedup import exclude_near_duplicates
    from cxr.data.manifest import write_manifest
    from cxr.data.splits import resolve_patient_pattern

    pattern = resolve_patient_pattern(patient_pattern)
    result = exclude_near_duplicates(data, against, threshold, pattern, workers, progress=True)
    write_manifest(out, result.splits, result.classes, result.patient_ids)
    removed_csv = out.with_name(f"{out.stem}.removed.csv")
    with open(removed_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "copy_of", "distance"])
        w.writerows([str(a), str(b), d] for a, b, d in result.removed)
    for msg in result.unreadable:  # kept in the manifest (compared by content hash only): `cxr train` skips them
        warn(f"could not compare {msg}")
    kept = sum(len(files) for files in result.splits.values())
    console.print(
        f"kept {kept} images, removed {len(result.removed)} copies of --against images; wrote {out} and {removed_csv}",
        soft_wrap=True,
    )


def data_preview(
    data: Path = typer.Argument(..., help="dataset root with train/<class>/"),
    out: Path = typer.Option(Path("preview.png"), help="image to write (.png, .jpg, .pdf, .svg)", callback=image_out),
    config: Path | None = typer.Option(None, help="training config YAML (image size, augmentation); else defaults"),
    image_size: int | None = typer.Option(None, help="override the config's image size"),
    per_class: int = typer.Option(6, help="images per class"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="apply the training augmentation"),
    seed: int = typer.Option(0, help="seed of the images chosen and their augmentation"),
) -> None:
    """A grid of training images after augmentation, with labels: what the model actually sees."""
    from cxr.config import build_config
    from cxr.explain.preview import preview_training_images

    cfg = build_config(config, {"image_size": image_size})
    console.print(f"wrote {preview_training_images(data, out, cfg, per_class=per_class, seed=seed, augment=augment)}")


def audit_shortcuts(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Path | None = typer.Option(None, help="dataset root with the same classes (default: the run's data)"),
    out: Path | None = typer.Option(None, help="output folder (default: RUN/audit)", callback=folder_out),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++"),
    layer: str | None = typer.Option(None, help="target layer (default: last layer with a spatial map)"),
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
            table.add_row(
                name,
                str(st["n"]),
                f"{st['mean']:.3f}",
                f"{st['median']:.3f}",
                f"{st['p90']:.3f}",
                f"{st['flagged']} ({st['flagged_share']:.0%})",
            )
    print_table(table)
    if summary["unreadable_skipped"]:
        warn(f"{summary['unreadable_skipped']} unreadable image(s) skipped")
    written = ", ".join(map(str, paths.values()))
    console.print(f"a uniform map puts {summary['uniform_baseline']:.2f} on the border; wrote {written}")
