"""Fuzz THE image reader with malformed inputs: each ends in ImageReadError (or decodes), never a crash or hang.

The default part (>= 1,000 inputs) takes seconds; the `slow` part runs 10x more seeds.
"""

from __future__ import annotations

import io
import signal
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.data.images import ImageReadError, load_grayscale
from tests.data.dicom_files import dicom_dataset

# corrupt inputs make Pillow and pydicom warn; the reader's errors are what is tested
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::RuntimeWarning")]
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".dcm")
PER_INPUT_SECONDS = 5


def _valid_files(rng: np.random.Generator) -> dict[str, bytes]:
    """One small valid file per format, to truncate and mutate."""
    arr = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    out = {}
    for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"), ("TIFF", ".tif")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    buf = io.BytesIO()
    ds = dicom_dataset(arr.astype(np.uint16) * 16, bits_stored=12, window=(2000, 1000))
    ds.save_as(buf, enforce_file_format=True)
    out[".dcm"] = buf.getvalue()
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_headers(rng: np.random.Generator, jpeg: bytes) -> list[tuple[str, bytes]]:
    """Headers declaring absurd dimensions in each format (decompression bombs)."""
    w, h = int(rng.integers(20_000, 2**31 - 1)), int(rng.integers(20_000, 2**31 - 1))
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png = b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IEND", b"")
    bmp_info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 0, 0, 0, 0, 0, 0)
    bmp = b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + bmp_info + b"\x00" * 16
    ds = dicom_dataset(np.zeros((4, 4), np.uint8))
    ds.Rows, ds.Columns = int(rng.integers(9_000, 65_535)), int(rng.integers(9_000, 65_535))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sof = jpeg.index(b"\xff\xc0") + 5  # baseline frame header: precision, then height and width
    big_jpeg = jpeg[:sof] + struct.pack(">HH", min(h, 65_535), min(w, 65_535)) + jpeg[sof + 4 :]
    return [(".png", png), (".bmp", bmp), (".jpg", big_jpeg), (".dcm", buf.getvalue())]


def _dicom_without_pixels() -> bytes:
    ds = dicom_dataset(np.zeros((4, 4), np.uint8))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def malformed_inputs(seed: int) -> list[tuple[str, str, bytes, bool]]:
    """(kind, extension, bytes, must_fail) cases; mutated files may still decode, everything else must not."""
    rng = np.random.default_rng(seed)
    valid = _valid_files(rng)
    cases: list[tuple[str, str, bytes, bool]] = []
    for ext in EXTENSIONS:
        cases.append(("zero-byte", ext, b"", True))
        cases.append(("random", ext, rng.bytes(int(rng.integers(1, 4096))), True))
        cases.append(("text", ext, b"this is not an image\n" * int(rng.integers(1, 50)), True))
    for ext, data in valid.items():
        cut = int(rng.integers(1, max(2, len(data) * 2 // 3)))
        cases.append(("truncated", ext, data[:cut], True))
        wrong = [e for e in EXTENSIONS if e != ext]
        cases.append(("wrong-extension", str(rng.choice(wrong)), data[: len(data) // 2], True))
        mutated = bytearray(data)
        for i in rng.integers(0, len(data), int(rng.integers(1, 20))):
            mutated[i] = int(rng.integers(0, 256))
        cases.append(("mutated", ext, bytes(mutated), False))
    cases.append(("dicom-suffix-not-dicom", ".dcm", valid[".png"], True))
    magic_then_garbage = b"\x00" * 128 + b"DICM" + rng.bytes(int(rng.integers(0, 300)))
    cases.append(("dicom-magic-then-garbage", ".bin", magic_then_garbage, True))
    cases.append(("dicom-no-pixel-data", ".dcm", _dicom_without_pixels(), True))
    cases.extend((f"huge-dimensions{ext}", ext, data, True) for ext, data in _huge_headers(rng, valid[".jpg"]))
    return cases


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def run_fuzz(seeds: range, tmp_path: Path) -> Counter:
    outcomes: Counter = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for seed in seeds:
            for i, (kind, ext, data, must_fail) in enumerate(malformed_inputs(seed)):
                as_stream = (seed + i) % 2 == 0  # half as uploads (streams), half as files on disk
                path = tmp_path / f"case{i}{ext}"
                if not as_stream:
                    path.write_bytes(data)
                signal.alarm(PER_INPUT_SECONDS)
                try:
                    src = io.BytesIO(data) if as_stream else path
                    out = load_grayscale(src, size=32, name=path.name)
                    assert not must_fail, f"seed {seed} {kind}{ext}: decoded {out.shape} but must fail"
                    assert out.dtype == np.uint8 and out.shape == (32, 32)
                    outcomes["decoded"] += 1
                except ImageReadError as e:
                    msg = str(e)
                    assert msg.startswith(f"{path.name if as_stream else path}: ") and "\n" not in msg, msg
                    outcomes["clear error"] += 1
                except _Hang:
                    pytest.fail(f"seed {seed} {kind}{ext}: reader hung for over {PER_INPUT_SECONDS} s")
                finally:
                    signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return outcomes


def test_fuzz_reader_default(tmp_path):
    seeds = range(28)  # 28 seeds x 40 cases = 1,120 malformed inputs
    outcomes = run_fuzz(seeds, tmp_path)
    assert sum(outcomes.values()) >= 1000
    assert outcomes["clear error"] >= 900


@pytest.mark.slow
def test_fuzz_reader_full(tmp_path):
    outcomes = run_fuzz(range(1000, 1300), tmp_path)
    assert sum(outcomes.values()) >= 10_000
