"""DICOM radiographs to display-ready uint8 grayscale: modality LUT, VOI LUT/window, MONOCHROME1 inversion.

Only `cxr.data.images.load_grayscale` calls this, so DICOM pixels reach every model exactly as PNG/JPEG pixels do.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from cxr.data.images import ImageReadError

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _read_dataset(source: BinaryIO, label: str, stop_before_pixels: bool = False):
    import pydicom

    try:
        # force=True: files saved without the preamble (raw datasets) are still common from older PACS exports.
        return pydicom.dcmread(source, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as e:  # pydicom raises many types on malformed input (struct.error, KeyError, ...)
        raise _error(label, f"not a readable DICOM file ({type(e).__name__})") from None


def _error(label: str, what: str) -> ImageReadError:
    return ImageReadError(f"{label}: {what}")


def _check_geometry(ds, label: str, max_pixels: int) -> None:
    """Reject absurd declared sizes before any pixel is decoded (a DICOM decompression bomb)."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise _error(label, "DICOM lacks valid Rows/Columns; not an image") from None
    if min(rows, cols, frames, samples) < 1 or rows * cols * frames * samples > max_pixels:
        what = f"DICOM dimensions {cols}x{rows} ({frames} frame(s)) are out of range (max {max_pixels} pixels)"
        raise _error(label, what)


def _check_decoder(ds, label: str) -> None:
    from pydicom.pixels import get_decoder

    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        what = f"DICOM transfer syntax {uid.name} ({uid}) is not supported; convert it to uncompressed"
        raise _error(label, what) from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise _error(label, f"DICOM compressed as {uid.name} needs a pixel decoder that is not installed ({needs})")


def _to_gray(ds, arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """One frame, one channel, in modality units. Returns (array, windowable): colour data has no VOI stage."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]  # multi-frame: a radiograph's first frame
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3:  # RGB (pydicom already converted YBR to RGB): ITU-R 601 luma, as PIL's convert("L")
        luma = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        return (np.round(luma).astype(np.uint8) if arr.dtype == np.uint8 else luma), False
    return apply_modality_lut(arr, ds), True


def _voi_range(ds) -> tuple[float, float] | None:
    """Output range of the dataset's VOI stage (LUT or window), so the window, not the image, sets black and white."""
    from pydicom.pixels import apply_voi_lut

    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        with np.errstate(over="ignore"):  # the window's own ends: -inf maps to its floor, +inf to its ceiling
            lo, hi = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
        return float(lo), float(hi)
    return None


def _pixels_to_uint8(ds, label: str, max_pixels: int) -> np.ndarray:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise _error(label, "DICOM file has no pixel data (a report or structured document, not an image)")
    _check_geometry(ds, label, max_pixels)
    _check_decoder(ds, label)
    arr, windowable = _to_gray(ds, ds.pixel_array)
    voi = _voi_range(ds) if windowable else None
    if voi is not None:
        from pydicom.pixels import apply_voi_lut

        arr = apply_voi_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise _error(label, "DICOM pixel data contains NaN or infinite values")
    if voi is not None:
        lo, hi = voi
    elif int(ds.get("BitsStored", 16)) <= 8 and arr.min() >= 0 and arr.max() <= 255:
        lo, hi = 0.0, 255.0  # 8-bit data keeps its values, as 8-bit PNG/JPEG does
    else:
        lo, hi = float(arr.min()), float(arr.max())  # 12/16-bit without a window: min-max, as 16-bit PNG
    scaled = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255) if hi > lo else np.zeros_like(arr)
    out = np.round(scaled).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: low values are white; models expect bone bright, as in MONOCHROME2
    return out


def dicom_to_uint8(source: BinaryIO, label: str, max_pixels: int) -> np.ndarray:
    """Decode a DICOM stream to uint8 (H, W): rescale, window, scale to 0..255, invert MONOCHROME1."""
    ds = _read_dataset(source, label)
    try:
        return _pixels_to_uint8(ds, label, max_pixels)
    except ImageReadError:
        raise
    except Exception as e:  # pydicom parses elements lazily: any malformed element or pixel data surfaces here
        detail = " ".join(str(e).split())[:120]
        raise _error(label, f"malformed DICOM ({type(e).__name__}: {detail})") from None


def dicom_summary(source: BinaryIO, label: str) -> tuple[int, int, str, int]:
    """(width, height, mode, bits stored) from the header only, for the data audit."""
    ds = _read_dataset(source, label, stop_before_pixels=True)
    try:
        bits = int(ds.get("BitsStored", 0))
        return int(ds.Columns), int(ds.Rows), f"DICOM {ds.get('PhotometricInterpretation', '?')} {bits}-bit", bits
    except Exception:  # lazily parsed elements: see dicom_to_uint8
        raise _error(label, "DICOM lacks valid Rows/Columns; not an image") from None
