"""`cxr models` and `cxr weights list` (the weights module; `weights fetch`: tests/models/test_pretrained.py)."""

from cxr.models import pretrained
from cxr.models.pretrained import SHIPPED, SHIPPED_DIR
from tests.cli.helpers import run_cli_inprocess


def test_models_lists_every_registered_model(capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "models")
    assert proc.returncode == 0
    for name in ("smallnet", "vanilla-cnn", "resnet18", "densenet121", "efficientnet-b0", "vgg16", "vgg16-bn"):
        assert name in proc.stdout


def test_models_names_smallnets_shipped_starts(capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "models")
    row = next(line for line in proc.stdout.splitlines() if " smallnet " in line)
    assert all(name in row for name, entry in SHIPPED.items() if entry.model == "smallnet")
    assert "radiography-v0.6" in row


def _rows(stdout: str, pretrained: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│ ") and line.split("│")[2].strip() == pretrained]


def test_weights_list_shows_every_shipped_start_and_where_they_lie(capsys, monkeypatch):
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    assert proc.returncode == 0, proc.stderr
    for name, entry in SHIPPED.items():
        [row] = _rows(proc.stdout, name)
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[0] == entry.model and cells[4] == entry.file, row
        assert cells[5] == f"{entry.size_bytes / 1e6:.1f} MB" and cells[6] == "all 64 digits", row
        assert cells[7] == "shipped", row
    assert str(SHIPPED_DIR) in " ".join(proc.stdout.split())  # where `cxr predict FILE` finds them


def test_weights_list_says_when_a_shipped_file_is_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", tmp_path)  # ShippedWeights.path reads it: an install without them
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    assert proc.returncode == 0, proc.stderr
    assert all("missing: reinstall cxr" in _rows(proc.stdout, name)[0] for name in SHIPPED)


def test_train_help_names_the_shipped_starts(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a narrow terminal cuts help words to `…`: read it at a width that fits
    proc = run_cli_inprocess(capsys, monkeypatch, "train", "--help")
    assert all(name in " ".join(proc.stdout.split()) for name in SHIPPED)
