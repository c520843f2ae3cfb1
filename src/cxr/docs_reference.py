"""Reference pages generated from the code itself, so the docs cannot drift from it.

The config reference walks `TrainConfig`'s pydantic fields (nested sections such as `augment` included); the CLI
reference walks click's command tree under Typer (`typer.main.get_command`), the same objects `--help` prints.
Typer vendors its own click, so commands and parameters are recognised by what they offer, not by click's classes.
Hidden commands (old spellings kept for a release, `cxr.cli.legacy`) get no section, only a line saying what they
are now. The MkDocs hook `docs/hooks/reference.py` renders both at build time, and tests/test_docs.py fails when a
key, a command or an option has no description.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class ConfigKey:
    """One config key as the YAML file spells it (`augment.mixup` for a nested one)."""

    key: str
    type: str
    default: str
    description: str


def _type_text(annotation: Any) -> str:
    """`Literal['a', 'b']` -> `a`, `b`; `int | None` -> int or unset: what a YAML author may write."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or unset" if type(None) in args else "")
    if origin is dict:
        return "mapping"
    if origin is list:
        return f"list of {_type_text(args[0])}s" if args else "list"
    if annotation is Any:
        return "any"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, bool):
        return str(value).lower()  # as YAML writes it
    return f"`{value}`"


def config_keys(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[ConfigKey]:
    """Every key of the training config in declaration order, then each nested section's keys."""
    if model is None:
        from cxr.config import TrainConfig

        model = TrainConfig
    sections = []
    for name, field in model.model_fields.items():
        yield ConfigKey(
            prefix + name, _type_text(field.annotation), _default_text(field.default), (field.description or "").strip()
        )
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            sections.append((name, field.annotation))
    for name, section in sections:
        yield from config_keys(section, f"{prefix}{name}.")


def _text(text: str) -> str:
    """Help text as Markdown: one line, and `<split>` shown as written rather than read as an HTML tag."""
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    """A table cell: pipes escaped (Python-Markdown's tables split on them)."""
    return _text(text).replace("|", "\\|")


def _train_flags() -> dict[str, str]:
    """Config key -> `cxr train` flag, matched by name (nested keys by their last part: augment.mixup -> --mixup)."""
    train = _root_command().commands["train"]  # type: ignore[attr-defined]
    return {p.name: p.opts[0] for p in train.params if _is_option(p) and p.name}


def config_reference_markdown() -> str:
    """The config reference page: one table row per key, with its type, default, `cxr train` flag and meaning."""
    from cxr.config import TrainConfig

    flags = _train_flags()
    top = set(TrainConfig.model_fields)
    lines = [
        "# Config reference",
        "",
        "Generated from `cxr.config.TrainConfig` when the docs are built: every key a YAML config (`cxr train "
        "--config FILE.yaml`) or a shipped recipe may set. A file names only what it changes; the defaults are the "
        "default recipe. Nested sections are written as YAML mappings (`augment: {mixup: 0.2}`); the table spells "
        "their keys with a dot. Where `cxr train` has a flag for a key, it overrides the file.",
        "",
        "| key | type | default | `cxr train` flag | description |",
        "|---|---|---|---|---|",
    ]
    for k in config_keys(TrainConfig):
        leaf = k.key.rsplit(".", 1)[-1]
        flag = flags.get(leaf) if (k.key == leaf or leaf not in top) else None
        flag_text = f"`{flag}`" if flag else "-"
        lines.append(f"| `{k.key}` | {_cell(k.type)} | {_cell(k.default)} | {flag_text} | {_cell(k.description)} |")
    return "\n".join(lines) + "\n"


def _root_command() -> Any:
    import typer

    from cxr.cli import app

    return typer.main.get_command(app)


def cli_commands(command: Any | None = None, path: str = "cxr") -> Iterator[tuple[str, Any]]:
    """Every command under `cxr`, depth first in the order `--help` lists them, with its full name."""
    command = command or _root_command()
    yield path, command
    if _is_group(command):
        ctx = command.context_class(command, info_name=path)
        for name in _visible_commands(command, ctx):
            yield from cli_commands(command.get_command(ctx, name), f"{path} {name}")


def _is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _param_help(param: Any) -> str:
    return (getattr(param, "help", None) or "").strip()


def _command_help(command: Any) -> str:
    return (command.help or command.short_help or "").strip()


def cli_reference_markdown() -> str:
    """The CLI reference page: each command's usage, help, arguments and options, in `--help`'s own words."""
    lines = [
        "# CLI reference",
        "",
        "Generated from the Typer application (`cxr.cli.app`) when the docs are built: the usage line and every "
        "argument and option below are the ones `--help` prints. Every command also takes `--help`.",
    ]
    if renamed := renamed_commands():
        lines += [
            "",
            "Renamed commands: "
            + ", ".join(f"`{old}` is now [`{new}`](#{_anchor(new)})" for old, new in renamed.items())
            + "; the old spellings still run for one release, hidden from `--help`, after a one-line note.",
        ]
    for path, command in cli_commands():
        ctx = command.context_class(command, info_name=path)
        usage = command.get_usage(ctx).removeprefix("Usage:").strip()
        lines += ["", f"## {path}", "", _text(_command_help(command)), "", "```", usage, "```", ""]
        for p in command.params:
            if getattr(p, "hidden", False):
                continue
            label, text = p.get_help_record(ctx)
            lines.append(f"- `{label}`: {_text(text)}")
        if _is_group(command):
            lines.append(
                "Commands: "
                + ", ".join(f"[{path} {n}](#{_anchor(f'{path} {n}')})" for n in _visible_commands(command, ctx))
            )
    return "\n".join(lines) + "\n"


def _visible_commands(group: Any, ctx: Any) -> list[str]:
    """The subcommands `--help` lists: hidden ones (old spellings kept for a release) have no section to link to."""
    return [n for n in group.list_commands(ctx) if (sub := group.get_command(ctx, n)) is not None and not sub.hidden]


def renamed_commands(command: Any | None = None) -> dict[str, str]:
    """Old spelling -> new, e.g. `cxr export` -> `cxr run export`: the hidden commands `cxr.cli.legacy` keeps."""
    command = command or _root_command()
    ctx = command.context_class(command, info_name="cxr")
    found = {}
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub.hidden and getattr(sub, "renamed_to", None):
            found[f"cxr {name}"] = f"cxr {sub.renamed_to}"
    return found


def _anchor(title: str) -> str:
    """The id MkDocs' toc extension gives a heading such as `cxr data split` (code marks dropped)."""
    return "-".join(title.lower().split())


def missing_descriptions(model: type[BaseModel] | None = None, command: Any | None = None) -> list[str]:
    """Config keys, commands and options/arguments without a description: what the reference would leave blank.

    Defaults: `TrainConfig` and the `cxr` command tree; tests pass others to see that a gap is found.
    """
    missing = [f"config key {k.key}" for k in config_keys(model) if not k.description]
    for path, cmd in cli_commands(command):
        if not _command_help(cmd):
            missing.append(f"command {path}")
        for p in cmd.params:
            if not _param_help(p):
                missing.append(f"{path}: {p.opts[0] if _is_option(p) else p.name}")
    return missing
