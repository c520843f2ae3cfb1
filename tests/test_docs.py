"""The docs: generated references complete and described, the README short, its links and figures true."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from benchmarks.runs import runs_and_seeds, seeds_text
from cxr.cli import app
from cxr.config import AugmentConfig, TrainConfig
from cxr.docs_reference import cli_reference_markdown, config_keys, config_reference_markdown, missing_descriptions
from cxr.models.pretrained import SHIPPED

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


RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _results(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of every table row whose first cell starts with `first_cell`."""
    return [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and line[2:].startswith(first_cell)
    ]


def _row(text: str, first_cell: str) -> list[str]:
    rows = _rows(text, first_cell)
    assert len(rows) == 1, (first_cell, len(rows))
    return rows[0]


def _cell(header: list[str], row: list[str], column: str) -> str:
    return row[header.index(column)]


def _header(text: str, first_column: str) -> list[str]:
    return _row(text, first_column)


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


_seeds, _runs_and_seeds = seeds_text, runs_and_seeds  # how the results table writes them


def _machine(run: dict) -> str:
    return "EPYC" if "EPYC" in run["machine"]["cpu"] else "Xeon" if "Xeon" in run["machine"]["cpu"] else "?"


def _check_model_cell(cell: str, entries: list[dict], where: str) -> None:
    """A table cell naming the models its figures come from: each kept model by the first 8 hex digits of its file's
    SHA-256 (`3629556d`, any note after it), the others counted as "N not kept" ("not kept": one)."""
    digests = [e["weights_sha256"] for e in entries if e.get("weights_sha256")]
    cited = re.findall(r"`([0-9a-f]{8,64})`", cell)
    unknown = [c for c in cited if not any(d.startswith(c) for d in digests)]
    assert not unknown, f"{where}: cites model {unknown}, whose digest no entry it cites in the JSON holds"
    missing = [d[:8] for d in digests if not any(d.startswith(c) for c in cited)]
    assert not missing and len(set(cited)) == len(cited), f"{where}: {cell!r} leaves out kept model(s) {missing}"
    lost = sum(1 for e in entries if e.get("weights_sha256") is None and e.get("model_kept") is False)
    m = re.search(r"(?:(\d+) )?not kept", cell)
    assert (int(m.group(1) or 1) if m else 0) == lost, f"{where}: {cell!r}, but {lost} of its entries were not kept"


BENCHMARK_FILES = ("codecademy", "kermany", "radiography", "pneumoniamnist")  # `-m benchmarks run`: one entry per run
PER_MODEL_FILES = ("external", "stress_guard", "site_calibration")  # one entry per model measured


def _model_entries() -> list[tuple[str, dict]]:
    """Every entry of the results the README and docs tables cite: each describes one trained model's figures.
    (Model selection and cross-validation files describe candidates' fold runs, not a tested model.)"""
    out = []
    for path in sorted(RESULTS.glob("*.json")) + sorted(RESULTS.glob("history/*.json")):
        data = json.loads(path.read_text())
        where = str(path.relative_to(RESULTS))
        stem = path.stem.split("-before-")[0]
        if stem in BENCHMARK_FILES:
            out += [(f"{where} runs[{i}]", r) for i, r in enumerate(data["runs"])]
        elif stem in PER_MODEL_FILES:
            out += [(f"{where} {k}", v) for k, v in data.items() if isinstance(v, dict) and k != "machine"]
    return out


