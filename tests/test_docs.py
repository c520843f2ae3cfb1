"""The docs: generated references complete and described, the README short, its links and figures true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from cxr.cli import app
from cxr.config import AugmentConfig, TrainConfig
from cxr.docs_reference import cli_reference_markdown, config_keys, config_reference_markdown, missing_descriptions

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_every_config_key_command_and_option_has_a_description():
    assert missing_descriptions() == []


def test_a_config_key_without_a_description_is_reported():
    class Section(BaseModel):
        described: int = Field(1, description="has one")
        bare: int = 2

    class Config(BaseModel):
        section: Section = Field(Section(), description="a section")
        plain: str = "x"

    found = [m for m in missing_descriptions(model=Config) if m.startswith("config key")]
    assert found == ["config key plain", "config key section.bare"]


def test_a_command_or_option_without_help_is_reported():
    toy = typer.Typer()

    @toy.command(help="described")
    def first(size: int = typer.Option(1, help="has help"), seed: int = typer.Option(0)) -> None: ...

    @toy.command()
    def second(path: str = typer.Argument(...)) -> None: ...

    found = missing_descriptions(model=TrainConfig, command=typer.main.get_command(toy))
    assert found == ["command cxr", "cxr first: --seed", "command cxr second", "cxr second: path"]


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        if field.annotation is AugmentConfig:
            keys += _all_keys(AugmentConfig, f"{name}.")
    return keys


def test_the_config_reference_has_a_row_per_key_with_its_default_and_description():
    page = config_reference_markdown()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*$", page, re.M)}
    assert sorted(rows) == sorted(_all_keys(TrainConfig)) and "augment.mixup" in rows
    assert "| `40` |" in rows["epochs"] and "`--epochs`" in rows["epochs"]
    assert "| `0.2` |" in rows["augment.mixup"] and "`--mixup`" in rows["augment.mixup"]
    assert "`dataset`, `image`, `histeq`" in rows["input_norm"]
    for key in config_keys():
        assert key.description.split()[0] in rows[key.key]
    assert "\\|" in rows["operating_point"]  # the pipes of its description must not split the table


def _help(args: list[str]) -> str:
    return CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"}).output


def _command_paths(args: list[str]) -> list[list[str]]:
    """Every command under `cxr ARGS` as `--help` lists them (rich panel rows: `│ name   text │`), groups descended."""
    out = _help(args)
    if "─ Commands ─" not in out:
        return []
    names = re.findall(r"^│ ([a-z][a-z-]*) ", out.split("─ Commands ─")[1], re.M)
    return [path for name in names for path in [[*args, name], *_command_paths([*args, name])]]


def _section(page: str, path: str) -> str:
    return page.split(f"\n## {path}\n")[1].split("\n## ")[0]


def test_the_cli_reference_has_every_command_and_every_option_of_help():
    page = cli_reference_markdown()
    paths = _command_paths([])
    expected = (["train"], ["evaluate"], ["predict"], ["explain"], ["serve"], ["data"], ["data", "audit"])
    assert all(p in paths for p in expected) and len(paths) >= 18
    checked = 0
    for args in paths:
        section = _section(page, " ".join(["cxr", *args]))
        out = _help(args)
        options = set(re.findall(r"^│ [* ]*(--[a-z][a-z-]+)", out, re.M)) - {"--help"}  # first column only
        checked += len(options)
        assert {o for o in options if f"`{o}" not in section and f"/ {o}" not in section} == set(), args
    assert checked > 80  # train alone has over 30
    train = _section(page, "cxr train")
    assert "`--epochs <int>`: most epochs to train" in train and "[default: runs/latest]" in train


def test_the_mkdocs_hook_adds_both_generated_pages():
    from mkdocs.config import load_config
    from mkdocs.structure.files import Files

    config = load_config(str(ROOT / "mkdocs.yml"))  # loads docs/hooks/reference.py as mkdocs.yml's hook
    files = config.plugins.on_files(Files([]), config=config)
    pages = {f.src_uri: f.content_string for f in files}
    assert pages["reference/config.md"].startswith("# Config reference")
    assert "## cxr data split" in pages["reference/cli.md"]


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    from mkdocs.config import load_config

    def flatten(nav):
        for item in nav:
            for value in item.values() if isinstance(item, dict) else [item]:
                yield from flatten(value) if isinstance(value, list) else [value]

    nav = set(flatten(load_config(str(ROOT / "mkdocs.yml"))["nav"]))
    generated = {"reference/config.md", "reference/cli.md"}
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").glob("*.md")}
    assert nav == on_disk | generated


def test_the_readme_is_short_and_its_links_into_the_docs_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\(((?:docs/)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 8
    assert [link for link in links if not (ROOT / link).is_file()] == []


@pytest.mark.parametrize("name, row", [("codecademy", "covid19-codecademy"), ("pneumoniamnist", "PneumoniaMNIST"),
                                       ("kermany", "Kermany"), ("radiography", "COVID-19 Radiography")])  # fmt: skip
def test_the_readme_results_are_the_recorded_seeds(name, row):
    runs = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())["runs"]
    line = next(x for x in README.read_text().splitlines() if x.startswith(f"| {row}"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[3] == str(len(runs))
    for cell, metric in ((cells[4], "accuracy"), (cells[5], "roc_auc")):
        values = [r["test"][metric] for r in runs]
        assert cell == f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"
    stressed = [r["stress_test"]["mean_accuracy"] for r in runs if "stress_test" in r]
    assert stressed, f"{name}: no seed was stressed (benchmarks/run.py stresses every test run)"
    expected = f"{np.mean(stressed):.3f} ({min(stressed):.3f}-{max(stressed):.3f})"
    assert cells[6] == expected + ("" if len(stressed) == len(runs) else f", {len(stressed)} of {len(runs)} seeds")
