"""`cxr train`'s options: typed flags, `--set KEY=VALUE`, and every option that is a config key reaching the config."""

import pytest
import typer

from cxr.cli import app
from cxr.cli.train import config_overrides, parse_set_values
from cxr.config import AugmentConfig, TrainConfig
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess


@pytest.mark.parametrize("flag", ["--epochs", "--image-size"])
def test_typed_flags_reject_garbage(tmp_path, flag, capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tmp_path, flag, "abc")
    assert_one_line_error(proc, flag, "cxr train --help")


def test_set_reaches_any_config_key_and_refuses_bad_pairs(tmp_path, capsys, monkeypatch):
    assert parse_set_values(["body_lr_factor=0.1", "augment.noise=0", "model=smallnet", "hflip=true"]) == {
        "body_lr_factor": 0.1,
        "augment.noise": 0,
        "model": "smallnet",
        "hflip": True,
    }
    (tmp_path / "d").mkdir()
    for pair, says in (
        ("oops", "write KEY=VALUE"),
        ("frozen_warmup_epochs=2", "needs weights"),
        ("no_such_key=1", "unknown key"),
    ):
        proc = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tmp_path / "d", "--set", pair)
        assert_one_line_error(proc, says)


def test_every_train_option_but_a_few_is_a_config_key_and_reaches_it():
    """An option named like a config key overrides it (an augmentation flag under augment.); the rest say what to do."""
    options = [p.name for p in typer.main.get_command(app).commands["train"].params]
    overrides = config_overrides({name: name for name in options})
    assert sorted(set(options) - set(overrides.values())) == [
        "config",
        "cv",
        "out",
        "overwrite",
        "resume",
        "set_values",
    ]
    for key, name in overrides.items():
        assert key == name if "." not in key else key == f"augment.{name}"
        assert name in TrainConfig.model_fields if "." not in key else name in AugmentConfig.model_fields
    assert overrides["augment.mixup"] == "mixup" and overrides["epochs"] == "epochs"
