"""`cxr models` (in the weights module, beside `cxr weights list|fetch`)."""

from tests.cli.helpers import run_cli_inprocess


def test_models_lists_every_registered_model(capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "models")
    assert proc.returncode == 0
    for name in ("smallnet", "vanilla-cnn", "resnet18", "densenet121", "efficientnet-b0", "vgg16", "vgg16-bn"):
        assert name in proc.stdout
