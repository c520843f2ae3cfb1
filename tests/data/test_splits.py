from collections import Counter
from pathlib import Path

from cxr.data.folders import LabeledFiles
from cxr.data.splits import carve_validation, read_splits_csv, write_splits_csv


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
