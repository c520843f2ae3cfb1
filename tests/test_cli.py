"""CLI: bad input gives one line on stderr, exit code 2, no traceback."""

import subprocess
import sys

import pytest

from cxr.cli import main
from tests.conftest import make_class_folders


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
        (["predict", tmp_path / "unfinished", tmp_path / "ok", "--out", tmp_path / "unfinished" / "model.pt"],
         ["CSV file names end in .csv"]),
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


def test_models_lists_every_registered_model(capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "models")
    assert proc.returncode == 0
    for name in ("smallnet", "vanilla-cnn", "resnet18", "densenet121", "efficientnet-b0", "vgg16", "vgg16-bn"):
        assert name in proc.stdout


@pytest.mark.parametrize("flag", ["--epochs", "--image-size"])
def test_typed_flags_reject_garbage(tmp_path, flag, capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tmp_path, flag, "abc")
    assert_one_line_error(proc, flag, "cxr train --help")


def test_set_reaches_any_config_key_and_refuses_bad_pairs(tmp_path, capsys, monkeypatch):
    from cxr.cli import parse_set_values

    assert parse_set_values(["body_lr_factor=0.1", "augment.noise=0", "model=smallnet", "hflip=true"]) == {
        "body_lr_factor": 0.1, "augment.noise": 0, "model": "smallnet", "hflip": True,
    }  # fmt: skip
    (tmp_path / "d").mkdir()
    for pair, says in (("oops", "write KEY=VALUE"), ("frozen_warmup_epochs=2", "needs weights"),
                       ("no_such_key=1", "unknown key")):  # fmt: skip
        proc = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tmp_path / "d", "--set", pair)
        assert_one_line_error(proc, says)
