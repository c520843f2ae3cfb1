"""Running `cxr` in tests: a real process, or the same entry point in-process; and the one-line error check."""

import subprocess
import sys

import pytest

from cxr.cli import main


def run_cli(*args):
    """A real process: exit code and stderr exactly as a user sees them."""
    return subprocess.run([sys.executable, "-m", "cxr.cli", *map(str, args)], capture_output=True, text=True)


def run_cli_inprocess(capsys, monkeypatch, *args):
    """Same entry point (`main`) without process start-up cost; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cxr", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, e.value.code, out.out, out.err)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    for frag in fragments:
        assert frag in lines[0], lines[0]
