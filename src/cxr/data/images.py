"""Reading X-ray image files into one grayscale channel: the single place that decodes pixels."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr.errors import CxrError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# Far above any real radiograph (~4k x 4k); stops decompression bombs before pixels are decoded.
MAX_PIXELS = 64_000_000


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


def load_grayscale(source: str | Path | BinaryIO, size: int | None = None, name: str | None = None) -> np.ndarray:
    """Decode a file path or binary stream (e.g. an upload) to uint8 (H, W), resized to (size, size) if given.

    Training, evaluation, prediction and serving all go through here, so a model always sees the same pixels.
    `name` labels error messages for streams.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
    else:
        path = Path(name or getattr(source, "name", None) or "<upload>")
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w * h > MAX_PIXELS or w < 1 or h < 1:
                raise ImageReadError(f"{path}: image dimensions {w}x{h} are out of range (max {MAX_PIXELS} pixels)")
            if size is not None and im.format == "JPEG":
                im.draft("L", (size, size))  # decode JPEG at a reduced scale: several times faster
            gray = _to_grayscale_uint8(im)
            if size is not None and gray.size != (size, size):
                gray = gray.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.uint8).copy()
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: image dimensions are out of range (decompression bomb guard)") from None
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: corrupt or truncated image ({e})") from None


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