def test_every_results_entry_names_its_model():
    entries = _model_entries()
    assert len(entries) >= 28
    for where, e in entries:
        assert "weights_sha256" in e and "config_sha256" in e, f"{where}: no weights_sha256 / config_sha256"
        if e["weights_sha256"] is None:
            assert e.get("model_kept") is False, f"{where}: weights_sha256 null without model_kept: false"
        else:
            assert SHA256.match(e["weights_sha256"]), where
        assert e["config_sha256"] is None or SHA256.match(e["config_sha256"]), where
        assert (e["config_sha256"] is None) == (e.get("config_from") is None), where
        if e.get("weights_file"):  # a kept copy (src/cxr/weights/): it is the file the figures were measured on
            assert hashlib.sha256((ROOT / e["weights_file"]).read_bytes()).hexdigest() == e["weights_sha256"], where
        if "runs[" not in where:  # a `run` entry holds its seed, machine and precision; the others name the model
            assert {"seed", "cxr", "cpu", "precision"} <= set(e.get("trained", {})), f"{where}: which model?"
            if e["weights_sha256"] is None:  # no file to join on: a recipe, and a path that is no model's name
                assert e["trained"].get("recipe"), where
                assert e.get("run") != "runs/demo", f"{where}: runs/demo is overwritten by every `make demo`"


def _check_benchmark_row(cells: dict[str, str], runs: list[dict], where: str) -> None:
    assert cells["runs"].startswith(_runs_and_seeds(runs)), (where, cells["runs"], _runs_and_seeds(runs))
    _check_model_cell(cells["models"], runs, where)
    for column, metric in (("accuracy", "accuracy"), ("auc", "roc_auc")):
        assert cells[column].replace("**", "") == _spread([r["test"][metric] for r in runs]), (where, column)


README_ROWS = [
    ("codecademy", "covid19-codecademy, 3 classes"),
    ("codecademy-lite0", "covid19-codecademy, frozen ImageNet Lite0"),
    ("pneumoniamnist", "PneumoniaMNIST, 28 px"),
    ("kermany", "Kermany pneumonia"),
    ("radiography", "COVID-19 Radiography"),
]


@pytest.mark.parametrize("name, row", README_ROWS)
def test_the_readme_results_are_the_recorded_runs(name, row):
    runs = _results(name)["runs"]
    text = README.read_text()
    header = _header(text, "benchmark (test images)")
    line = _row(text, row)
    cells = dict(zip(("runs", "models", "accuracy", "auc", "stressed"), line[2:7]))
    assert header[2:7] == ["runs", "model files (SHA-256)", "accuracy", "ROC AUC", "under shift (mean)"]
    _check_benchmark_row(cells, runs, f"README {row}")
    stressed = [r["stress_test"]["mean_accuracy"] for r in runs if "stress_test" in r]
    assert stressed, f"{name}: no run was stressed (`python -m benchmarks run` stresses every test run)"
    assert cells["stressed"] == _spread(stressed) + (
        "" if len(stressed) == len(runs) else f", {len(stressed)} of {len(runs)} runs"
    )


BENCHMARKS_PAGE_ROWS = [
    ("codecademy", "covid19-codecademy (3 classes)"),
    ("codecademy-lite0", "covid19-codecademy, frozen ImageNet Lite0"),
    ("history/codecademy-before-0.8", "covid19-codecademy, cxr 0.7"),
    ("pneumoniamnist", "PneumoniaMNIST (28 px)"),
    ("history/pneumoniamnist-before-0.7", "PneumoniaMNIST, cxr 0.6"),
    ("kermany", "Kermany pneumonia"),
    ("history/kermany-before-0.7", "Kermany, cxr 0.6"),
    ("radiography", "COVID-19 Radiography (3 classes)"),
]


