import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.config import KERMANY_PATIENT_PATTERN
from cxr.data.folders import LabeledFiles
from cxr.data.splits import (
    carve_validation,
    patient_groups,
    patient_id_from_name,
    patient_ids,
    read_splits_csv,
    resolve_patient_pattern,
    resplit_dataset,
    split_train_val_test,
    write_splits_csv,
)
from cxr.errors import CxrError


def _files(n0=60, n1=40):
    paths = [Path(f"/d/{i}.png") for i in range(n0 + n1)]
    return LabeledFiles(paths, [0] * n0 + [1] * n1)


def test_stratified_seeded_disjoint():
    files = _files()
    tr, va = carve_validation(files, 0.2, seed=1)
    assert len(va) == 20 and len(tr) == 80
    assert Counter(va.labels) == {0: 12, 1: 8}
    assert not set(tr.paths) & set(va.paths)
    tr2, va2 = carve_validation(files, 0.2, seed=1)
    assert va2.paths == va.paths
    _, va3 = carve_validation(files, 0.2, seed=2)
    assert va3.paths != va.paths


def test_groups_never_straddle_the_split():
    files = _files()
    groups = [f"patient{i // 4}" for i in range(100)]
    tr, va = carve_validation(files, 0.2, seed=0, groups=groups)
    gid = {p: g for p, g in zip(files.paths, groups)}
    assert not {gid[p] for p in tr.paths} & {gid[p] for p in va.paths}
    assert 10 <= len(va) <= 30


def test_splits_csv_round_trip(tmp_path):
    files = _files(3, 2)
    tr, va = carve_validation(files, 0.4, seed=0)
    write_splits_csv(tmp_path / "splits.csv", {"train": tr, "val": va}, ["neg", "pos"])
    back = read_splits_csv(tmp_path / "splits.csv", ["neg", "pos"])
    assert back["val"].labels == va.labels and back["train"].labels == tr.labels
    assert [p.name for p in back["val"].paths] == [p.name for p in va.paths]


# --- patient ids and three-way splits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person12_virus_33_1.jpeg", "person12"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0383-0001.jpeg", "NORMAL2-IM-0383"),  # separate numbering from plain IM-0383
        ("IM-0383-0001.jpeg", "IM-0383"),
        ("COVID-123.jpg", None),
        ("personal_photo.png", None),
    ],
)
def test_kermany_patient_ids(name, expected):
    assert patient_id_from_name(name, re.compile(KERMANY_PATIENT_PATTERN)) == expected


def test_custom_patterns_with_and_without_groups():
    assert patient_id_from_name("scan_PAT-77_2.png", re.compile(r"PAT-\d+")) == "PAT-77"
    assert patient_id_from_name("0042_a.png", re.compile(r"^(\d+)_")) == "0042"
    assert patient_ids([Path("x/0042_a.png"), Path("y/b.png")], "") == [None, None]  # '' = no ids from names
    with pytest.raises(CxrError, match="not a valid regular expression"):
        resolve_patient_pattern("person(")
    assert resolve_patient_pattern(None) == KERMANY_PATIENT_PATTERN


def test_manifest_ids_win_and_files_without_id_are_their_own_group():
    paths = [Path("a/person1_x.png"), Path("a/person1_y.png"), Path("a/other.png"), Path("a/z.png")]
    groups = patient_groups(paths, KERMANY_PATIENT_PATTERN, {Path("a/person1_y.png"): "bob"})
    assert groups[0] == "patient:person1" and groups[1] == "patient:bob"
    assert groups[2] != groups[3]
    assert patient_groups([Path("a.png"), Path("b.png")], KERMANY_PATIENT_PATTERN) is None


def _patient_files(n_patients=60, per_patient=3):
    paths, labels = [], []
    for pid in range(n_patients):
        for k in range(per_patient):
            paths.append(Path(f"/d/person{pid}_bacteria_{k}.jpeg"))
            labels.append(pid % 3 == 0)  # a third of the patients are class 1
    return LabeledFiles(paths, [int(y) for y in labels])


def test_three_way_split_is_grouped_stratified_and_seeded():
    files = _patient_files()
    groups = patient_groups(files.paths, KERMANY_PATIENT_PATTERN)
    splits = split_train_val_test(files, val=0.1, test=0.2, seed=3, groups=groups)
    assert list(splits) == ["train", "val", "test"]
    assert sum(len(s) for s in splits.values()) == len(files)
    owner = {}
    for name, s in splits.items():
        for p in s.paths:
            pid = patient_id_from_name(p.name, re.compile(KERMANY_PATIENT_PATTERN))
            assert owner.setdefault(pid, name) == name, f"{pid} in {owner[pid]} and {name}"
    assert 0.12 <= len(splits["test"]) / len(files) <= 0.28
    assert 0.05 <= len(splits["val"]) / len(files) <= 0.16
    for s in splits.values():
        assert 0.2 <= np.mean(s.labels) <= 0.5  # stratified: about a third class 1 everywhere
    again = split_train_val_test(files, val=0.1, test=0.2, seed=3, groups=groups)
    assert again["test"].paths == splits["test"].paths
    other = split_train_val_test(files, val=0.1, test=0.2, seed=4, groups=groups)
    assert other["test"].paths != splits["test"].paths


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.2), (0.1, 1.0)])
def test_bad_fractions(val, test):
    with pytest.raises(CxrError, match="fractions"):
        split_train_val_test(_patient_files(), val, test, seed=0)


def test_resplit_pools_flat_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("normal", "sick"):
        (tmp_path / cls).mkdir()
        for pid in range(15):
            for k in range(2):
                arr = rng.integers(0, 255, (8, 8), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / cls / f"person{pid}_{cls}_{k}.png")
    result = resplit_dataset(tmp_path, val=0.2, test=0.2, seed=0, by_patient=True, pattern=KERMANY_PATIENT_PATTERN)
    assert result.grouped and result.classes == ["normal", "sick"]
    assert sum(len(s) for s in result.splits.values()) == 60
    seen = {}
    for name, s in result.splits.items():
        for p in s.paths:
            assert seen.setdefault(result.patient_ids[p], name) == name  # person ids span both classes here
    by_image = resplit_dataset(tmp_path, val=0.2, test=0.2, seed=0, by_patient=False, pattern=KERMANY_PATIENT_PATTERN)
    assert not by_image.grouped
