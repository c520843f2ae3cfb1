"""`cxr` command line: thin wrappers over the core; user errors print one line and exit with code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxr.cli_checks import folder_out, html_out, split_name
from cxr.cli_data import data_app
from cxr.cli_explain import audit_shortcuts, explain
from cxr.cli_output import PlainLogFormatter, console, print_error, print_table, warn
from cxr.cli_reading import SERVE_DB_HELP, feedback_app, readers_app
from cxr.cli_site import calibrate
from cxr.cli_sweep import TRACK_HELP, runs, sweep
from cxr.cli_trust import TTA_HELP, guard, predict, stress
from cxr.cli_weights import weights_app
from cxr.config import DEFAULT_RECIPE
from cxr.errors import CxrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Chest X-ray classification: train, evaluate, predict, explain and serve.",
)
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")
app.add_typer(readers_app, name="readers")
app.add_typer(feedback_app, name="feedback")


@app.command(help=f"Train a model on a class-folder dataset; writes a model bundle to --out (with --cv K: a K-fold "
             f"estimate). With no --config it trains the default recipe: {DEFAULT_RECIPE}.")
def train(
    data: Optional[Path] = typer.Option(None, help="dataset root with train/<class>/ (test/, val/), or a CSV manifest"),
    out: Path = typer.Option(Path("runs/latest"), help="run directory (becomes the model bundle)", callback=folder_out),
    config: Optional[str] = typer.Option(
        None, help="YAML file, or a shipped recipe: kermany | pneumoniamnist | radiography (default: the validated "
        "recipe below); flags given here override it",
    ),  # fmt: skip
    model: Optional[str] = typer.Option(None, help="model name (see `cxr models`)"),
    epochs: Optional[int] = typer.Option(None, help="most epochs to train (early stopping may end sooner)"),
    image_size: Optional[int] = typer.Option(None, help="images are resized to SIZE x SIZE"),
    batch_size: Optional[int] = typer.Option(None, help="images per optimizer step"),
    lr: Optional[float] = typer.Option(None, help="learning rate"),
    val_fraction: Optional[float] = typer.Option(None, help="validation share carved from train when there is no val/"),
    class_weight: Optional[str] = typer.Option(None, help="none | balanced: loss weighted by 1 / class size"),
    sampling: Optional[str] = typer.Option(
        None, help="shuffle | balanced: draw each class equally often | undersample: each epoch all of the smallest "
        "class and as many, freshly drawn, of each other"
    ),  # fmt: skip
    input_norm: Optional[str] = typer.Option(
        None, help="dataset | image | histeq: one mean/std, or standardise, or histogram-equalise each image"
    ),
    monitor: Optional[str] = typer.Option(None, help="val_loss | val_auc: picks the best checkpoint"),
    ema_decay: Optional[float] = typer.Option(None, help="validate and save a moving average of the weights, e.g. 0.9"),
    refit: Optional[bool] = typer.Option(
        None, "--refit/--no-refit", help="then train again on train + val for the epochs validation chose"
    ),
    seed: Optional[int] = typer.Option(None, help="seed of weights, augmentation and sampling (and of the val split)"),
    split_seed: Optional[int] = typer.Option(None, help="seed of the validation carve-out (default: --seed)"),
    ensemble: Optional[int] = typer.Option(None, help="train N members (seeds seed..seed+N-1, one val split), average them"),
    num_workers: Optional[str] = typer.Option(None, help="data loader processes, or auto"),
    precision: Optional[str] = typer.Option(None, help="auto | 32 | bf16-mixed"),
    devices: Optional[str] = typer.Option(None, help="number of devices/processes, or auto"),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp"),
    accelerator: Optional[str] = typer.Option(None, help="auto | cpu | gpu"),
    cache_dir: Optional[Path] = typer.Option(None, help="where decoded images are cached (default ~/.cache/cxr)"),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip", help="horizontal flip augmentation"),
    mixup: Optional[float] = typer.Option(
        None, help="train on blends of two images and their labels, weight ~ Beta(MIXUP, MIXUP), e.g. 0.2 (0 = off)"
    ),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="fail on unreadable images"),
    operating_point: Optional[str] = typer.Option(
        None, help="binary: decision threshold chosen on validation: sensitivity=0.95 | specificity=0.90 | youden"
    ),
    weights: Optional[Path] = typer.Option(None, help="initialise from a cxr run, model.pt, .ckpt or state dict"),
    pretrained: Optional[str] = typer.Option(
        None, help="imagenet: start from the model's published ImageNet weights (downloaded once, SHA-256 checked; "
        "`cxr weights list`) | radiography: cxr's smallnet | none"
    ),  # fmt: skip
    freeze_backbone: Optional[bool] = typer.Option(
        None, "--freeze-backbone/--no-freeze-backbone",
        help="train only the classification head (with --weights or --pretrained)",
    ),
    set_values: list[str] = typer.Option(
        [], "--set", help="any config key as KEY=VALUE (VALUE read as YAML), repeatable, e.g. --set body_lr_factor=0.1 "
        "--set augment.noise=0.05 (keys: docs' configuration page)",
    ),  # fmt: skip
    cv: Optional[int] = typer.Option(
        None, min=2, help="cross-validate this config in K folds of train instead (writes cv.json, no model)"
    ),
    track: Optional[bool] = typer.Option(None, "--track/--no-track", help=TRACK_HELP),
    resume: bool = typer.Option(False, help="continue the unfinished run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, help="replace an earlier run in --out"),
) -> None:
    from cxr.config import build_config
    from cxr.training.train import train as run_training

    overrides = dict(
        data=data, model=model, epochs=epochs, image_size=image_size, batch_size=batch_size, lr=lr,
        val_fraction=val_fraction, class_weight=class_weight, sampling=sampling, monitor=monitor, seed=seed, num_workers=num_workers,
        precision=precision, devices=devices, strategy=strategy, accelerator=accelerator, cache_dir=cache_dir,
        strict=strict, operating_point=operating_point, weights=weights, pretrained=pretrained,
        freeze_backbone=freeze_backbone, track=track,
        split_seed=split_seed, ensemble=ensemble, input_norm=input_norm, ema_decay=ema_decay, refit=refit,
        **{"augment.hflip": hflip, "augment.mixup": mixup},
    ) | parse_set_values(set_values)  # fmt: skip
    own = resume and config is None  # resuming reads the run's own saved config
    cfg = build_config(out / "config.yaml" if own else config, overrides, saved_run=own)
    if cv is not None:
        from cxr.cli_output import print_cv_summary
        from cxr.training.cv import cross_validate

        return print_cv_summary(cross_validate(cfg, out, cv, resume=resume, overwrite=overwrite), out)
    run = run_training(cfg, out, resume=resume, overwrite=overwrite)
    _print_training_summary(run)


def parse_set_values(pairs: list[str]) -> dict[str, object]:
    """`--set KEY=VALUE` pairs as config overrides, each VALUE parsed as YAML (numbers, booleans, lists)."""
    import yaml

    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CxrError(f"--set {pair!r}: write KEY=VALUE, e.g. --set body_lr_factor=0.1")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise CxrError(f"--set {pair!r}: {text!r} is not a value; quote strings, e.g. --set model=smallnet") from None
    return values


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run directory from `cxr train`"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    data: Optional[Path] = typer.Option(None, help="evaluate on another dataset root with the same classes"),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass"),
    bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for the 95 % intervals (0: none)"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    reference: Optional[Path] = typer.Option(
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
        run, split, data=data, batch_size=batch_size, progress=True, n_bootstrap=bootstrap, seed=seed,
        reference=reference, key=key, tta=tta,
    )  # fmt: skip
    _print_metrics(metrics, key)
    from cxr.evaluation.site import SITE_KEY, site_note

    if note := site_note(metrics.get(SITE_KEY), metrics["n"]):  # site-calibrated: which films were kept apart
        console.print(note, soft_wrap=True)
    for msg in metrics.get("skipped_unreadable", []):
        warn(f"skipped {msg}")
    if metrics.get("guard"):
        g = metrics["guard"]
        console.print(f"input guard: {g['flagged']} of {metrics['n']} films ({100 * g['share']:.1f} %) would be flagged "
                      "as unlike the training films")  # fmt: skip
    console.print(f"wrote '{key}' in {run / 'metrics.json'}, {run / f'predictions_{key}.csv'} and {run / 'plots'}/")
    if gallery:
        from cxr.explain.gallery import write_gallery

        console.print("wrote " + ", ".join(str(p) for p in write_gallery(run, key)))
    if report:
        from cxr.evaluation.report import write_report

        console.print(f"wrote {write_report(run, key, evaluate_if_needed=False)}")


@app.command("ensemble")
def ensemble_runs(
    runs: list[Path] = typer.Argument(..., help="finished runs with the same classes, image size and validation split"),
    out: Path = typer.Option(..., help="run directory for the ensemble bundle", callback=folder_out),
    operating_point: Optional[str] = typer.Option(None, help="binary: threshold rule chosen again on validation"),
) -> None:
    """Combine finished runs into one bundle that averages their probabilities (temperature refitted on val)."""
    from cxr.evaluation.calibration import calibrate_run
    from cxr.inference.ensemble import combine_runs

    if (out / "model.pt").exists():  # never over a member or an earlier model
        raise CxrError(f"{out} already holds a model; choose another --out")
    combine_runs(runs, out)
    try:
        cal = calibrate_run(out, operating_point or "none")
    except BaseException:
        (out / "model.pt").unlink(missing_ok=True)  # an uncalibrated bundle must not look like a finished model
        raise
    console.print(f"wrote {out / 'model.pt'}: {len(runs)} members, validation temperature {cal.temperature:.3f}")


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="first run (A), or a cross-validation folder (then B is one too)"),
    run_b: Path = typer.Argument(..., help="second run (B)"),
    data: Optional[Path] = typer.Option(None, help="dataset root whose --split both models are run on (default: A's)"),
    split: str = typer.Option("test", help="test | val | train", callback=split_name),
    out: Optional[Path] = typer.Option(
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
    console.print(f"McNemar (exact): only A right {mc['a_right_b_wrong']}, only B right {mc['a_wrong_b_right']}, "
                  f"p = {mc['p_value']:.3g}")  # fmt: skip
    if "auc_test" in result:
        t = result["auc_test"]
        console.print(f"AUC difference {t['difference']:+.4f} ({t['method']}), p = {t['p_value']:.3g}")
    console.print(f"wrote {result['out']}/comparison.json and roc_compare_{result['split']}.png")


@app.command()
def report(
    run: Path = typer.Argument(..., help="finished run directory"),
    split: str = typer.Option("test", help="the evaluated split to report on"),
    out: Optional[Path] = typer.Option(None, help="HTML file (default: RUN/report.html)", callback=html_out),
    gallery: int = typer.Option(12, min=0, help="misclassified images shown in the error gallery"),
    gradcam: bool = typer.Option(True, "--gradcam/--no-gradcam", help="Grad-CAM overlays in the error gallery"),
) -> None:
    """Write one self-contained HTML report (evaluates the split first when needed)."""
    from cxr.evaluation.report import write_report

    console.print(f"wrote {write_report(run, split, out, gallery_size=gallery, gradcam=gradcam)}")


@app.command()
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


@app.command()
def models() -> None:
    """List available models with parameter counts (1 input channel, 2 classes) and published weights."""
    from cxr.models import available_models, count_parameters, create_model, model_spec
    from cxr.models.pretrained import imagenet_models

    table = Table("name", "parameters", "--pretrained", "description")
    for name in available_models():
        starts = "imagenet" if name in imagenet_models() else "radiography" if name == "smallnet" else "-"
        n = count_parameters(create_model(name, num_classes=2))
        table.add_row(name, f"{n:,}", starts, model_spec(name).description)
    print_table(table)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    format: str = typer.Option("onnx", "--format", help="onnx (the only format so far)"),
) -> None:
    """Export the model for fast inference: writes model.onnx into the run, checked against PyTorch."""
    from cxr.inference.onnx_export import PARITY_TOLERANCE, export_onnx

    if format != "onnx":
        raise CxrError(f"--format must be onnx, not {format!r}")
    result = export_onnx(run)
    console.print(f"wrote {result.path} in {result.seconds} s; ONNX Runtime vs PyTorch max probability difference "
                  f"{result.max_abs_diff:.1e} (limit {PARITY_TOLERANCE:.0e}); `cxr predict` and `cxr serve` now use it")


@app.command()
def serve(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port to listen on"),
    backend: str = typer.Option("auto", help="auto | onnx | torch"),
    max_upload_mb: float = typer.Option(20.0, min=0.001, max=100_000, help="larger uploads get 413"),
    workers: int = typer.Option(1, min=1, help="inference threads"),
    max_pending: int = typer.Option(64, min=1, help="requests allowed to wait for a worker; more get 503"),
    db: Optional[str] = typer.Option(None, help=SERVE_DB_HELP),
    store_images: bool = typer.Option(True, "--store-images/--no-store-images", help="keep each film's bytes "
                                      "in a content-addressed store beside the database (off: hashes only)"),
    watch: Optional[Path] = typer.Option(None, help="record every film that appears in this folder, as uploads are"),
) -> None:
    """Serve the model: a web page at /, the worklist at /worklist, the JSON API under /v1 (docs at /docs).
    Every prediction is recorded (reading room); $CXR_API_KEY turns on the API key."""
    from cxr.serve.app import serve as run_server

    if max_pending < workers:
        raise CxrError("--max-pending must be at least --workers")
    run_server(run, host=host, port=port, backend=backend, max_upload_mb=max_upload_mb, workers=workers,
               max_pending=max_pending, db=db, store_images=store_images, watch=watch)  # fmt: skip


app.command()(calibrate)
app.command()(sweep)
app.command()(runs)
app.command()(predict)
app.command()(stress)
app.command()(guard)
app.command()(explain)
app.command("audit-shortcuts")(audit_shortcuts)


def _print_training_summary(run: Path) -> None:
    import json

    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        return
    t = json.loads(metrics_path.read_text()).get("training", {})
    best = t.get("best_score")
    best = f", best {t.get('monitor')}={best:.4f}" if best is not None else ""
    trained = f"{t.get('epochs_run')} epochs{best}"
    if t.get("refit"):
        trained = f"{t['epochs_run']} epochs on train + val, as many as {run / t['refit']['from']} chose on validation"
    console.print(
        f"[green]finished[/] {run}: {trained}, "
        f"{t.get('wall_seconds')} s, {len(t.get('skipped_unreadable', []))} unreadable image(s) skipped"
    )


def _print_metrics(m: dict, split: str) -> None:
    table = Table("class", "precision", "recall", "f1", "support", "AUC", title=f"{split} (n={m['n']})")
    for c, v in m["per_class"].items():
        auc = "-" if v["roc_auc"] is None else f"{v['roc_auc']:.3f}"
        table.add_row(c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1-score']:.3f}", str(v["support"]), auc)
    for name in ("macro_avg", "weighted_avg"):
        v = m[name]
        table.add_row(name.replace("_", " "), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1-score']:.3f}", "", "")
    print_table(table)
    from cxr.evaluation import tables

    console.print(tables.headline(m))
    extras = [tables.operating_points(m), tables.calibration(m.get("calibration")), *tables.agreement(m.get("agreement"))]
    for extra in extras:
        if isinstance(extra, Table):
            print_table(extra)
        elif extra:
            console.print(extra)


def _setup_logging() -> None:
    cxr_log = logging.getLogger("cxr")
    cxr_log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)  # plain lines: a log read without a terminal must not be re-wrapped
    handler.setFormatter(PlainLogFormatter())
    cxr_log.addHandler(handler)
    cxr_log.propagate = False
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13 internals, not the user's
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")


def main() -> None:
    """Entry point: known user errors become `error: ...` on stderr with exit code 2 (usage errors too)."""
    _setup_logging()
    try:
        code = app(standalone_mode=False)  # not standalone: bad flags reach us, not click's multi-line panel
    except CxrError as e:
        print_error(str(e))
        sys.exit(2)
    except typer.TyperException as e:  # click's usage errors (typer vendors click): bad flag or value, no command
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `cxr data` alone: its help, as click would show it
            e.show()
        else:
            print_error(f"{e.format_message()} (see `{ctx.command_path if ctx else 'cxr'} --help`)")
        sys.exit(e.exit_code)
    except typer.Abort:  # Ctrl-C while parsing or prompting
        print_error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
