import numpy as np
import pytest

from cxr.data.folders import scan_class_folders
from cxr.data.images import load_grayscale
from cxr.errors import CxrError
from tests.conftest import SHARED_DATA


def _npz(path, n=(6, 2, 3)):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 255, (k, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(k, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_npz_becomes_class_folders_with_exact_pixels(tmp_path):
    arrays = _npz(tmp_path / "pneumoniamnist.npz")
    ds = scan_class_folders(tmp_path / "pneumoniamnist.npz")
    assert ds.classes == ["normal", "pneumonia"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "val": 2, "test": 3}
    first = ds.splits["test"].paths[0]  # test image 0 has label 0 -> normal/000000.png
    assert first.parent.name == "normal" and first.name == "000000.png"
    np.testing.assert_array_equal(load_grayscale(first), arrays["test_images"][0])
    assert not list(tmp_path.glob("*/"))  # nothing written beside the npz
    again = scan_class_folders(tmp_path / "pneumoniamnist.npz")
    assert again.root == ds.root


def test_unknown_npz_names_and_bad_files(tmp_path):
    _npz(tmp_path / "other.npz")
    assert scan_class_folders(tmp_path / "other.npz").classes == ["class0", "class1"]
    np.savez(tmp_path / "wrong.npz", x=np.zeros(3))
    with pytest.raises(CxrError, match="missing arrays"):
        scan_class_folders(tmp_path / "wrong.npz")


@pytest.mark.skipif(not (SHARED_DATA / "pneumoniamnist").is_dir(), reason="shared data missing")
def test_real_pneumoniamnist_official_split_sizes():
    ds = scan_class_folders(SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 4708, "val": 524, "test": 624}
    assert np.bincount(ds.splits["train"].labels).tolist() == [1214, 3494]
