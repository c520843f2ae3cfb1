"""DICOM through THE decoder: rescale, window/VOI, MONOCHROME1, bit depths, compression, streams, bad files."""

import io

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from cxr.data.images import ImageReadError, find_images, load_grayscale
from tests.data.dicom_files import dicom_dataset, write_dicom


def ramp(lo: int, hi: int, shape=(16, 32), dtype=np.uint16) -> np.ndarray:
    return np.linspace(lo, hi, shape[0] * shape[1]).round().reshape(shape).astype(dtype)


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, written out independently, mapped to 0..255."""
    c, w = center - 0.5, width - 1
    y = np.clip((x - c) / w + 0.5, 0, 1)
    y[x <= c - w / 2] = 0
    y[x > c + w / 2] = 1
    return np.round(y * 255).astype(np.uint8)


def test_monochrome2_8bit_keeps_values(tmp_path):
    arr = ramp(0, 255, dtype=np.uint8)
    out = load_grayscale(write_dicom(tmp_path / "a.dcm", arr))
    np.testing.assert_array_equal(out, arr)


def test_monochrome1_is_inverted(tmp_path):
    arr = ramp(10, 200, dtype=np.uint8)
    out = load_grayscale(write_dicom(tmp_path / "m1.dcm", arr, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(out, 255 - arr)


def test_12bit_without_window_is_min_max_scaled(tmp_path):
    arr = ramp(100, 3000)
    out = load_grayscale(write_dicom(tmp_path / "a12.dcm", arr, bits_stored=12))
    expected = np.round((arr - 100.0) / 2900.0 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_16bit_window_sets_black_and_white(tmp_path):
    arr = ramp(0, 2000)
    out = load_grayscale(write_dicom(tmp_path / "w.dcm", arr, window=(1000, 200)))
    expected = linear_window(arr.astype(float), 1000, 200)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert out[arr <= 899].max() == 0 and out[arr >= 1101].min() == 255
    # the window centre is mid-grey, whatever the image's own range
    assert 120 <= out[np.abs(arr.astype(int) - 1000) <= 4].mean() <= 136


def test_window_and_monochrome1_invert_after_windowing(tmp_path):
    arr = ramp(0, 2000)
    plain = load_grayscale(write_dicom(tmp_path / "w2.dcm", arr, window=(1000, 200)))
    inverted = load_grayscale(write_dicom(tmp_path / "w1.dcm", arr, window=(1000, 200), photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted, 255 - plain)


def test_rescale_slope_intercept_applies_before_window(tmp_path):
    stored = ramp(0, 2048)
    # Hounsfield-like: value = stored * 1 - 1024; window centred on 0 in rescaled units, i.e. stored 1024
    out = load_grayscale(write_dicom(tmp_path / "hu.dcm", stored, window=(0, 400), rescale=(1, -1024)))
    expected = linear_window(stored.astype(float) - 1024, 0, 400)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert out[stored < 800].max() == 0 and out[stored > 1250].min() == 255


def test_stream_and_wrong_suffix_are_detected_by_magic(tmp_path):
    arr = ramp(0, 255, dtype=np.uint8)
    path = write_dicom(tmp_path / "x.dcm", arr)
    data = path.read_bytes()
    np.testing.assert_array_equal(load_grayscale(io.BytesIO(data), name="upload"), arr)
    (tmp_path / "looks_like.png").write_bytes(data)
    np.testing.assert_array_equal(load_grayscale(tmp_path / "looks_like.png"), arr)
    assert load_grayscale(path, size=8).shape == (8, 8)


def test_rle_compressed_decodes_to_same_pixels(tmp_path):
    arr = ramp(0, 4000)
    ds = dicom_dataset(arr, bits_stored=12)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    raw = write_dicom(tmp_path / "raw.dcm", arr, bits_stored=12)
    np.testing.assert_array_equal(load_grayscale(tmp_path / "rle.dcm"), load_grayscale(raw))


def test_unsupported_compression_names_the_missing_decoder(tmp_path):
    # which decoders exist depends on the extras (cxr[dicom]'s highdicom brings a JPEG-LS one): take one that is not
    missing = [uid for uid in (JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless) if not get_decoder(uid).is_available]
    if not missing:
        pytest.skip("every compressed syntax tried here has a decoder installed")
    ds = dicom_dataset(ramp(0, 255, dtype=np.uint8))
    ds.file_meta.TransferSyntaxUID = missing[0]
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 30])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "compressed.dcm")
    name = missing[0].name.split(",")[0].split(" Image")[0]
    with pytest.raises(ImageReadError, match=rf"compressed\.dcm: .*{name}.*(pylibjpeg|gdcm)"):
        load_grayscale(tmp_path / "compressed.dcm")


def test_multiframe_uses_first_frame(tmp_path):
    frames = np.stack([np.full((8, 8), v, np.uint8) for v in (40, 90, 200)])
    out = load_grayscale(write_dicom(tmp_path / "mf.dcm", frames))
    assert out.shape == (8, 8) and (out == 40).all()


def test_no_pixel_data_and_absurd_dimensions_are_clear_errors(tmp_path):
    ds = dicom_dataset(ramp(0, 255, dtype=np.uint8))
    del ds.PixelData
    ds.save_as(tmp_path / "sr.dcm")
    with pytest.raises(ImageReadError, match="sr.dcm: DICOM file has no pixel data"):
        load_grayscale(tmp_path / "sr.dcm")
    ds = dicom_dataset(ramp(0, 255, dtype=np.uint8))
    ds.Rows, ds.Columns = 60000, 60000
    ds.save_as(tmp_path / "bomb.dcm")
    with pytest.raises(ImageReadError, match="bomb.dcm: DICOM dimensions 60000x60000 .*out of range"):
        load_grayscale(tmp_path / "bomb.dcm")


def test_find_images_includes_dcm(tmp_path):
    write_dicom(tmp_path / "a.dcm", ramp(0, 255, dtype=np.uint8))
    assert [p.name for p in find_images([tmp_path])] == ["a.dcm"]


def test_signed_16bit_keeps_order_and_full_range(tmp_path):
    arr = ramp(-1000, 1000, dtype=np.int16)
    out = load_grayscale(write_dicom(tmp_path / "s16.dcm", arr))
    expected = np.round((arr + 1000.0) / 2000.0 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
