"""Dedup: a pretraining set loses exactly the images that re-appear (copied or re-encoded) in the other dataset."""

import shutil

from PIL import Image

from cxr.data.dedup import exclude_near_duplicates
from cxr.data.manifest import read_manifest
from tests.cli.helpers import run_cli_inprocess
from tests.data.test_audit import _save, textured


def _two_datasets(tmp_path):
    """`source` (train/val, 2 classes) and `target` (train/test) sharing one exact and one re-encoded, resized copy."""
    source, target = tmp_path / "source", tmp_path / "target"
    for split, base in (("train", 0), ("val", 50)):
        for c, cls in enumerate(("COVID", "Normal")):
            for i in range(4):
                _save(textured(base + 10 * c + i), source / split / cls / f"{split}{c}{i}.png")
    for split, base in (("train", 200), ("test", 300)):
        for c, cls in enumerate(("Covid", "Normal")):
            for i in range(3):
                _save(textured(base + 10 * c + i), target / split / cls / f"t{split}{c}{i}.png")
    shutil.copy(source / "train/COVID/train00.png", target / "test/Covid/copied.png")
    Image.fromarray(textured(50 + 10 + 2)).resize((140, 140)).save(target / "train/Normal/reenc.jpg", quality=70)
    return source, target


def test_copies_are_removed_and_everything_else_kept(tmp_path):
    source, target = _two_datasets(tmp_path)
    r = exclude_near_duplicates(source, target, workers=1)
    removed = {(a.name, b.name) for a, b, _ in r.removed}
    assert removed == {("train00.png", "copied.png"), ("val12.png", "reenc.jpg")}
    assert [d for a, _, d in r.removed if a.name == "train00.png"] == [0] and r.unreadable == []
    assert len(r.splits["train"]) == 7 and len(r.splits["val"]) == 7
    kept = {p.name for files in r.splits.values() for p in files.paths}
    assert "train00.png" not in kept and "val12.png" not in kept and "train01.png" in kept
    # threshold 0 still catches the byte-identical copy but not the re-encoded one
    assert {a.name for a, _, _ in exclude_near_duplicates(source, target, threshold=0, workers=1).removed} >= {
        "train00.png"
    }


def test_cli_writes_a_trainable_manifest_and_a_removed_list(capsys, monkeypatch, tmp_path):
    source, target = _two_datasets(tmp_path)
    out = tmp_path / "clean.csv"
    proc = run_cli_inprocess(
        capsys, monkeypatch, "data", "dedup", source, "--against", target, "--out", out, "--workers", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept 14 images, removed 2" in proc.stdout
    ds = read_manifest(out)
    assert ds.classes == ["COVID", "Normal"] and len(ds.splits["train"]) == 7 and len(ds.splits["val"]) == 7
    removed = (tmp_path / "clean.removed.csv").read_text().splitlines()
    assert removed[0] == "path,copy_of,distance" and len(removed) == 3
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "dedup", tmp_path / "nope", "--against", target, "--out", out)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_unreadable_files_are_kept_and_warned_about(capsys, monkeypatch, tmp_path):
    source, target = _two_datasets(tmp_path)
    (source / "train" / "COVID" / "broken.png").write_bytes(b"not a png")
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "data",
        "dedup",
        source,
        "--against",
        target,
        "--out",
        tmp_path / "clean.csv",
        "--workers",
        "1",
    )
    assert proc.returncode == 0 and "kept 15 images, removed 2" in proc.stdout
    assert "warning: could not compare" in proc.stderr and "broken.png" in proc.stderr
