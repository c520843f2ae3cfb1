"""The root app and `main`: bad input gives one line on stderr, exit code 2, no traceback; `cxr --help` lists the
commands, then the groups; `python -m cxr.cli` is the same entry point."""

import os
import re
import subprocess
import sys

from tests.cli.helpers import assert_one_line_error, run_cli, run_cli_inprocess
from tests.conftest import make_class_folders

TOP_LEVEL = [
    "train",
    "evaluate",
    "report",
    "compare",
    "stress",
    "predict",
    "explain",
    "serve",
    "monitor",
    "sweep",
    "runs",
    "models",
    "audit-log",
]
GROUPS = {
    "data": ["split", "audit", "dedup", "preview", "audit-shortcuts"],
    "run": ["export", "guard", "ensemble"],
    "site": ["calibrate", "adapt"],
    "weights": ["list", "fetch"],
    "readers": ["add", "list", "revoke"],
    "feedback": ["export", "stats"],
}


def _layout_cases(tmp):
    ok = make_class_folders(tmp / "ok", n_train=2, n_test=1, size=16)
    (tmp / "flat" / "train").mkdir(parents=True)
    (tmp / "flat" / "train" / "x.png").write_bytes(b"x")
    empty = make_class_folders(tmp / "empty", n_train=2, n_test=1, size=16)
    (empty / "train" / "other").mkdir()
    mismatch = make_class_folders(tmp / "mismatch", n_train=2, n_test=1, size=16)
    (mismatch / "test" / "normal").rename(mismatch / "test" / "healthy")
    return ok


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    _layout_cases(tmp_path)
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    (tmp_path / "badval.yaml").write_text("batch_size: 0\n")
    (tmp_path / "unfinished").mkdir()
    cases = [
        (["train", "--data", tmp_path / "missing"], ["does not exist"]),
        (["train", "--data", tmp_path / "flat"], ["no class subfolders"]),
        (["train", "--data", tmp_path / "ok" / "train"], ["class folders but no train/", "cxr data split"]),
        (["train", "--data", tmp_path / "empty"], ["other has no images"]),
        (["train", "--data", tmp_path / "mismatch"], ["differ from train classes"]),
        (["train", "--data", tmp_path / "ok", "--config", tmp_path / "bad.yaml"], ["'epochz'", "unknown key"]),
        (["train", "--data", tmp_path / "ok", "--config", tmp_path / "badval.yaml"], ["'batch_size'"]),
        (["train", "--data", tmp_path / "ok", "--model", "vgg99"], ["'model'", "vgg99"]),
        (["train", "--data", tmp_path / "ok", "--mixup", "-1"], ["'augment.mixup'"]),
        (["predict", tmp_path / "unfinished", tmp_path / "ok"], ["not a finished model"]),
        (["evaluate", tmp_path / "missing-run"], ["no such run"]),
        # outputs are checked before any work, and never replace a run's model.pt
        (
            ["predict", tmp_path / "unfinished", tmp_path / "ok", "--out", tmp_path / "unfinished" / "model.pt"],
            ["CSV file names end in .csv"],
        ),
        (["report", tmp_path / "unfinished", "--out", tmp_path / "unfinished" / "model.pt"], ["HTML file names"]),
        (["train", "--data", tmp_path / "ok", "--out", tmp_path / "bad.yaml"], ["bad.yaml is a file, not a folder"]),
        (["data", "split", tmp_path / "ok", "--out", tmp_path / "unfinished"], ["is a folder; pass a file name"]),
        (["data", "preview", tmp_path / "ok", "--out", tmp_path / "bad.yaml" / "p.png"], ["is a file, not a folder"]),
        # usage errors: one line too, naming the command's --help
        (["trian"], ["No such command 'trian'", "cxr --help"]),
        (["evaluate", tmp_path / "missing-run", "--batch-size", "0"], ["--batch-size", "cxr evaluate --help"]),
        (["serve", tmp_path / "missing-run", "--port", "70000"], ["--port"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *args), *fragments)
    assert_one_line_error(run_cli(*cases[0][0]), *cases[0][1])  # and once through a real process


def _listed(help_text: str, panel: str) -> list[str]:
    """The names in one rich panel of `--help` (rows `│ name   text │`)."""
    body = help_text.split(f"─ {panel} ─")[1].split("╰")[0]
    return re.findall(r"^│ ([a-z][a-z-]*) ", body, re.M)


def test_help_lists_the_commands_then_the_groups(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    proc = run_cli_inprocess(capsys, monkeypatch, "--help")
    assert proc.returncode == 0
    assert _listed(proc.stdout, "Commands") == TOP_LEVEL
    assert _listed(proc.stdout, "Command groups") == list(GROUPS)


def test_each_group_lists_its_commands(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for group, commands in GROUPS.items():
        proc = run_cli_inprocess(capsys, monkeypatch, group, "--help")
        assert proc.returncode == 0 and proc.stderr == "", group
        assert _listed(proc.stdout, "Commands") == commands, group
        alone = run_cli_inprocess(capsys, monkeypatch, group)  # no command: the group's help, as click shows it
        assert all(c in alone.stdout + alone.stderr for c in commands), group


def test_python_dash_m_cxr_cli_is_the_entry_point():
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "cxr.cli", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and _listed(proc.stdout, "Command groups") == list(GROUPS)
