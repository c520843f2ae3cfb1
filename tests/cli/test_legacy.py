"""The old spellings (`cxr export`, `cxr calibrate`, `cxr audit-shortcuts`, ...) still work for one release: hidden
from `--help`, they run the new command's code after one note line on stderr."""

import re

import pytest

from tests.cli.helpers import run_cli_inprocess

RENAMED = {
    "export": "run export",
    "guard": "run guard",
    "ensemble": "run ensemble",
    "calibrate": "site calibrate",
    "adapt": "site adapt",
    "audit-shortcuts": "data audit-shortcuts",
}


def _note(old: str) -> str:
    return f'note: "cxr {old}" is now "cxr {RENAMED[old]}"; the old spelling goes in cxr 1.0'


def _args(old: str, tmp_path) -> list:
    """Arguments each command refuses at once (no such run): old and new must refuse them alike."""
    missing = tmp_path / "no-such-run"
    return {
        "ensemble": [missing, tmp_path / "other", "--out", tmp_path / "e"],
        "adapt": [missing, tmp_path, "--out", tmp_path / "adapted"],
    }.get(old, [missing])


@pytest.mark.parametrize("old", list(RENAMED))
def test_an_old_spelling_runs_the_new_command_after_one_note(old, tmp_path, capsys, monkeypatch):
    args = _args(old, tmp_path)
    new = run_cli_inprocess(capsys, monkeypatch, *RENAMED[old].split(), *args)
    was = run_cli_inprocess(capsys, monkeypatch, old, *args)
    assert new.returncode == was.returncode == 2 and was.stdout == new.stdout
    new_lines, was_lines = new.stderr.strip().splitlines(), was.stderr.strip().splitlines()
    assert len(new_lines) == 1 and new_lines[0].startswith("error:") and "note:" not in new.stderr
    assert was_lines == [_note(old), *new_lines]


def test_the_note_comes_first_even_when_an_option_check_fails(tmp_path, capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "audit-shortcuts", tmp_path, "--split", "holdout")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[0] == _note("audit-shortcuts") and len(lines) == 2
    assert lines[1].startswith("error:") and "--split must be" in lines[1]


@pytest.mark.parametrize("old", list(RENAMED))
def test_an_old_spelling_has_the_new_commands_help_and_is_hidden(old, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    was = run_cli_inprocess(capsys, monkeypatch, old, "--help")
    new = run_cli_inprocess(capsys, monkeypatch, *RENAMED[old].split(), "--help")
    assert was.returncode == new.returncode == 0
    assert was.stderr.strip() == _note(old) and new.stderr == ""
    body = lambda out: [line.rstrip() for line in out.splitlines() if "Usage:" not in line]  # noqa: E731
    assert body(was.stdout) == body(new.stdout) and f"cxr {RENAMED[old]} [OPTIONS]" in new.stdout
    listed = run_cli_inprocess(capsys, monkeypatch, "--help").stdout
    assert not re.search(rf"^│ {re.escape(old)} ", listed, re.M)


def test_the_cli_reference_names_each_old_spelling_and_its_new_one():
    from cxr.docs_reference import cli_reference_markdown, renamed_commands

    assert renamed_commands() == {f"cxr {old}": f"cxr {new}" for old, new in RENAMED.items()}
    page = cli_reference_markdown()
    assert "## cxr export\n" not in page and "## cxr run export\n" in page
    assert "`cxr export` is now [`cxr run export`](#cxr-run-export)" in page
