"""ImageNet files of other libraries (torchvision, EfficientNet-PyTorch) load into cxr's one-channel models.

The foreign files are built here under each library's published tensor names (spelled out in this file, not taken
from the registry), with RGB first convolutions and 1000-class heads, as the real downloads have.
"""

import re

import pytest
import torch

from cxr.models import create_model, model_spec
from cxr.models.weights import load_matching_weights
from cxr.training.module import Classifier

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _torchvision_resnet_names(blocks: tuple[int, ...], bottleneck: bool) -> list[str]:
    names = ["conv1.weight", *(f"bn1.{p}" for p in BN)]
    for layer, n in enumerate(blocks, start=1):
        for block in range(n):
            pre = f"layer{layer}.{block}"
            for conv in (1, 2, 3) if bottleneck else (1, 2):
                names += [f"{pre}.conv{conv}.weight", *(f"{pre}.bn{conv}.{p}" for p in BN)]
            if block == 0 and (layer > 1 or bottleneck):  # a bottleneck widens 64 -> 256 in layer1 too
                names += [f"{pre}.downsample.0.weight", *(f"{pre}.downsample.1.{p}" for p in BN)]
    return names + ["fc.weight", "fc.bias"]


TORCHVISION_RESNETS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
}


# the `features.N` index of every convolution in torchvision's vgg16 / vgg16_bn / vgg19 / vgg19_bn
TORCHVISION_VGG_CONVS = {
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    "vgg16-bn": (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40),
    "vgg19": (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
    "vgg19-bn": (0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49),
}


def _torchvision_vgg_names(name: str) -> list[str]:
    batch_norm = name.endswith("-bn")
    convs = TORCHVISION_VGG_CONVS[name]
    names = []
    for i in convs:
        names += [f"features.{i}.weight", f"features.{i}.bias"]
        names += [f"features.{i + 1}.{p}" for p in BN] if batch_norm else []
    return names


def _imagenet_file(model_name: str, rename, path, first_conv: str, head: tuple[str, ...]) -> dict:
    """Our model's tensors under the other library's names, random, with a 3-channel first conv and a 1000-way head."""
    foreign = {}
    for name, t in create_model(model_name, 2).state_dict().items():
        if name == first_conv:
            t = torch.randn(t.shape[0], 3, *t.shape[2:])
        elif name in head:
            t = torch.randn(1000, *t.shape[1:])
        elif t.is_floating_point():
            t = torch.randn_like(t)
        foreign[rename(name)] = t
    torch.save(foreign, path)
    return foreign


def _load_and_check(model_name, path, foreign, first_conv, head, deep: str, foreign_deep: str):
    model = create_model(model_name, 2)
    report = load_matching_weights(model, path, model_spec(model_name).foreign_names)
    state = model.state_dict()
    assert set(report.not_loaded) == set(head), report.not_loaded
    assert all("1000" in reason for reason in report.not_loaded.values())
    assert report.adapted == {first_conv: "3 input channels summed to 1"}
    assert len(report.loaded) == len(state) - len(head)
    torch.testing.assert_close(state[first_conv], foreign[first_conv].sum(1, keepdim=True))
    torch.testing.assert_close(state[deep], foreign[foreign_deep])
    assert "summed to 1" in report.summary()
    return report


@pytest.mark.parametrize("name", list(TORCHVISION_RESNETS))
def test_resnets_are_torchvision_resnets_and_load_their_imagenet_files(tmp_path, name):
    model = create_model(name, 2)
    assert list(model.state_dict()) == _torchvision_resnet_names(*TORCHVISION_RESNETS[name])
    # torchvision's geometry too, not only its names: a 7x7 stride-2 stem, so a 224 px film ends as a 7x7 map
    assert model.conv1.stride == (2, 2) and model.conv1.kernel_size == (7, 7)
    features = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: features.setdefault("layer4", out))
    model.eval()(torch.zeros(1, 1, 224, 224))
    assert features["layer4"].shape[-2:] == (7, 7)
    head = ("fc.weight", "fc.bias")
    foreign = _imagenet_file(name, lambda k: k, tmp_path / "r.pth", "conv1.weight", head)
    _load_and_check(
        name, tmp_path / "r.pth", foreign, "conv1.weight", head, "layer4.1.conv2.weight", "layer4.1.conv2.weight"
    )


