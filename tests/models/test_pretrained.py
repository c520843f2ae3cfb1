"""`--pretrained imagenet` and `cxr weights`: fetched from a loopback HTTP server the test starts, hash-checked, cached
under $TORCH_HOME and read from there with the server stopped. No test touches the internet.

The served file is a state dict built here under torchvision's ResNet-18 names (RGB first convolution, 1000-way
head), and the registry entry is pointed at it with its own SHA-256, as the real table points at torchvision's.
"""

import hashlib
import json
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from cxr.config import build_config
from cxr.errors import CxrError
from cxr.models import available_models, create_model
from cxr.models.pretrained import (
    PRETRAINED_SOURCES,
    PUBLISHED,
    RADIOGRAPHY_FILE,
    SHIPPED,
    PublishedWeights,
    fetch,
    pretrained_file,
    shipped_file,
)
from cxr.models.weights import load_matching_weights
from cxr.training.module import Classifier
from cxr.training.train import fetch_start_weights, start_weights
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.models.test_foreign_weights import _imagenet_file


class _Server:
    """A static file server on 127.0.0.1 (a free port) that counts the requests it answered."""

    def __init__(self, root):
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()  # the port refuses connections from now on
        self.thread.join()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # the loopback server is reached directly, never through a proxy
    return home


@pytest.fixture
def served_resnet18(tmp_path, torch_home, monkeypatch):
    """resnet18's registry entry pointed at a torchvision-named file served on loopback; yields (server, entry)."""
    root = tmp_path / "served"
    root.mkdir()
    staging = tmp_path / "r18.pth"
    _imagenet_file("resnet18", lambda k: k, staging, "conv1.weight", ("fc.weight", "fc.bias"))
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"  # torchvision's naming: the first 8 digits of the SHA-256
    shutil.move(staging, root / name)
    server = _Server(root)
    entry = PublishedWeights(server.url + name, digest, (root / name).stat().st_size, "test")
    monkeypatch.setitem(PUBLISHED, "resnet18", entry)
    yield server, entry
    server.stop()


def _train(capsys, monkeypatch, data, out, *extra):
    return run_cli_inprocess(
        capsys,
        monkeypatch,
        "train",
        "--data",
        data,
        "--model",
        "resnet18",
        "--pretrained",
        "imagenet",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--out",
        out,
        *extra,
    )


@pytest.mark.slow
def test_first_run_downloads_the_second_reads_the_cache_offline(
    served_resnet18, torch_home, tiny_dataset, tmp_path, capsys, monkeypatch
):
    server, entry = served_resnet18
    proc = _train(capsys, monkeypatch, tiny_dataset, tmp_path / "first")
    assert proc.returncode == 0, proc.stderr
    cached = torch_home / "hub" / "checkpoints" / entry.file_name
    assert server.requests == ["/" + entry.file_name] and cached.is_file()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == entry.sha256
    init = json.loads((tmp_path / "first" / "metrics.json").read_text())["training"]["init_weights"]
    assert init["source"] == str(cached)
    assert init["adapted"] == {"conv1.weight": "3 input channels summed to 1"}
    assert set(init["not_loaded"]) == {"fc.weight", "fc.bias"}  # the 1000-way head is left out
    config = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    assert config["pretrained"] == "imagenet" and config["input_norm"] == "image" and config["weights"] is None

    server.stop()  # offline from here: only the cache can serve the second run
    proc = _train(capsys, monkeypatch, tiny_dataset, tmp_path / "second")
    assert proc.returncode == 0, proc.stderr
    assert server.requests == ["/" + entry.file_name]
    init = json.loads((tmp_path / "second" / "metrics.json").read_text())["training"]["init_weights"]
    assert init["source"] == str(cached) and len(init["loaded"]) == 120


def test_training_start_downloads_once_then_loads_from_the_cache_offline(served_resnet18, torch_home):
    """What `cxr train` does before reading data (fetch_start_weights), then the module's load, without Lightning."""
    server, entry = served_resnet18
    cfg = build_config(None, {"model": "resnet18", "pretrained": "imagenet"})
    fetch_start_weights(cfg)
    cached = torch_home / "hub" / "checkpoints" / entry.file_name
    assert server.requests == ["/" + entry.file_name] and cached.is_file()
    server.stop()
    fetch_start_weights(cfg)  # offline: the cached file, verified again
    module = Classifier("resnet18", 2, weights=str(start_weights(cfg)), channels_last=False)
    report = module.weights_report
    assert report.source == str(cached) and len(report.loaded) == 120
    assert report.adapted == {"conv1.weight": "3 input channels summed to 1"}
    assert server.requests == ["/" + entry.file_name]


def test_offline_without_the_file_is_one_line_naming_url_and_place_before_data_is_read(
    served_resnet18, torch_home, tmp_path, capsys, monkeypatch
):
    server, entry = served_resnet18
    server.stop()
    missing_data = tmp_path / "no-such-dataset"  # read first, it would fail on this instead
    proc = _train(capsys, monkeypatch, missing_data, tmp_path / "run")
    place = torch_home / "hub" / "checkpoints" / entry.file_name
    assert_one_line_error(proc, entry.file_name, entry.url, f"copy the file to {place}", "cxr weights fetch resnet18")
    assert not (tmp_path / "run").exists() and not place.exists()


def test_a_download_with_another_hash_is_refused_and_deleted(served_resnet18, torch_home, monkeypatch):
    _server, entry = served_resnet18
    monkeypatch.setitem(PUBLISHED, "resnet18", PublishedWeights(entry.url, "0" * 64, None, "test"))
    with pytest.raises(CxrError, match="not the published one.*refused and deleted"):
        fetch("resnet18")
    checkpoints = torch_home / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []  # neither the file nor a partial download is left


