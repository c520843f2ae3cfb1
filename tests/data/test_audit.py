"""Audit: planted exact copies, re-encoded copies and shared patients are found across splits; clean data is clean."""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.config import KERMANY_PATIENT_PATTERN
from cxr.data.audit import audit_dataset, near_pairs, run_audit, summary_lines
from cxr.data.images import find_images
from tests.cli.helpers import run_cli_inprocess
from tests.conftest import CODECADEMY, SHARED_DATA, make_class_folders, synthetic_image

RADIOGRAPHY = SHARED_DATA / "covid19-radiography"


def textured(seed: int, size: int = 96) -> np.ndarray:
    """A smooth random image (distinct pHash per seed, unlike pure noise it survives re-encoding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture
def leaky(tmp_path) -> Path:
    """Distinct images, plus: an exact copy train->test, a re-encoded resized copy train->test, an exact copy within
    train, a patient in both splits, and an unreadable file."""
    root = tmp_path / "leaky"
    for split, n in (("train", 6), ("test", 3)):
        for c, cls in enumerate(("normal", "sick")):
            for i in range(n):
                _save(textured(100 * (split == "test") + 10 * c + i), root / split / cls / f"{split}{i}.png")
    shutil.copy(root / "train/normal/train0.png", root / "test/normal/copy_of_train0.png")
    big = Image.fromarray(textured(10 * 1 + 1)).resize((120, 120))
    big.save(root / "test/sick/reencoded.jpg", quality=70)  # train/sick/train1.png, resized and JPEG'd
    shutil.copy(root / "train/sick/train2.png", root / "train/sick/dup_within.png")
    _save(textured(501), root / "train/normal/person7_bacteria_1.png")
    _save(textured(502), root / "test/normal/person7_bacteria_2.png")
    (root / "train/sick/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _paths(findings) -> list[set[str]]:
    return [{f["path"] for f in g["files"]} for g in findings]


def test_planted_leaks_are_found_and_listed(leaky):
    r = audit_dataset(leaky, pattern=KERMANY_PATIENT_PATTERN, workers=1)
    s = r["summary"]
    assert s["images"] == 2 * 6 + 2 * 3 + 6 and s["unreadable"] == 1
    assert r["unreadable"][0]["path"] == "train/sick/broken.png"
    assert {"train/normal/train0.png", "test/normal/copy_of_train0.png"} in _paths(r["exact_duplicates"])
    assert {"train/sick/train2.png", "train/sick/dup_within.png"} in _paths(r["exact_duplicates"])
    assert s["exact_duplicate_groups"] == 2 and s["exact_duplicate_groups_across_splits"] == 1
    cross = [{f["path"] for f in p["files"]} for p in r["near_duplicate_pairs_across_splits"]]
    assert cross == [{"train/sick/train1.png", "test/sick/reencoded.jpg"}]
    assert r["patient_overlap"][0]["patient_id"] == "person7" and s["patients_across_splits"] == 1
    assert s["leakage"] is True
    assert r["counts"]["test"] == {"normal": 5, "sick": 4}
    assert r["modes"] == {"PNG L": 22, "JPEG L": 1}


def test_clean_dataset_has_no_findings(tmp_path):
    root = make_class_folders(tmp_path / "clean", n_train=6, n_test=3, size=64)
    r = audit_dataset(root, pattern=KERMANY_PATIENT_PATTERN, workers=1)
    s = r["summary"]
    assert s["leakage"] is False
    assert s["exact_duplicate_groups"] == s["near_duplicate_pairs"] == s["unreadable"] == 0


def test_threshold_zero_keeps_only_identical_hashes(leaky):
    r = audit_dataset(leaky, threshold=0, pattern="", workers=1)
    assert r["summary"]["near_duplicate_pairs_across_splits"] == 0  # the re-encoded copy differs by a few bits
    assert r["summary"]["patients"] == 0 and r["summary"]["exact_duplicate_groups_across_splits"] == 1


def test_near_pairs_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    hashes[150] = hashes[3]
    hashes[299] = hashes[10] ^ np.eye(1, 32, 5, dtype=np.uint8)[0]  # one bit apart, in different blocks
    bits = np.unpackbits(hashes, axis=1).astype(int)
    expected = {
        (i, j, int((bits[i] != bits[j]).sum()))
        for i in range(300)
        for j in range(i + 1, 300)
        if (bits[i] != bits[j]).sum() <= 100
    }
    assert set(near_pairs(hashes, 100, block=64)) == expected
    assert {(3, 150, 0), (10, 299, 1)} <= set(near_pairs(hashes, 1, block=64))


def test_several_processes_give_the_same_report(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "many"
    for split, n in (("train", 40), ("test", 30)):
        for c, cls in enumerate(("a", "b")):
            for i in range(n // 2):
                _save(synthetic_image(c, rng, 48), root / split / cls / f"{i}.png")
    one = audit_dataset(root, workers=1)
    two = audit_dataset(root, workers=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_manifest_input_and_outputs(tmp_path, leaky):
    csv = tmp_path / "m.csv"
    csv.write_text(
        "path,label,patient_id,split\n"
        "leaky/train/normal/train0.png,normal,alice,train\n"
        "leaky/train/sick/train1.png,sick,bob,train\n"
        "leaky/test/normal/copy_of_train0.png,normal,carol,test\n"
        "leaky/test/sick/test0.png,sick,bob,test\n"
    )
    r = run_audit(csv, tmp_path / "out", pattern=KERMANY_PATIENT_PATTERN, workers=1)
    assert [g["patient_id"] for g in r["patient_overlap"]] == ["bob"]
    assert r["summary"]["exact_duplicate_groups_across_splits"] == 1
    saved = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert saved["summary"] == r["summary"]
    for name in ("class_counts.png", "duplicates_across_splits.png"):
        with Image.open(tmp_path / "out" / "plots" / name) as im:
            assert im.size[0] > 200


def test_cli_exit_codes(capsys, monkeypatch, tmp_path, leaky):
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "audit", leaky, "--out", tmp_path / "a", "--workers", "1")
    assert proc.returncode == 1, proc.stderr
    assert "leakage" in proc.stderr and "exact duplicates: 2 groups, 1 across splits" in proc.stdout
    clean = make_class_folders(tmp_path / "clean", n_train=4, n_test=2, size=64)
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "audit", clean, "--out", tmp_path / "b", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "audit", tmp_path / "missing", "--out", tmp_path / "c")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_cli_split_writes_a_grouped_manifest(capsys, monkeypatch, tmp_path, leaky):
    out = tmp_path / "split.csv"
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "split", leaky, "--val", "0.2", "--test", "0.2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "path,label,patient_id,split" and len(lines) == 1 + 24
    person7 = [line.split(",")[-1] for line in lines if ",person7," in line]
    assert len(person7) == 2 and len(set(person7)) == 1  # the shared patient is now on one side only
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "split", leaky, "--out", out, "--patient-pattern", "(")
    assert proc.returncode == 2 and "not a valid regular expression" in proc.stderr


@pytest.mark.skipif(not CODECADEMY.is_dir(), reason="needs ../shared/data")
def test_real_dataset_counts_match_the_folders():
    r = audit_dataset(CODECADEMY, workers=2)
    for split, per_class in r["counts"].items():
        for cls, n in per_class.items():
            assert n == len(find_images([CODECADEMY / split / cls]))
    assert r["summary"]["unreadable"] == 0
    for g in r["exact_duplicates"] + r["near_duplicates"]:
        assert all((CODECADEMY / f["path"]).is_file() for f in g["files"])


@pytest.mark.slow
@pytest.mark.skipif(not RADIOGRAPHY.is_dir(), reason="needs ../shared/data")
def test_radiography_audit_under_two_minutes(tmp_path):
    start = time.perf_counter()
    r = run_audit(RADIOGRAPHY, tmp_path, pattern=KERMANY_PATIENT_PATTERN, workers=os.cpu_count())
    assert time.perf_counter() - start < 120
    assert r["summary"]["images"] == 10_284
    for pair in r["near_duplicate_pairs_across_splits"]:
        a, b = pair["files"]
        assert a["split"] != b["split"] and pair["distance"] <= r["settings"]["threshold"]
        assert (RADIOGRAPHY / a["path"]).is_file() and (RADIOGRAPHY / b["path"]).is_file()


def test_intensity_cue_is_flagged_only_when_the_classes_differ_in_brightness(tmp_path):
    rng = np.random.default_rng(0)
    for n, (cls, gain) in enumerate((("normal", 1.0), ("sick", 0.6))):  # "sick" films come from a dimmer scanner
        for i in range(12):
            _save((synthetic_image(n, rng, 64) * gain).astype(np.uint8), tmp_path / "cue/train" / cls / f"{i}.png")
    cued = audit_dataset(tmp_path / "cue", workers=1)
    assert cued["summary"]["intensity_cue_auc"] > 0.9
    assert any("consider `input_norm: image`" in line for line in summary_lines(cued))

    clean = audit_dataset(make_class_folders(tmp_path / "clean", n_train=30, n_test=2, size=64), workers=1)
    assert clean["settings"]["intensity_cue_split"] == "train"
    assert clean["summary"]["intensity_cue_auc"] < 0.65  # same noise and brightness in both classes
    assert not any("input_norm" in line for line in summary_lines(clean))
