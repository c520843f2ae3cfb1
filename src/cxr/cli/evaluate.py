"""`cxr evaluate`, `cxr report`, `cxr compare` and `cxr stress`: a finished model's figures, on its own test split,
another dataset, beside another model, or under acquisition shifts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxr.cli.checks import folder_out, html_out, split_name
from cxr.cli.output import console, print_table, warn
from cxr.cli.predict import TTA_HELP
from cxr.errors import CxrError
from cxr.rundir import METRICS, RunDir


def register(app: typer.Typer) -> None:
    for command in (evaluate, report, compare, stress):
        app.command()(command)


def evaluate(
    run: Path = typer.Argument(..., help="run directory from `cxr train`"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Path | None = typer.Option(None, help="evaluate on another dataset root with the same classes"),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass"),
    bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for the 95 % intervals (0: none)"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    reference: Path | None = typer.Option(
        None, help="readers.csv (path,label or path,reader1,reader2,...): Cohen's kappa against the model"
    ),
    report: bool = typer.Option(False, "--report", help="also write the HTML report (report.html in the run)"),
    gallery: bool = typer.Option(
        False, "--gallery", help="also write plots/gallery_<split>.png and plots/misclassified_<split>.png (Grad-CAM)"
    ),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP + "; results go under <split>-tta"),
) -> None:
    """Evaluate a trained run; writes metrics.json, plots/ and predictions_<split>.csv into the run."""
    from cxr.evaluation.evaluate import evaluate_run, evaluation_key

    key = evaluation_key(run, split, data, tta)  # another dataset: `test@<name>`, the run's own figures stay
    metrics = evaluate_run(
        run,
        split,
        data=data,
        batch_size=batch_size,
        progress=True,
        n_bootstrap=bootstrap,
        seed=seed,
        reference=reference,
        key=key,
        tta=tta,
    )
    _print_metrics(metrics, key)
    from cxr.evaluation.site import SITE_KEY, site_note

    if note := site_note(metrics.get(SITE_KEY), metrics["n"]):  # site-calibrated: which films were kept apart
        console.print(note, soft_wrap=True)
    for msg in metrics.get("skipped_unreadable", []):
        warn(f"skipped {msg}")
    if metrics.get("guard"):
        g = metrics["guard"]
        console.print(
            f"input guard: {g['flagged']} of {metrics['n']} films ({100 * g['share']:.1f} %) would be flagged "
            "as unlike the training films"
        )
    files = RunDir(run)
    console.print(f"wrote '{key}' in {files.metrics}, {files.predictions(key)} and {files.plots}/")
    if gallery:
        from cxr.explain.gallery import write_gallery

        console.print("wrote " + ", ".join(str(p) for p in write_gallery(run, key)))
    if report:
        from cxr.evaluation.report import write_report

        console.print(f"wrote {write_report(run, key, evaluate_if_needed=False)}")


def report(
    run: Path = typer.Argument(..., help="finished run directory"),
    split: str = typer.Option("test", help="the evaluated split to report on"),
    out: Path | None = typer.Option(None, help="HTML file (default: RUN/report.html)", callback=html_out),
    gallery: int = typer.Option(12, min=0, help="misclassified images shown in the error gallery"),
    gradcam: bool = typer.Option(True, "--gradcam/--no-gradcam", help="Grad-CAM overlays in the error gallery"),
) -> None:
    """Write one self-contained HTML report (evaluates the split first when needed)."""
    from cxr.evaluation.report import write_report

    console.print(f"wrote {write_report(run, split, out, gallery_size=gallery, gradcam=gradcam)}")


def compare(
    run_a: Path = typer.Argument(..., help="first run (A), or a cross-validation folder (then B is one too)"),
    run_b: Path = typer.Argument(..., help="second run (B)"),
    data: Path | None = typer.Option(None, help="dataset root whose --split both models are run on (default: A's)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    out: Path | None = typer.Option(
        None, help="output folder (default: compare_<A>_vs_<B> beside run A)", callback=folder_out
    ),
    bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for intervals and paired tests"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass"),
) -> None:
    """Two models on the same images (or two `train --cv` folders, out of fold): McNemar, DeLong, side-by-side ROC."""
    from cxr.evaluation.compare import compare_runs
    from cxr.evaluation.tables import comparison

    result = compare_runs(run_a, run_b, data, split, out, bootstrap, seed, batch_size, progress=True)
    print_table(comparison(result))
    mc = result["mcnemar"]
    console.print(
        f"McNemar (exact): only A right {mc['a_right_b_wrong']}, only B right {mc['a_wrong_b_right']}, "
        f"p = {mc['p_value']:.3g}"
    )
    if "auc_test" in result:
        t = result["auc_test"]
        console.print(f"AUC difference {t['difference']:+.4f} ({t['method']}), p = {t['p_value']:.3g}")
    console.print(f"wrote {result['out']}/comparison.json and roc_compare_{result['split']}.png")


def stress(
    run: Path = typer.Argument(..., help="finished run directory (model bundle, ensemble or not)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Path | None = typer.Option(None, help="another dataset root (or manifest) with the same classes"),
    shift: list[str] | None = typer.Option(None, help="run only this shift (repeatable; default: all)"),
    severity: int | None = typer.Option(None, help="run only this severity, 1 (mild) to 4 (severe)"),
    backend: str = typer.Option(
        "auto", help="auto (onnx when `cxr run export` made model.onnx: fastest) | onnx | torch"
    ),
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
    table = Table(
        "shift",
        "unit",
        *[f"sev. {k}" for k in range(1, 5)],
        "mean",
        title=f"accuracy under shift ({section['key']}, n={section['n']}; clean {clean['accuracy']:.3f})",
    )
    for name, mean in s["shift_means"].items():
        cells = {r["severity"]: f"{r['accuracy']:.3f}" for r in section["conditions"] if r["shift"] == name}
        table.add_row(name, SHIFTS[name].unit, *[cells.get(k, "") for k in range(1, 5)], f"{mean:.3f}")
    print_table(table)
    w = s["worst_condition"]
    console.print(
        f"clean {clean['accuracy']:.3f}; mean under shift {s['mean_accuracy']:.3f}; weakest shift "
        f"{s['worst_shift']['shift']} (mean {s['worst_shift']['mean_accuracy']:.3f}); worst condition "
        f"{w['shift']} at severity {w['severity']} ({w['accuracy']:.3f}); {section['seconds']} s on the "
        f"{section['backend']} backend"
    )
    key = section["key"]
    console.print(
        f"wrote {METRICS}['{key}']['stress'], {RunDir(run).stress(key)} and {RunDir(run).plots / f'stress_{key}.png'}"
    )


def _print_metrics(m: dict, split: str) -> None:
    table = Table("class", "precision", "recall", "f1", "support", "AUC", title=f"{split} (n={m['n']})")
    for c, v in m["per_class"].items():
        auc = "-" if v["roc_auc"] is None else f"{v['roc_auc']:.3f}"
        table.add_row(c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1-score']:.3f}", str(v["support"]), auc)
    for name in ("macro_avg", "weighted_avg"):
        v = m[name]
        table.add_row(
            name.replace("_", " "), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1-score']:.3f}", "", ""
        )
    print_table(table)
    from cxr.evaluation import tables

    console.print(tables.headline(m))
    extras = [
        tables.operating_points(m),
        tables.calibration(m.get("calibration")),
        *tables.agreement(m.get("agreement")),
    ]
    for extra in extras:
        if isinstance(extra, Table):
            print_table(extra)
        elif extra:
            console.print(extra)
