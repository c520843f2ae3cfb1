"""Standard networks from MONAI, built for one input channel (no torchvision/timm needed)."""

from __future__ import annotations

from monai.networks.nets import DenseNet121, EfficientNetBN, resnet18 as monai_resnet18
from torch import nn

from cxr.models.registry import register_model


@register_model("resnet18", "MONAI ResNet-18 (2D), 1 input channel", head="fc")
def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    return monai_resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes)


@register_model("densenet121", "MONAI DenseNet-121 (2D), 1 input channel", head="class_layers.out")
def densenet121(in_channels: int, num_classes: int) -> nn.Module:
    return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)


@register_model("efficientnet-b0", "MONAI EfficientNet-B0 (2D), 1 input channel, no pretrained download", head="_fc")
def efficientnet_b0(in_channels: int, num_classes: int) -> nn.Module:
    return EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=num_classes
    )
