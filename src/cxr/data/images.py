"""Reading X-ray image files into one grayscale channel: the single place that decodes pixels."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr.errors import CxrError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"})
# Far above any real radiograph (~4k x 4k); stops decompression bombs before pixels are decoded.
MAX_PIXELS = 64_000_000
DICOM_MAGIC_END = 132  # DICOM Part 10: a 128-byte preamble, then b"DICM"


class ImageReadError(CxrError):
    """A file that is not a readable image (corrupt, truncated, wrong format, absurd size)."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_grayscale_uint8(im: Image.Image) -> Image.Image:
    """8-bit modes keep their raw 0..255 values; higher bit depths are min-max scaled to 0..255."""
    if im.mode in ("L", "RGB", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "PA"):
        return im.convert("L")
    arr = np.asarray(im, dtype=np.float32)  # "I;16", "I", "F": 12/16-bit or float radiographs
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _peek_source(source: str | Path | BinaryIO) -> tuple[str | Path | BinaryIO, bytes]:
    """The first bytes (for format sniffing) and a source still positioned at its start."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return source, f.read(DICOM_MAGIC_END)
    if not (hasattr(source, "seekable") and source.seekable()):
        source = io.BytesIO(source.read())  # e.g. a network stream: buffer it once so it can be sniffed and re-read
    start = source.tell()
    head = source.read(DICOM_MAGIC_END)
    source.seek(start)
    return source, head


def is_dicom(path: Path, head: bytes) -> bool:
    """DICOM by name (`.dcm`) or by content (`DICM` at byte 128), whatever the file is called."""
    return path.suffix.lower() == ".dcm" or head[DICOM_MAGIC_END - 4 : DICOM_MAGIC_END] == b"DICM"


def _decode_pil(source: str | Path | BinaryIO, path: Path, size: int | None) -> Image.Image:
    with Image.open(source) as im:
        w, h = im.size
        if w * h > MAX_PIXELS or w < 1 or h < 1:
            raise ImageReadError(f"{path}: image dimensions {w}x{h} are out of range (max {MAX_PIXELS} pixels)")
        if size is not None and im.format == "JPEG":
            im.draft("L", (size, size))  # decode JPEG at a reduced scale: several times faster
        return _to_grayscale_uint8(im)


def load_grayscale(source: str | Path | BinaryIO, size: int | None = None, name: str | None = None) -> np.ndarray:
    """Decode a file path or binary stream (e.g. an upload) to uint8 (H, W), resized to (size, size) if given.

    Training, evaluation, prediction and serving all go through here, so a model always sees the same pixels.
    PNG/JPEG/BMP/TIFF go through Pillow, DICOM through `cxr.data.dicom`. `name` labels error messages for streams.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
    else:
        path = Path(name or getattr(source, "name", None) or "<upload>")
    try:
        source, head = _peek_source(source)
        if is_dicom(path, head):
            from cxr.data.dicom import dicom_to_uint8

            opened = open(source, "rb") if isinstance(source, (str, Path)) else contextlib.nullcontext(source)
            with opened as stream:
                gray = Image.fromarray(dicom_to_uint8(stream, str(path), MAX_PIXELS))  # uint8 2-D: mode L
        else:
            gray = _decode_pil(source, path, size)
        if size is not None and gray.size != (size, size):
            gray = gray.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.uint8).copy()
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: image dimensions are out of range (decompression bomb guard)") from None
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as e:
        raise ImageReadError(f"{path}: corrupt or truncated image ({e})") from None


@dataclass(frozen=True)
class ImageInfo:
    """What the file itself says before resizing: the input guard's cheap checks read it (a 1x1 image, a sliver,
    a colour photograph or a float image of NaNs all look like some radiograph once squashed to gray 224 x 224)."""

    width: int
    height: int
    mode: str  # Pillow mode ("L", "RGB", "CMYK", "I;16", "F", ...) or "DICOM <photometric>"
    colourfulness: float  # Hasler & Suesstrunk (2003) on a small RGB view: 0 for gray, ~33 "moderately colourful"
    nonfinite: bool  # a float image holding NaN or infinity


COLOUR_VIEW_SIDE = 64  # colourfulness is a global statistic: a 64 px view measures it at a fraction of the cost


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness metric of an (H, W, 3) image: sqrt of the opponent channels' spread and
    mean."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _describe_pil(source: str | Path | BinaryIO) -> ImageInfo:
    with Image.open(source) as im:
        width, height, mode = im.size[0], im.size[1], im.mode
        colour = 0.0
        if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LA"):
            if im.format == "JPEG":
                im.draft("RGB", (COLOUR_VIEW_SIDE, COLOUR_VIEW_SIDE))  # DCT-domain downscale: no full decode
            small = im.convert("RGB")
            small.thumbnail((COLOUR_VIEW_SIDE, COLOUR_VIEW_SIDE))
            colour = _colourfulness(np.asarray(small))
        nonfinite = mode.startswith("F") and not bool(np.isfinite(np.asarray(im, dtype=np.float32)).all())
    return ImageInfo(width, height, mode, colour, nonfinite)


def describe_image(source: str | Path | BinaryIO, name: str | None = None) -> ImageInfo:
    """The file's own size, mode and colour, read from its header and a tiny view (no full decode for JPEG/PNG
    headers); an unreadable file raises ImageReadError as `load_grayscale` would."""
    path = (
        Path(source) if isinstance(source, (str, Path)) else Path(name or getattr(source, "name", None) or "<upload>")
    )
    try:
        source, head = _peek_source(source)
        start = None if isinstance(source, (str, Path)) else source.tell()
        if is_dicom(path, head):
            from cxr.data.dicom import dicom_summary

            opened = open(source, "rb") if isinstance(source, (str, Path)) else contextlib.nullcontext(source)
            with opened as stream:
                width, height, mode, _bits = dicom_summary(stream, str(path))
            info = ImageInfo(width, height, mode, 0.0, False)
        else:
            info = _describe_pil(source)
        if start is not None:
            source.seek(start)  # the caller decodes the same stream next
        return info
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError, UnidentifiedImageError) as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__})") from None


def file_sha256(path: str | Path) -> str:
    """The file's content identity: the same film under another name or folder has the same hash."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image files; a missing path is an error."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)))
        elif p.is_file():
            found.append(p)
        else:
            raise CxrError(f"{p}: no such file or folder")
    return found
