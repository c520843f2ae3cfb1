"""CSV manifests: relative paths, optional patient_id/split columns, one-line errors naming the line."""

from pathlib import Path

import pytest

from cxr.data.folders import LabeledFiles
from cxr.data.manifest import load_dataset, read_manifest, write_manifest
from cxr.errors import CxrError
from tests.conftest import make_class_folders


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    root = make_class_folders(tmp_path / "imgs", n_train=3, n_test=1)
    return root


def test_relative_paths_ids_and_default_split(tmp_path, images):
    csv = _write(
        tmp_path / "m.csv",
        "path,label,patient_id,split,extra\n"
        "imgs/train/normal/img000.png,normal,p1,,x\n"
        "imgs/train/normal/img001.png,normal,p1,train,x\n"
        "imgs/train/pneumonia/img000.png,pneumonia,,TRAIN,x\n"
        "imgs/test/pneumonia/img000.png,pneumonia,p2,test,x\n",
    )
    ds = read_manifest(csv)
    assert ds.classes == ["normal", "pneumonia"]
    assert set(ds.splits) == {"train", "test"}
    assert ds.splits["train"].labels == [0, 0, 1]
    assert all(p.is_file() for s in ds.splits.values() for p in s.paths)
    assert ds.patient_ids == {
        tmp_path / "imgs/train/normal/img000.png": "p1",
        tmp_path / "imgs/train/normal/img001.png": "p1",
        tmp_path / "imgs/test/pneumonia/img000.png": "p2",
    }


@pytest.mark.parametrize(
    "text, fragment",
    [  # A, B: two existing images
        ("file,label\nx.png,a\n", "missing column 'path'"),
        ("path,label\n", "no rows"),
        ("path,label,split\nA,a,holdout\nB,b,\n", "line 2: split 'holdout'"),
        ("path,label\nA,a\nnope.png,b\n", r"1 listed file\(s\) do not exist.*line 3: nope.png"),
        ("path,label\nA,a\nB,a\n", "only one label"),
        ("path,label\nA,\n", "line 2: empty path or label"),
        ("path,label,split\nA,a,test\nB,b,test\n", "no rows in the train split"),
    ],
)
def test_bad_manifests_give_one_line_errors(tmp_path, images, text, fragment):
    text = text.replace("A,", "imgs/train/normal/img000.png,").replace("B,", "imgs/train/normal/img001.png,")
    csv = _write(tmp_path / "bad.csv", text)
    with pytest.raises(CxrError, match=fragment) as e:
        read_manifest(csv)
    assert "\n" not in str(e.value) and "bad.csv" in str(e.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(CxrError, match="not found"):
        load_dataset(tmp_path / "none.csv")


def test_write_then_read_round_trip_from_another_folder(tmp_path, images):
    ds = load_dataset(images)
    out = tmp_path / "elsewhere" / "deep" / "m.csv"
    ids = {ds.splits["train"].paths[0]: "alice"}
    write_manifest(out, ds.splits, ds.classes, ids)
    text = out.read_text().splitlines()
    assert text[0] == "path,label,patient_id,split"
    assert text[1].startswith("../../imgs/train/")  # relative to the CSV's folder, so it moves with the data
    back = read_manifest(out)
    assert back.classes == ds.classes
    for split, files in ds.splits.items():
        assert [p.resolve() for p in back.splits[split].paths] == [p.resolve() for p in files.paths]
        assert back.splits[split].labels == files.labels
    assert list(back.patient_ids.values()) == ["alice"]


def test_load_dataset_dispatches_on_csv(tmp_path, images):
    assert load_dataset(images).classes == ["normal", "pneumonia"]
    files = LabeledFiles([images / "train/normal/img000.png", images / "train/pneumonia/img000.png"], [0, 1])
    write_manifest(tmp_path / "m.csv", {"train": files}, ["normal", "pneumonia"], {})
    assert len(load_dataset(tmp_path / "m.csv").splits["train"]) == 2