@pytest.mark.parametrize("dotted", [False, True], ids=["norm1", "norm.1"])
def test_densenet121_loads_torchvision_names(tmp_path, dotted):
    def torchvision_name(k):  # torchvision: no `.layers.`; its own downloads still spell `norm.1`, `conv.2`
        k = k.replace(".layers.", ".").replace("class_layers.out.", "classifier.")
        return re.sub(r"(denselayer\d+)\.(norm|conv)([12])\.", r"\1.\2.\3.", k) if dotted else k

    head = ("class_layers.out.weight", "class_layers.out.bias")
    foreign = _imagenet_file("densenet121", torchvision_name, tmp_path / "d.pth", "features.conv0.weight", head)
    layer = "features.denseblock2.denselayer3." + ("norm.2.weight" if dotted else "norm2.weight")
    for name in (layer, "features.transition1.conv.weight", "features.norm5.running_var", "classifier.weight"):
        assert name in foreign
    report = _load_and_check(
        "densenet121",
        tmp_path / "d.pth",
        foreign,
        "features.conv0.weight",
        head,
        "features.denseblock2.denselayer3.layers.norm2.weight",
        layer,
    )
    assert report.unused == []  # torchvision's classifier found its place (the head), only its size differs


def test_efficientnet_b0_loads_efficientnet_pytorch_names(tmp_path):
    def flat_block_name(k):  # EfficientNet-PyTorch numbers its 16 blocks flat: `_blocks.15._project_conv.weight`
        parts = k.split(".")
        return ".".join(parts[:1] + parts[2:]) if parts[0] == "_blocks" else k

    head = ("_fc.weight", "_fc.bias")
    foreign = _imagenet_file("efficientnet-b0", flat_block_name, tmp_path / "e.pth", "_conv_stem.weight", head)
    assert "_blocks.15._project_conv.weight" in foreign and "_blocks.0._depthwise_conv.weight" in foreign
    _load_and_check(
        "efficientnet-b0",
        tmp_path / "e.pth",
        foreign,
        "_conv_stem.weight",
        head,
        "_blocks.6.15._project_conv.weight",
        "_blocks.15._project_conv.weight",
    )


@pytest.mark.parametrize("name", list(TORCHVISION_VGG_CONVS))
def test_vgg_base_has_torchvision_names_and_its_dense_head_is_left_out(tmp_path, name):
    state = create_model(name, 2).state_dict()
    assert [k for k in state if k.startswith("features.")] == _torchvision_vgg_names(name)
    foreign = _imagenet_file(name, lambda k: k, tmp_path / "v.pth", "features.0.weight", ())
    for k in ("classifier.2.weight", "classifier.2.bias"):  # our 2-way head: torchvision's is Linear 25088 -> 4096 ...
        del foreign[k]
    # torchvision's dense head: (4096, 25088), (4096, 4096), (1000, 4096); shortened here (only the names matter)
    foreign |= {"classifier.0.weight": torch.randn(8, 25088), "classifier.6.weight": torch.randn(1000, 8)}
    torch.save(foreign, tmp_path / "v.pth")
    model = create_model(name, 2)
    report = load_matching_weights(model, tmp_path / "v.pth")
    assert set(report.not_loaded) == {"classifier.2.weight", "classifier.2.bias"}
    assert set(report.unused) == {"classifier.0.weight", "classifier.6.weight"}
    torch.testing.assert_close(model.features[0].weight, foreign["features.0.weight"].sum(1, keepdim=True))
    convs = [f"features.{i}.weight" for i in TORCHVISION_VGG_CONVS[name]]
    assert set(convs) <= set(report.loaded)  # every convolution loaded, the last one too
    torch.testing.assert_close(model.state_dict()[convs[-1]], foreign[convs[-1]])


def test_wrapper_prefixes_are_removed_only_when_the_model_lacks_them(tmp_path):
    source = create_model("smallnet", 2).state_dict()
    torch.save({f"module.model.{k}": v for k, v in source.items()}, tmp_path / "ddp.pt")
    report = load_matching_weights(create_model("smallnet", 2), tmp_path / "ddp.pt")
    assert not report.not_loaded and not report.unused


def test_training_module_translates_foreign_names(tmp_path):
    head = ("class_layers.out.weight", "class_layers.out.bias")
    _imagenet_file(
        "densenet121", lambda k: k.replace(".layers.", "."), tmp_path / "d.pth", "features.conv0.weight", head
    )
    module = Classifier("densenet121", 2, weights=str(tmp_path / "d.pth"), channels_last=False)
    assert set(module.weights_report.not_loaded) == set(head)