def test_a_damaged_cached_file_is_refused_and_deleted(served_resnet18, torch_home):
    server, entry = served_resnet18
    path = fetch("resnet18")
    assert path == torch_home / "hub" / "checkpoints" / entry.file_name
    server.stop()
    with open(path, "r+b") as f:  # one flipped byte, same size
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(CxrError, match=f"{re.escape(str(path))} has SHA-256 .* not the published"):
        fetch("resnet18")
    assert not path.exists()


def test_weights_fetch_to_a_folder_then_list_shows_the_copy_in_the_cache(
    served_resnet18, torch_home, tmp_path, capsys, monkeypatch
):
    server, entry = served_resnet18
    carry = tmp_path / "usb-stick"
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "fetch", "resnet18", "--to", carry)
    assert proc.returncode == 0, proc.stderr
    assert (carry / entry.file_name).is_file() and server.requests == ["/" + entry.file_name]
    assert str(torch_home / "hub" / "checkpoints") in proc.stdout
    row = lambda out: next(line for line in out.splitlines() if " resnet18 " in line)  # noqa: E731
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    assert "not cached" in row(proc.stdout) and "all 64 digits" in row(proc.stdout)
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(carry / entry.file_name, torch_home / "hub" / "checkpoints")  # the air-gapped machine's copy step
    server.stop()
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    assert "not cached" not in row(proc.stdout) and " cached " in row(proc.stdout)
    assert fetch("resnet18") == torch_home / "hub" / "checkpoints" / entry.file_name  # verified, no network


def test_weights_fetch_of_a_model_without_published_weights_is_one_line(capsys, monkeypatch, torch_home):
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "fetch", "resnet18", "smallnet")
    assert_one_line_error(proc, "'smallnet' has no published ImageNet weights", "resnet18")
    assert not (torch_home / "hub").exists()  # names are checked before any download starts


def test_the_table_is_consistent_with_the_file_names_and_the_registry():
    assert set(PUBLISHED) == {
        "resnet18",
        "resnet34",
        "resnet50",
        "densenet121",
        "efficientnet-b0",
        "vgg16",
        "vgg16-bn",
        "vgg19",
        "vgg19-bn",
    }
    for model, entry in PUBLISHED.items():
        assert model in available_models()
        assert entry.url.startswith("https://")
        prefix = re.fullmatch(r"[a-z0-9_-]+-([0-9a-f]{8})\.pth", entry.file_name).group(1)
        assert entry.sha256.startswith(prefix), model  # the full digest agrees with the published prefix
        assert len(entry.sha256) in (8, 64) and re.fullmatch(r"[0-9a-f]+", entry.sha256)
    assert [m for m, e in PUBLISHED.items() if not e.full_hash] == ["efficientnet-b0"]


def test_radiography_start_is_the_shipped_smallnet_and_keeps_its_normalisation():
    cfg = build_config(None, {"pretrained": "radiography"})
    assert cfg.input_norm == "dataset"  # the file was trained on dataset-normalised films
    path = pretrained_file(cfg.pretrained, cfg.model)
    assert path == RADIOGRAPHY_FILE
    report = load_matching_weights(create_model("smallnet", 3), path)
    assert not report.not_loaded and not report.unused


def test_the_shipped_starts_come_in_the_package_by_name():
    """`pretrained: NAME` resolves through SHIPPED to cxr/weights/ (package data), hash-checked: no repository path."""
    import tomllib
    from pathlib import Path
    from typing import get_args

    from cxr.config import TrainConfig

    assert get_args(TrainConfig.model_fields["pretrained"].annotation) == PRETRAINED_SOURCES
    assert set(SHIPPED) == {"radiography", "radiography-v0.6"} and RADIOGRAPHY_FILE == SHIPPED["radiography"].path
    package = Path(__import__("cxr").__file__).parent
    declared = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name, entry in SHIPPED.items():
        path = pretrained_file(name, "smallnet")
        assert path == shipped_file(name) == entry.path and path.parent == package / "weights"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256 and path.stat().st_size == entry.size_bytes
        assert any(path.match(f"cxr/{pattern}") for pattern in declared["cxr"]), name  # pip installs it
    assert "weights/README.md" in declared["cxr"] and (package / "weights" / "README.md").is_file()
    with pytest.raises(CxrError, match="radiography-v0.6 is a smallnet"):
        build_config(None, {"model": "resnet18", "pretrained": "radiography-v0.6"})


def test_a_damaged_or_missing_shipped_file_is_refused_in_one_line(tmp_path, monkeypatch):
    import cxr.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "SHIPPED_DIR", tmp_path)
    with pytest.raises(CxrError, match="missing from this cxr installation") as e:
        shipped_file("radiography")
    assert "\n" not in str(e.value)
    lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:3629556d\nsize 668949\n"
    (tmp_path / SHIPPED["radiography"].file).write_text(lfs)  # a Git LFS pointer instead of the file
    with pytest.raises(CxrError, match="refused, nothing was loaded"):
        shipped_file("radiography")
    damaged = bytearray(RADIOGRAPHY_FILE.read_bytes())
    damaged[-1] ^= 1  # same size, one bit off
    (tmp_path / SHIPPED["radiography"].file).write_bytes(bytes(damaged))
    with pytest.raises(CxrError, match="SHA-256"):
        pretrained_file("radiography", "smallnet")
    with pytest.raises(CxrError, match="no weights named 'radiography-v0.5'"):
        shipped_file("radiography-v0.5")
