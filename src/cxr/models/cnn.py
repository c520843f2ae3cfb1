"""Networks of the classic Keras chest X-ray notebooks: small baselines (with batch norm, which they lacked), the plain
dense baseline, and VGG-16 / VGG-19."""

from __future__ import annotations

from torch import nn

from cxr.models.registry import register_model


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallNet(nn.Module):
    """Five conv/pool blocks -> global average pool -> linear: ~100k parameters, fast on a CPU."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (16, 32, 48, 64, 96)):
        super().__init__()
        chans = (in_channels, *widths)
        self.features = nn.Sequential(*[_conv_block(a, b) for a, b in zip(chans, chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[-1], num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


class VanillaCNN(nn.Module):
    """3 conv blocks -> global average pooling -> dense 128 -> dense 64 -> output (the notebooks' recipe)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(_conv_block(in_channels, 32), _conv_block(32, 64), _conv_block(64, 128))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


DENSE_BASELINE_SIDE = 64  # the dense baseline sees each film averaged down to 64 x 64 pixels
DENSE_BASELINE_HIDDEN = 128


class DenseBaseline(nn.Module):
    """The pneumonia notebook's first model: flatten the pixels, one hidden dense layer, output; no convolutions.

    The film is area-averaged to 64 x 64 first, whatever `image_size` is, so the first layer stays 4,096 x 128
    (525k parameters for two classes) instead of 6.4M at 224 px: the baseline that shows what convolutions add.
    """

    def __init__(self, in_channels: int, num_classes: int, side: int = DENSE_BASELINE_SIDE):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * side * side, DENSE_BASELINE_HIDDEN), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(DENSE_BASELINE_HIDDEN, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.pool(x)))


# torchvision's configurations "D" (VGG-16) and "E" (VGG-19): numbers are 3x3 conv widths, "M" a 2x2 max pool
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG(nn.Module):
    """VGG-16's (or VGG-19's) convolutional base -> global average pool -> dropout -> linear: the notebooks' transfer
    recipe.

    `features` is built layer for layer as torchvision builds it, so its ImageNet file (vgg16 / vgg16_bn / vgg19 /
    vgg19_bn) loads with `--weights` (the RGB first conv summed to one channel); the 120M-parameter dense head is not
    copied.
    """

    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False, layout=VGG16_LAYOUT):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in layout:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers.append(nn.ReLU())  # not in-place: Grad-CAM's backward hooks on a conv output forbid it
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


@register_model("smallnet", "5 conv/pool blocks + GAP + linear; the fast CPU baseline")
def smallnet(in_channels: int, num_classes: int) -> nn.Module:
    return SmallNet(in_channels, num_classes)


@register_model("vanilla-cnn", "3 conv blocks + GAP + dense 128 + dense 64 (classic notebook CNN)")
def vanilla_cnn(in_channels: int, num_classes: int) -> nn.Module:
    return VanillaCNN(in_channels, num_classes)


@register_model("vgg16", "VGG-16 conv base (torchvision layers) + GAP + linear; for ImageNet weights files")
def vgg16(in_channels: int, num_classes: int) -> nn.Module:
    return VGG(in_channels, num_classes)


@register_model("vgg16-bn", "VGG-16 with batch norm (torchvision vgg16_bn layers) + GAP + linear")
def vgg16_bn(in_channels: int, num_classes: int) -> nn.Module:
    return VGG(in_channels, num_classes, batch_norm=True)


@register_model("vgg19", "VGG-19 conv base (torchvision layers) + GAP + linear; for ImageNet weights files")
def vgg19(in_channels: int, num_classes: int) -> nn.Module:
    return VGG(in_channels, num_classes, layout=VGG19_LAYOUT)


@register_model("vgg19-bn", "VGG-19 with batch norm (torchvision vgg19_bn layers) + GAP + linear")
def vgg19_bn(in_channels: int, num_classes: int) -> nn.Module:
    return VGG(in_channels, num_classes, batch_norm=True, layout=VGG19_LAYOUT)


@register_model("dense-baseline", "no convolutions: film averaged to 64x64, flattened, dense 128, output (notebook)")
def dense_baseline(in_channels: int, num_classes: int) -> nn.Module:
    return DenseBaseline(in_channels, num_classes)
