import pytest

from cxr.data.folders import scan_class_folders
from cxr.errors import CxrError
from tests.conftest import make_class_folders


def test_scan_finds_sorted_classes_and_splits(tmp_path):
    root = make_class_folders(tmp_path, classes=("b_cls", "a_cls", "c_cls"), n_train=3, n_test=2)
    ds = scan_class_folders(root)
    assert ds.classes == ["a_cls", "b_cls", "c_cls"]
    assert len(ds.splits["train"]) == 9 and len(ds.splits["test"]) == 6
    assert "val" not in ds.splits
    assert sorted(set(ds.splits["train"].labels)) == [0, 1, 2]
    assert all(ds.classes[y] == p.parent.name for p, y in zip(ds.splits["train"].paths, ds.splits["train"].labels))


def test_missing_root(tmp_path):
    with pytest.raises(CxrError, match="does not exist"):
        scan_class_folders(tmp_path / "nope")


def test_no_train_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(CxrError, match="no train/ folder"):
        scan_class_folders(tmp_path)


def test_no_class_subfolders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.png").write_bytes(b"x")
    with pytest.raises(CxrError, match="no class subfolders"):
        scan_class_folders(tmp_path)


def test_empty_class(tmp_path):
    root = make_class_folders(tmp_path, n_train=2, n_test=1)
    (root / "train" / "zzz").mkdir()
    (root / "test" / "zzz").mkdir()
    with pytest.raises(CxrError, match="zzz has no images"):
        scan_class_folders(root)


def test_train_and_test_classes_differ(tmp_path):
    root = make_class_folders(tmp_path, n_train=2, n_test=1)
    (root / "test" / "pneumonia").rename(root / "test" / "covid")
    with pytest.raises(CxrError, match="differ from train classes"):
        scan_class_folders(root)
