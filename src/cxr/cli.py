"""`cxr` command line: thin wrappers over the core; user errors print one line and exit with code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from cxr.errors import CxrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Chest X-ray classification: train, evaluate, predict, explain and serve.",
)
data_app = typer.Typer(no_args_is_help=True, help="Dataset tools: split, audit, preview.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, help="dataset root with train/<class>/ (and test/, optional val/)"),
    out: Path = typer.Option(Path("runs/latest"), help="run directory (becomes the model bundle)"),
    config: Optional[Path] = typer.Option(None, help="YAML config; flags given here override it"),
    model: Optional[str] = typer.Option(None, help="model name (see `cxr models`)"),
    epochs: Optional[int] = typer.Option(None),
    image_size: Optional[int] = typer.Option(None, help="images are resized to SIZE x SIZE"),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None, help="learning rate"),
    val_fraction: Optional[float] = typer.Option(None, help="validation share carved from train when there is no val/"),
    class_weight: Optional[str] = typer.Option(None, help="none | balanced"),
    monitor: Optional[str] = typer.Option(None, help="val_loss | val_auc: picks the best checkpoint"),
    seed: Optional[int] = typer.Option(None),
    num_workers: Optional[str] = typer.Option(None, help="data loader processes, or auto"),
    precision: Optional[str] = typer.Option(None, help="auto | 32 | bf16-mixed"),
    devices: Optional[str] = typer.Option(None, help="number of devices/processes, or auto"),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp"),
    accelerator: Optional[str] = typer.Option(None, help="auto | cpu | gpu"),
    cache_dir: Optional[Path] = typer.Option(None, help="where decoded images are cached (default ~/.cache/cxr)"),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip", help="horizontal flip augmentation"),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="fail on unreadable images"),
    resume: bool = typer.Option(False, help="continue the unfinished run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, help="replace an earlier run in --out"),
) -> None:
    """Train a model on a class-folder dataset; writes a model bundle to --out."""
    from cxr.config import build_config
    from cxr.training.train import train as run_training

    overrides = dict(
        data=data, model=model, epochs=epochs, image_size=image_size, batch_size=batch_size, lr=lr,
        val_fraction=val_fraction, class_weight=class_weight, monitor=monitor, seed=seed, num_workers=num_workers,
        precision=precision, devices=devices, strategy=strategy, accelerator=accelerator, cache_dir=cache_dir,
        strict=strict, **{"augment.hflip": hflip},
    )  # fmt: skip
    base = out / "config.yaml" if resume and config is None else config
    cfg = build_config(base, overrides)
    run = run_training(cfg, out, resume=resume, overwrite=overwrite)
    _print_training_summary(run)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run directory from `cxr train`"),
    split: str = typer.Option("test", help="test | val | train"),
    data: Optional[Path] = typer.Option(None, help="evaluate on another dataset root with the same classes"),
    batch_size: int = typer.Option(64),
) -> None:
    """Evaluate a trained run; writes metrics.json, plots/ and predictions_<split>.csv into the run."""
    from cxr.evaluation.evaluate import evaluate_run

    if split not in ("test", "val", "train"):
        raise CxrError(f"--split must be test, val or train, not {split!r}")
    metrics = evaluate_run(run, split, data=data, batch_size=batch_size, progress=True)
    _print_metrics(metrics, split)
    console.print(f"wrote {run / 'metrics.json'} and {run / 'plots'}/")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    inputs: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
    out: Optional[Path] = typer.Option(None, help="CSV file: path, predicted class, one probability per class"),
    batch_size: int = typer.Option(32),
) -> None:
    """Predict classes for images and folders of images."""
    from cxr.inference.bundle import Bundle

    bundle = Bundle.load(run)
    preds = bundle.predict(inputs, batch_size=batch_size, progress=True)
    for msg in preds.errors:
        err_console.print(f"[yellow]warning:[/] skipped {msg}")
    table = Table("path", "predicted", *[f"p({c})" for c in preds.classes])
    shown = 20
    for p, label, probs in list(zip(preds.paths, preds.predicted, preds.probabilities))[:shown]:
        table.add_row(str(p), label, *[f"{x:.3f}" for x in probs])
    console.print(table)
    if len(preds.paths) > shown:
        console.print(f"... and {len(preds.paths) - shown} more")
    console.print(f"{len(preds.paths)} predicted, {len(preds.errors)} skipped")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        preds.write_csv(out)
        console.print(f"wrote {out}")


@app.command()
def models() -> None:
    """List available models with parameter counts (1 input channel, 2 classes)."""
    from cxr.models import available_models, count_parameters, create_model, model_spec

    table = Table("name", "parameters", "description")
    for name in available_models():
        table.add_row(name, f"{count_parameters(create_model(name, num_classes=2)):,}", model_spec(name).description)
    console.print(table)


def _print_training_summary(run: Path) -> None:
    import json

    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        return
    t = json.loads(metrics_path.read_text()).get("training", {})
    console.print(
        f"[green]finished[/] {run}: {t.get('epochs_run')} epochs, best {t.get('monitor')}={t.get('best_score'):.4f}, "
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
    console.print(table)
    line = f"accuracy {m['accuracy']:.4f}   balanced accuracy {m['balanced_accuracy']:.4f}"
    if m["roc_auc"] is not None:
        line += f"   ROC AUC {m['roc_auc']:.4f}"
    if "sensitivity" in m:
        line += f"   sensitivity {m['sensitivity']:.4f}   specificity {m['specificity']:.4f}"
    console.print(line)


def _setup_logging() -> None:
    cxr_log = logging.getLogger("cxr")
    cxr_log.setLevel(logging.INFO)
    cxr_log.addHandler(RichHandler(console=err_console, show_time=False, show_path=False))
    cxr_log.propagate = False
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")


def main() -> None:
    """Entry point: known user errors become `error: ...` on stderr with exit code 2 (usage errors too)."""
    _setup_logging()
    try:
        app()  # standalone: typer/click turn bad flags into a usage message and exit code 2
    except CxrError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