@pytest.mark.parametrize("name, row", BENCHMARKS_PAGE_ROWS)
def test_the_benchmarks_page_table_is_the_recorded_runs(name, row):
    """docs/benchmarks.md: runs and seeds, models, accuracy, AUC, sensitivity / specificity, train wall per machine."""
    runs = _results(name)["runs"]
    text = (DOCS / "benchmarks.md").read_text()
    header = _header(text, "benchmark | recipe | test n")
    line = _row(text, row)
    get = lambda column: _cell(header, line, column)  # noqa: E731
    cells = {
        "runs": get("runs"),
        "models": get("model files (SHA-256)"),
        "accuracy": get("accuracy, mean (min-max)"),
        "auc": get("ROC AUC, mean (min-max)"),
    }
    _check_benchmark_row(cells, runs, f"docs/benchmarks.md {row}")
    assert get("test n").replace(",", "") == str(runs[0]["test"]["n"])
    # "seeds 0-1 EPYC bf16, seed 0 Xeon fp32" (or one machine: "EPYC bf16"): each machine's seeds and precision
    machines = {}
    for run in runs:
        machines.setdefault(_machine(run), []).append(run)
    said = re.findall(r"(?:(seeds? [\d, -]+?) )?(EPYC|Xeon) (bf16|fp32)", get("runs").split(":", 1)[1])
    assert sorted(m for _, m, _ in said) == sorted(machines), (row, said)
    for seeds, m, precision in said:
        assert seeds in ("", _seeds(r["seed"] for r in machines[m])), (row, m, seeds)
        assert {("fp32" if r["precision"] == "32" else "bf16") for r in machines[m]} == {precision}, (row, m)
    walls = dict(
        (m, (lo, hi or lo))
        for lo, hi, m in re.findall(r"([\d.]+)(?:-([\d.]+))? min (EPYC|Xeon)", get("train wall per run"))
    )
    assert sorted(walls) == sorted(machines), (row, walls)
    for m, (lo, hi) in walls.items():
        minutes = [r["train_wall_seconds"] / 60 for r in machines[m]]
        assert (lo, hi) == (f"{min(minutes):.1f}", f"{max(minutes):.1f}"), (row, m, lo, hi)
    sens_spec = get("sensitivity / specificity")
    if sens_spec != "-":
        sens, spec = (s.strip() for s in sens_spec.split("/"))
        assert sens == f"{np.mean([r['test']['sensitivity'] for r in runs]):.3f}", row
        assert spec == _spread([r["test"]["specificity"] for r in runs]), row


