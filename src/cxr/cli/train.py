"""`cxr train`: a config (a YAML file, a shipped recipe or the default recipe) with the flags and `--set KEY=VALUE`
over it; writes a model bundle, or with --cv K a K-fold estimate."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.cli.checks import folder_out
from cxr.cli.output import console, print_cv_summary
from cxr.config import DEFAULT_RECIPE
from cxr.errors import CxrError
from cxr.rundir import RunDir

TRACK_HELP = (
    "log to MLflow (config tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<runs parent>/mlflow.db); "
    "`cxr evaluate` adds to the same MLflow run; see it with `mlflow ui --backend-store-uri URI`"
)
TRAIN_HELP = (
    f"Train a model on a class-folder dataset; writes a model bundle to --out (with --cv K: a K-fold "
    f"estimate). With no --config it trains the default recipe: {DEFAULT_RECIPE}."
)


def register(app: typer.Typer) -> None:
    app.command(help=TRAIN_HELP)(train)


def train(
    data: Path | None = typer.Option(None, help="dataset root with train/<class>/ (test/, val/), or a CSV manifest"),
    out: Path = typer.Option(Path("runs/latest"), help="run directory (becomes the model bundle)", callback=folder_out),
    config: str | None = typer.Option(
        None,
        help="YAML file, or a shipped recipe: kermany | pneumoniamnist | radiography (default: the validated "
        "recipe below); flags given here override it",
    ),
    model: str | None = typer.Option(None, help="model name (see `cxr models`)"),
    epochs: int | None = typer.Option(None, help="most epochs to train (early stopping may end sooner)"),
    image_size: int | None = typer.Option(None, help="images are resized to SIZE x SIZE"),
    batch_size: int | None = typer.Option(None, help="images per optimizer step"),
    lr: float | None = typer.Option(None, help="learning rate"),
    val_fraction: float | None = typer.Option(None, help="validation share carved from train when there is no val/"),
    class_weight: str | None = typer.Option(None, help="none | balanced: loss weighted by 1 / class size"),
    sampling: str | None = typer.Option(
        None,
        help="shuffle | balanced: draw each class equally often | undersample: each epoch all of the smallest "
        "class and as many, freshly drawn, of each other",
    ),
    input_norm: str | None = typer.Option(
        None, help="dataset | image | histeq: one mean/std, or standardise, or histogram-equalise each image"
    ),
    monitor: str | None = typer.Option(None, help="val_loss | val_auc: picks the best checkpoint"),
    ema_decay: float | None = typer.Option(None, help="validate and save a moving average of the weights, e.g. 0.9"),
    refit: bool | None = typer.Option(
        None, "--refit/--no-refit", help="then train again on train + val for the epochs validation chose"
    ),
    seed: int | None = typer.Option(None, help="seed of weights, augmentation and sampling (and of the val split)"),
    split_seed: int | None = typer.Option(None, help="seed of the validation carve-out (default: --seed)"),
    ensemble: int | None = typer.Option(
        None, help="train N members (seeds seed..seed+N-1, one val split), average them"
    ),
    num_workers: str | None = typer.Option(None, help="data loader processes, or auto"),
    precision: str | None = typer.Option(None, help="auto | 32 | bf16-mixed"),
    devices: str | None = typer.Option(None, help="number of devices/processes, or auto"),
    strategy: str | None = typer.Option(None, help="Lightning strategy, e.g. ddp"),
    accelerator: str | None = typer.Option(None, help="auto | cpu | gpu"),
    cache_dir: Path | None = typer.Option(None, help="where decoded images are cached (default ~/.cache/cxr)"),
    hflip: bool | None = typer.Option(None, "--hflip/--no-hflip", help="horizontal flip augmentation"),
    mixup: float | None = typer.Option(
        None, help="train on blends of two images and their labels, weight ~ Beta(MIXUP, MIXUP), e.g. 0.2 (0 = off)"
    ),
    strict: bool | None = typer.Option(None, "--strict/--no-strict", help="fail on unreadable images"),
    operating_point: str | None = typer.Option(
        None, help="binary: decision threshold chosen on validation: sensitivity=0.95 | specificity=0.90 | youden"
    ),
    weights: Path | None = typer.Option(None, help="initialise from a cxr run, model.pt, .ckpt or state dict"),
    pretrained: str | None = typer.Option(
        None,
        help="imagenet: start from the model's published ImageNet weights (downloaded once, SHA-256 checked; "
        "`cxr weights list`) | radiography: cxr's smallnet trained on COVID-19 Radiography, shipped with cxr | "
        "radiography-v0.6: its cxr 0.6 file (the kermany recipe's start) | none",
    ),
    freeze_backbone: bool | None = typer.Option(
        None,
        "--freeze-backbone/--no-freeze-backbone",
        help="train only the classification head (with --weights or --pretrained)",
    ),
    set_values: list[str] = typer.Option(
        [],
        "--set",
        help="any config key as KEY=VALUE (VALUE read as YAML), repeatable, e.g. --set body_lr_factor=0.1 "
        "--set augment.noise=0.05 (keys: docs' configuration page)",
    ),
    cv: int | None = typer.Option(
        None, min=2, help="cross-validate this config in K folds of train instead (writes cv.json, no model)"
    ),
    track: bool | None = typer.Option(None, "--track/--no-track", help=TRACK_HELP),
    resume: bool = typer.Option(False, help="continue the unfinished run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, help="replace an earlier run in --out"),
) -> None:
    options = dict(locals())  # first: exactly the options, by name
    from cxr.config import build_config
    from cxr.training.train import train as run_training

    overrides = config_overrides(options) | parse_set_values(set_values)
    own = resume and config is None  # resuming reads the run's own saved config
    cfg = build_config(RunDir(out).config if own else config, overrides, saved_run=own)
    if cv is not None:
        from cxr.training.cv import cross_validate

        return print_cv_summary(cross_validate(cfg, out, cv, resume=resume, overwrite=overwrite), out)
    run = run_training(cfg, out, resume=resume, overwrite=overwrite)
    _print_training_summary(run)


def config_overrides(options: dict[str, object]) -> dict[str, object]:
    """The options named like a config key, under that key (an augmentation flag as `augment.NAME`); the others
    (--out, --config, --set, --cv, --resume, --overwrite) say what to do with the config, not what is in it."""
    from cxr.config import AugmentConfig, TrainConfig

    top, augment = TrainConfig.model_fields, AugmentConfig.model_fields
    return {
        name if name in top else f"augment.{name}": value
        for name, value in options.items()
        if name in top or name in augment
    }


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
            raise CxrError(
                f"--set {pair!r}: {text!r} is not a value; quote strings, e.g. --set model=smallnet"
            ) from None
    return values


def _print_training_summary(run: Path) -> None:
    if not RunDir(run).metrics.is_file():
        return
    t = RunDir(run).read_metrics().get("training", {})
    best = t.get("best_score")
    best = f", best {t.get('monitor')}={best:.4f}" if best is not None else ""
    trained = f"{t.get('epochs_run')} epochs{best}"
    if t.get("refit"):
        trained = f"{t['epochs_run']} epochs on train + val, as many as {run / t['refit']['from']} chose on validation"
    console.print(
        f"[green]finished[/] {run}: {trained}, "
        f"{t.get('wall_seconds')} s, {len(t.get('skipped_unreadable', []))} unreadable image(s) skipped"
    )
