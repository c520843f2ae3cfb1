"""Output that reads right without a terminal: messages with long paths are never wrapped inside a line, tables say
which file each row is and never cut a name or a figure, whatever the width (COLUMNS) the console assumes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cxr.inference.bundle import BundleMeta, save_bundle
from cxr.models import create_model

DEEP = "a-folder-name-long-enough-to-overflow-any-console/" * 3


def run_cli(*args, columns: int):
    """A real process without a terminal (pipes), as in CI logs, nohup or a notebook cell."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "cxr.cli", *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture
def model_and_films(tmp_path):
    """A three-class bundle (untrained: only the printing is under test) and films deep in a long folder."""
    run = tmp_path / DEEP / "run"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    save_bundle(
        run, create_model("smallnet", 3), BundleMeta("smallnet", ["Covid", "Normal", "Viral Pneumonia"], 32, 0.5, 0.25)
    )
    films = tmp_path / DEEP / "films"
    for cls in ("Covid", "Normal"):
        (films / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((40, 40), 20 * i, np.uint8)).save(films / cls / f"patient-{i:03d}-film.png")
    return run, films


@pytest.mark.parametrize("columns", [40, 300])
def test_predict_table_names_every_file_whole_and_keeps_its_figures(model_and_films, tmp_path, columns):
    run, films = model_and_films
    out = tmp_path / DEEP / "predictions.csv"
    proc = run_cli("predict", run, films, "--out", out, columns=columns)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "patient-" in line]
    assert len(rows) == 20  # 20 shown, the rest counted and pointed to the CSV
    for line in rows:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        assert cells[0].split("/")[0] in ("Covid", "Normal") and cells[0].endswith("-film.png"), line  # relative, whole
        assert all(len(p) == 5 and float(p) <= 1 for p in cells[2:]), line  # three probabilities, none cut
    assert "…" not in proc.stdout
    assert f"... and 4 more (all of them in {out})" in proc.stdout
    assert f"wrote {out}" in proc.stdout.splitlines()  # a long path on one line


def test_messages_with_long_paths_stay_on_one_line(model_and_films, tmp_path):
    run, films = model_and_films
    missing = tmp_path / DEEP / "no-such-dataset"
    proc = run_cli("train", "--data", missing, "--out", tmp_path / DEEP / "new-run", columns=40)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [proc.stderr.strip()]
    assert str(missing) in proc.stderr

    # a warning (an unreadable film) and the summary, both naming long paths
    (films / "Covid" / "broken.png").write_bytes(b"not a png")
    proc = run_cli("predict", run, films / "Covid" / "broken.png", films / "Normal", columns=40)
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stderr.splitlines() if line.startswith("warning:") and "skipped" in line)
    assert str(films / "Covid" / "broken.png") in warning
    assert "12 predicted, 1 skipped" in proc.stdout


def test_log_records_are_plain_single_lines():
    import logging

    from cxr.cli.output import PlainLogFormatter

    def record(level: int) -> logging.LogRecord:
        return logging.LogRecord("cxr", level, __file__, 1, "kept in " + "/x" * 60, None, None)

    assert PlainLogFormatter().format(record(logging.INFO)) == "kept in " + "/x" * 60
    assert PlainLogFormatter().format(record(logging.WARNING)) == "warning: kept in " + "/x" * 60