def test_results_md_cites_the_recorded_runs_and_models():
    """benchmarks/RESULTS.md (`python -m benchmarks table`) against the JSON it is written from."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    header = _header(text, "benchmark | model")
    for name in ("codecademy", "codecademy-lite0", "kermany", "radiography", "pneumoniamnist"):
        runs = _results(name)["runs"]
        line = _row(text, f"{name} |")
        cells = {
            "runs": _cell(header, line, "runs"),
            "models": _cell(header, line, "weights"),
            "accuracy": _cell(header, line, "accuracy"),
            "auc": _cell(header, line, "AUC"),
        }
        _check_benchmark_row(cells, runs, f"RESULTS.md {name}")
        assert cells["runs"] == _runs_and_seeds(runs)


def test_a_table_citing_a_model_not_in_the_json_fails():
    runs = _results("radiography")["runs"]
    _check_model_cell("`3629556d` (shipped), `bf4516f8`, 1 not kept", runs, "ok")
    for cell in (
        "`3629556d`, `deadbeef`, 1 not kept",
        "`3629556d`, 1 not kept",
        "`3629556d`, `bf4516f8`",
        "`3629556d`, `bf4516f8`, 2 not kept",
    ):
        with pytest.raises(AssertionError):
            _check_model_cell(cell, runs, "bad")


def test_the_benchmarks_page_sentences_are_the_recorded_runs():
    text = " ".join((DOCS / "benchmarks.md").read_text().split())
    # Kermany's runs: seeds, machine, precision, epochs
    runs = _results("kermany")["runs"]
    m = re.search(
        r"Kermany's (\d+) runs are seeds (\d+) and (\d+) on the (EPYC|Xeon) in (bf16|fp32) "
        r"\((\d+) and (\d+) epochs\)",
        text,
    )
    assert m, "the Kermany runs sentence"
    assert int(m[1]) == len(runs) and [int(m[2]), int(m[3])] == [r["seed"] for r in runs]
    assert {m[4]} == {_machine(r) for r in runs}
    assert {m[5]} == {"bf16" if "bf16" in r["precision"] else "fp32" for r in runs}
    assert [int(m[6]), int(m[7])] == [r["epochs_run"] for r in runs]
    # the shipped weights: which run each file is, by its digest
    named = re.findall(
        r"`(src/cxr/weights/[^`]+\.pt)` \(`pretrained: ([a-z0-9.-]+)`\)(?: is)? the (EPYC|Xeon) "
        r"seed-(\d+) model \(`([0-9a-f]{8})`, test (0\.\d{3})\)",
        text,
    )
    assert len(named) == 2, named
    runs = _results("radiography")["runs"]
    for path, name, machine, seed, digest, accuracy in named:
        sha = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        assert sha.startswith(digest) and SHIPPED[name].path == ROOT / path, path
        entry = next(r for r in runs if r.get("weights_sha256") == sha)
        assert (_machine(entry), entry["seed"], f"{entry['test']['accuracy']:.3f}") == (machine, int(seed), accuracy)
    # one machine's runs of the default recipe, in films right
    m = re.search(r"default recipe's (\d+) runs \((seeds [\d-]+), one machine\) span (\d+)-(\d+) of (\d+) right", text)
    assert m, "the codecademy spread sentence"
    runs = _results("codecademy")["runs"]
    assert len({_machine(r) for r in runs}) == 1 and int(m[1]) == len(runs) and m[2] == _seeds(r["seed"] for r in runs)
    right = [round(r["test"]["accuracy"] * r["test"]["n"]) for r in runs]
    assert (int(m[3]), int(m[4]), int(m[5])) == (min(right), max(right), runs[0]["test"]["n"])


def test_the_shipped_weights_figures_are_their_entries():
    """src/cxr/weights/README.md and the shipped-weights test's docstring quote the test accuracy of the entry whose
    weights_sha256 is the file's."""
    runs = _results("radiography")["runs"]

    def accuracy_of(path: str) -> str:
        sha = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        return f"{next(r for r in runs if r.get('weights_sha256') == sha)['test']['accuracy']:.3f}"

    current = accuracy_of("src/cxr/weights/smallnet-radiography-224.pt")
    v06 = accuracy_of("src/cxr/weights/smallnet-radiography-224-v0.6.pt")
    docstring = (ROOT / "tests" / "models" / "test_shipped_weights.py").read_text()
    assert re.findall(r"Measured (0\.\d{3}) on all 1,538 test images", docstring) == [current]
    weights_readme = " ".join((ROOT / "src" / "cxr" / "weights" / "README.md").read_text().split())
    assert f"test {v06})" in weights_readme.split("## `smallnet-radiography-224.pt`")[0]
    assert f"accuracy {current}" in weights_readme.split("## `smallnet-radiography-224.pt`")[1]


GUARD_ROWS = [
    ("codecademy", "codecademy (default recipe"),
    ("kermany", "Kermany (`kermany`"),
    ("pneumoniamnist", "PneumoniaMNIST (`pneumoniamnist`"),
]
SITE_NAMES = {"codecademy": "codecademy", "kermany": "Kermany", "radiography": "Radiography"}


@pytest.mark.parametrize("name, row", GUARD_ROWS)
def test_the_readme_guard_table_is_stress_guard_json(name, row):
    e = _results("stress_guard")[name]
    text = README.read_text()
    header = _header(text, "benchmark model (cxr 0.6 recipe)")
    line = _row(text, row)
    get = lambda column: _cell(header, line, column)  # noqa: E731
    _check_model_cell(get("model file"), [e], f"README guard {row}")
    assert "cxr 0.6" in e["trained"]["recipe"] or "cxr 0.5" in e["trained"]["recipe"], name
    assert get("clean test") == f"{e['stress']['clean_accuracy']:.3f}"
    assert get("mean under shift") == f"{e['stress']['summary']['mean_accuracy']:.3f}"
    assert get("weakest shift").endswith(f"({e['stress']['summary']['worst_shift']['mean_accuracy']:.3f})")
    own = next(v for k, v in e["guard"].items() if k.startswith("own test"))
    assert get("guard: own test flagged") == f"{own['flagged']} of {own['films']}"
    others = dict(re.findall(r"(\w+) ([\d.]+) %", get("other sites' films flagged")))
    recorded = {
        SITE_NAMES[k.split()[0]]: f"{100 * v['share']:.1f}" for k, v in e["guard"].items() if k.endswith("test films")
    }
    assert others == recorded, (others, recorded)


