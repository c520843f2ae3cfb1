"""Standard networks from MONAI, built for one input channel (no torchvision/timm needed).

Each is registered with the names its tensors have in the library whose ImageNet weights users usually hold
(torchvision for ResNet and DenseNet, lukemelas/EfficientNet-PyTorch for EfficientNet, the files MONAI itself
downloads with `pretrained=True`), so such a file loads with `cxr train --weights FILE`.
"""

from __future__ import annotations

from monai.networks import nets
from torch import nn

from cxr.models.registry import register_model

# cxr 0.3.0 gave the ResNets torchvision's stride-2 stem (MONAI's default is stride 1): older resnet18 bundles differ
RESNET_STEM_CHANGED = "0.3.0"


def _torchvision_resnet(monai_factory, in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet, tensor for tensor and stride for stride: a 7x7 stride-2 stem (a 224 px film ends as a 7x7
    map, not the 14x14 of MONAI's stride-1 default at 4x the compute) and no bias on the shortcut conv (useless before
    batch norm)."""
    return monai_factory(
        spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, conv1_t_stride=2, bias_downsample=False
    )


@register_model(
    "resnet18",
    "ResNet-18 (MONAI, torchvision layout), 1 input channel",
    head="fc",
    compatible_since=RESNET_STEM_CHANGED,
)
def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    return _torchvision_resnet(nets.resnet18, in_channels, num_classes)


@register_model("resnet34", "ResNet-34 (MONAI, torchvision layout), 1 input channel", head="fc")
def resnet34(in_channels: int, num_classes: int) -> nn.Module:
    return _torchvision_resnet(nets.resnet34, in_channels, num_classes)


@register_model("resnet50", "ResNet-50 (MONAI, torchvision layout), 1 input channel", head="fc")
def resnet50(in_channels: int, num_classes: int) -> nn.Module:
    return _torchvision_resnet(nets.resnet50, in_channels, num_classes)


# torchvision names a dense layer's parts `denselayer1.norm1` (older files: `denselayer1.norm.1`), MONAI
# `denselayer1.layers.norm1`; the head is torchvision's `classifier`
TORCHVISION_DENSENET_NAMES = (
    (r"(denselayer\d+)\.layers\.", r"\1."),
    (r"(denselayer\d+)\.layers\.(norm|relu|conv)([12])\.", r"\1.\2.\3."),
    (r"^class_layers\.out\.", "classifier."),
)


@register_model(
    "densenet121",
    "MONAI DenseNet-121 (2D), 1 input channel",
    head="class_layers.out",
    foreign_names=TORCHVISION_DENSENET_NAMES,
)
def densenet121(in_channels: int, num_classes: int) -> nn.Module:
    return nets.DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)


# MONAI groups blocks by stage (`_blocks.1.2.`), EfficientNet-PyTorch numbers them flat (`_blocks.2.`)
EFFICIENTNET_PYTORCH_NAMES = ((r"^_blocks\.\d+\.(\d+)\.", r"_blocks.\1."),)


@register_model(
    "efficientnet-b0",
    "MONAI EfficientNet-B0 (2D), 1 input channel, EfficientNet-PyTorch tensor names",
    head="_fc",
    foreign_names=EFFICIENTNET_PYTORCH_NAMES,
)
def efficientnet_b0(in_channels: int, num_classes: int) -> nn.Module:
    return nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=num_classes
    )
