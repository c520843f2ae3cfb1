"""cxr.rundir: the run directory's files are named there and nowhere else, a finished run holds what a complete
bundle must, and metrics.json takes sections without losing the others."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import cxr
from cxr import rundir
from cxr.errors import CxrError
from cxr.rundir import MODEL, REQUIRED, RUN_ARTIFACTS, SPLITS, RunDir

SRC = Path(cxr.__file__).parent

# Names that mean a run's file wherever they appear as a string.
FILE_NAMES = {
    rundir.MODEL,
    rundir.CONFIG,
    rundir.METRICS,
    rundir.SPLITS,
    rundir.HISTORY,
    rundir.TIMINGS,
    rundir.LAST_CHECKPOINT,
    rundir.ONNX,
    rundir.MLFLOW,
    rundir.CV,
    rundir.OOF_PREDICTIONS,
    rundir.REPORT,
    rundir.PREVIOUS_RUN,
}
FILE_PATTERNS = [re.compile(p) for p in (r"predictions_.+\.csv", r"stress_.+\.csv", r"report_.+\.html")]
# Folder names that are ordinary words too (a dict key "members", the `cxr data audit` command): flagged where they
# name a path (an operand of `/`, an argument of Path(), joinpath(), with_name(), a list of run files).
FOLDER_NAMES = {
    rundir.CHECKPOINTS,
    rundir.LOGS,
    rundir.PLOTS,
    rundir.AUDIT,
    rundir.MEMBERS,
    rundir.SELECTION,
    rundir.FOLDS,
    rundir.MANIFESTS,
}
PATH_CALLS = {"Path", "PurePath", "joinpath", "with_name"}

# Not converted yet: the service and the reading room, which another change moves onto cxr.rundir. That change
# empties this list; nothing may be added to it.
PENDING = ("serve/", "readingroom/", "cli/serve.py", "cli/reading.py")
# The same word naming a folder that is not a run's.
OTHER_FOLDERS = {
    ("models/pretrained.py", rundir.CHECKPOINTS): "torch.hub's own $TORCH_HOME/hub/checkpoints",
    ("cli/data.py", rundir.AUDIT): "`cxr data audit`'s default --out, audit/<dataset> in the working folder",
}


def _template(node: ast.AST) -> str | None:
    """A string constant's value; an f-string's constant parts with {} for each value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _names_a_file(text: str) -> bool:
    last = text.rsplit("/", 1)[-1]
    return last in FILE_NAMES or any(p.fullmatch(last) for p in FILE_PATTERNS)


def run_file_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string in `source` that spells a run directory's file name."""
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    f_string_parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}  # read whole
    in_path: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            in_path |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func in PATH_CALLS:
                in_path |= {id(a) for a in node.args}
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            texts = [_template(e) for e in node.elts]
            if any(t is not None and _names_a_file(t) for t in texts):
                in_path |= {id(e) for e in node.elts}
    found = []
    for node in ast.walk(tree):
        text = _template(node)
        if text is None or id(node) in docstrings or id(node) in f_string_parts:
            continue
        if _names_a_file(text) or (text in FOLDER_NAMES and id(node) in in_path):
            found.append((node.lineno, text))
    return found


def test_the_scan_finds_what_it_looks_for():
    source = """
a = run / "model.pt"
b = f"wrote {run / 'plots'}/ and {run / f'predictions_{key}.csv'}"
c = ("config.yaml", "members")
d = Path("checkpoints") / "last.ckpt"
e = f"{out}/metrics.json"
ok = meta.extra["members"], {"plots": 1}, "a model.pt file", f"stress_{key}.png", "predictions.csv"
"""
    expected = [
        "model.pt",
        "plots",
        "predictions_{}.csv",
        "config.yaml",
        "members",
        "checkpoints",
        "last.ckpt",
        "{}/metrics.json",
    ]
    assert sorted(t for _, t in run_file_literals(source)) == sorted(expected)


def test_run_file_names_are_spelt_only_in_rundir():
    spelt = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "rundir.py" or rel.startswith(PENDING):
            continue
        for line, text in run_file_literals(path.read_text()):
            if (rel, text) not in OTHER_FOLDERS:
                spelt.append(f"{rel}:{line}: {text!r}")
    assert not spelt, "use the names in cxr.rundir (or RunDir(...)) instead of:\n" + "\n".join(spelt)


def test_pending_files_exist():
    """The exclusions name real files, so a rename does not quietly widen them."""
    assert all((SRC / p).exists() for p in PENDING)
    assert all((SRC / rel).is_file() for rel, _ in OTHER_FOLDERS)


def test_a_finished_run_is_complete_and_a_half_made_one_says_what_it_lacks(tiny_dataset, tmp_path):
    from cxr.config import build_config
    from cxr.training.train import train

    cfg = build_config(
        None, dict(data=tiny_dataset, model="smallnet", image_size=32, epochs=1, batch_size=8, num_workers=0)
    )
    run = RunDir(train(cfg, tmp_path / "run"))
    assert all((run / name).is_file() for name in REQUIRED)
    assert run.missing() == [] and run.finished
    assert {p.name for p in run.path.iterdir()} <= set(RUN_ARTIFACTS)  # --overwrite sets aside all training wrote
    assert run.read_metrics()["training"]["epochs_run"] == 1 and run.data_path().resolve() == tiny_dataset.resolve()

    run.model.unlink()  # as if stopped before the bundle was written
    run.splits.unlink()
    assert run.missing() == [MODEL, SPLITS] and not run.finished
    assert RunDir(tmp_path / "empty").missing() == list(REQUIRED)


def test_merge_metrics_keeps_other_sections(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == {}
    run.merge_metrics({"training": {"epochs_run": 3}, "test": {"accuracy": 0.5, "stress": {"n": 8}}})
    merged = run.merge_metrics({"test": {"accuracy": 0.75}})  # a section is replaced whole, the others kept
    assert merged == {"training": {"epochs_run": 3}, "test": {"accuracy": 0.75}}
    assert json.loads(run.metrics.read_text()) == merged
    assert [p.name for p in tmp_path.iterdir()] == [rundir.METRICS]  # written atomically: no temp file left


def test_config_values_and_resumable(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(CxrError, match=rundir.CONFIG):
        run.config_values()
    run.path.mkdir()
    run.config.write_text("- a list\n")
    with pytest.raises(CxrError, match="not a config"):
        run.config_values()
    assert not run.resumable
    member = RunDir(run.members / "1").last_checkpoint
    member.parent.mkdir(parents=True)
    member.write_bytes(b"")
    assert run.resumable  # an ensemble member's checkpoint: `--resume` continues the ensemble
    assert run.report("val").name == "report_val.html" and run.report().name == rundir.REPORT