def test_the_readme_sentences_are_the_recorded_figures():
    text = " ".join(README.read_text().split())
    guard = _results("stress_guard")
    flagged = {k: next(v for g, v in guard[k]["guard"].items() if g.startswith("own test")) for k in guard}
    m = re.search(r"these Kermany and PneumoniaMNIST models flag (\d+) and (\d+) of their (\d+) test films", text)
    assert m, "the guard sentence"
    assert (int(m[1]), int(m[2])) == (flagged["kermany"]["flagged"], flagged["pneumoniamnist"]["flagged"])
    assert int(m[3]) == flagged["kermany"]["films"] == flagged["pneumoniamnist"]["films"]
    external = _results("external")
    m = re.search(r"codecademy and radiography on each other's films: (0\.\d\d) and (0\.\d\d)", text)
    assert m and (m[1], m[2]) == tuple(f"{external[k]['accuracy']:.2f}" for k in ("codecademy", "radiography"))


def test_the_shift_battery_is_counted_as_it_is():
    """README and docs name the battery by its shifts and conditions (invert has one severity, not four)."""
    from cxr.evaluation.shifts import SHIFTS

    shifts, conditions = len(SHIFTS), sum(len(s.levels) for s in SHIFTS.values())
    pages = {p: " ".join(p.read_text().split()) for p in [README, *DOCS.glob("*.md")]}
    pattern = r"(\d+) (?:acquisition )?shifts, (\d+) conditions"
    said = [(p.name, m) for p, t in pages.items() for m in re.findall(pattern, t)]
    assert len(said) >= 2 and all(m == (str(shifts), str(conditions)) for _, m in said), said
    assert not [p.name for p, t in pages.items() if re.search(r"shifts (?:x|at) 4 severities", t)]
    assert all(m == str(conditions) for p, t in pages.items() for m in re.findall(r"mean over (\d+) conditions", t))


def test_the_external_table_cites_named_models():
    """docs/robust-recipes.md's other-site table: each row's figures and model against its entry."""
    current, before = _results("external"), _results("history/external-before-0.8")
    text = (DOCS / "robust-recipes.md").read_text()
    header = _header(text, "chosen model (own test)")
    rows = {
        "codecademy default (cxr 0.8": current["codecademy"],
        "codecademy default (cxr 0.7": before["codecademy"],
        "radiography recipe, seed 0": current["radiography"],
        "codecademy frozen ImageNet Lite0": current["codecademy-lite0"],
    }
    for row, e in rows.items():
        line = _row(text, row)
        get = lambda column, line=line: _cell(header, line, column)  # noqa: E731
        _check_model_cell(get("model file"), [e], f"robust-recipes {row}")
        ci = e["accuracy_ci95"]
        assert get("accuracy [95 % CI]") == f"{e['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]", row
        assert get("guard flags") == f"{100 * e['guard_share']:.1f} %", row
        assert f"({e['trained']['own_test_accuracy']:.3f})" in line[0] and f"seed {e['trained']['seed']}" in line[0]


SITE_ROWS = [
    ("pneumoniamnist", "PneumoniaMNIST recipe"),
    ("kermany", "`kermany` recipe"),
    ("codecademy->radiography", "codecademy default"),
]


@pytest.mark.parametrize("case, row", SITE_ROWS)
def test_the_readme_site_table_cites_named_models(case, row):
    e = _results("site_calibration")[case]
    text = README.read_text()
    lines = text.splitlines()
    header = _header(text, "model on site")
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {row}"))
    rows = [lines[start]] + [x for x in lines[start + 1 :] if x.startswith("| same |")][:1]
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        _check_model_cell(_cell(header, cells, "model file"), [e], f"README site {row}")
        if i == 0:
            assert _cell(header, cells, "accuracy") == f"{e['zero_shot_all']['accuracy']:.3f}"
