import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxr.data.images import ImageReadError, find_images, load_grayscale
from cxr.errors import CxrError


def test_grayscale_png_keeps_values(tmp_path):
    arr = (np.arange(40 * 30) % 256).reshape(30, 40).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_grayscale(tmp_path / "a.png"), arr)


def test_rgb_and_rgba_become_one_channel(tmp_path):
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 20), 255, np.uint8)])).save(tmp_path / "rgba.png")
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    for name in ("rgb.png", "rgba.png"):
        out = load_grayscale(tmp_path / name)
        assert out.shape == (20, 20)
        np.testing.assert_array_equal(out, expected)


def test_16bit_png_is_scaled_to_full_range(tmp_path):
    arr = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a16.png")
    out = load_grayscale(tmp_path / "a16.png")
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert out[0, 0] < out[32, 32] < out[-1, -1]  # order of intensities preserved


def test_resize_non_square_to_square(tmp_path):
    Image.fromarray(np.full((30, 90), 77, np.uint8)).save(tmp_path / "wide.jpg")
    out = load_grayscale(tmp_path / "wide.jpg", size=32)
    assert out.shape == (32, 32)
    assert abs(int(out.mean()) - 77) <= 2


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"\xff\xd8\xff\xe0" + b"\x13" * 50],
)
def test_garbage_files_raise_clear_error(tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.png"):
        load_grayscale(p)


def test_truncated_jpeg_raises(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="t.jpg"):
        load_grayscale(tmp_path / "t.jpg")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (9_000, 9_000)])
def test_absurd_dimensions_rejected_before_decoding(tmp_path, w, h):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_declaring(w, h))
    with pytest.raises(ImageReadError, match="out of range"):
        load_grayscale(p)


def test_find_images_recurses_and_reports_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.png", "a/b/y.JPG", "a/notes.txt", "a/.hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    found = find_images([tmp_path / "a"])
    assert [p.name for p in found] == ["y.JPG", "x.png"] or sorted(p.name for p in found) == ["x.png", "y.JPG"]
    assert len(found) == 2
    with pytest.raises(CxrError, match="no such file"):
        find_images([tmp_path / "missing"])
