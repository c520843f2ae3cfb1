"""Shortcut probes: a label hidden only in a border marker, only in the file format, only in the patient, or nowhere."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.config import KERMANY_PATIENT_PATTERN
from cxr.data.audit import audit_dataset, inspect_file, summary_lines
from cxr.data.probes import PROBE_WARN_AUC, probe_groups
from tests.cli.helpers import run_cli_inprocess
from tests.data.dicom_files import write_dicom

SIZE = 128  # 128 -> the audit's 64 px decode -> 32 px probe image (4 px a cell) -> 8x8 thumbnail (16 px a cell)


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random film-like image plus noise: the same distribution whatever the class."""
    coarse = rng.normal(120, 35, (6, 6)).clip(0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
    return (img + rng.normal(0, 8, img.shape)).clip(0, 255)


def save(img: np.ndarray, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.astype(np.uint8)).save(path, **kw)


def build(root: Path, n: int, make, seed: int = 0, classes=("a", "b")) -> Path:
    """`n` images per class, half in train/ and half in test/; make(class_index, i, rng) -> (array, suffix, kw)."""
    rng = np.random.default_rng(seed)
    for c, cls in enumerate(classes):
        for i in range(n):
            img, suffix, kw = make(c, i, rng)
            save(img, root / ("train" if i % 2 else "test") / cls / f"{i:03d}{suffix}", **kw)
    return root


def probe_aucs(report) -> dict[str, float]:
    return {k: p["auc"] for k, p in report["probes"].items() if k != "settings"}


def test_a_border_marker_is_found_by_the_border_probe_only(tmp_path):
    def make(c, i, rng):
        img = background(rng)
        x0 = 0 if c == 0 else 8  # the same marker, 8 px apart: one 8x8 thumbnail cell, different border pixels
        img[1:7, x0 : x0 + 6] = 255
        return img, ".png", {}

    r = audit_dataset(build(tmp_path / "marker", 40, make), pattern="", workers=1)
    auc = probe_aucs(r)
    assert auc["border"] >= 0.9 and r["probes"]["border"]["warning"]
    assert auc["thumbnail"] < PROBE_WARN_AUC and r["probes"]["thumbnail"]["warning"] is None
    assert auc["file_properties"] < PROBE_WARN_AUC
    assert r["summary"]["shortcut_warnings"] == 1 and r["summary"]["shortcut_probe_aucs"] == auc
    lines = summary_lines(r)
    assert any("label can be predicted from the image border alone" in line for line in lines)
    assert not any("8x8 thumbnail (AUC" in line for line in lines)


def test_a_file_format_cue_is_found_by_the_file_property_probe(tmp_path):
    def make(c, i, rng):  # class a saved as PNG, class b as JPEG: the pixels are alike
        return background(rng), (".png", ".jpg")[c], ({}, {"quality": 95})[c]

    r = audit_dataset(build(tmp_path / "format", 40, make), pattern="", workers=1)
    probe = r["probes"]["file_properties"]
    assert probe["auc"] >= 0.95 and probe["warning"] and "format 1.00" in probe["warning"]
    assert probe["feature_aucs"]["format"] == 1.0 and "width" not in probe["feature_aucs"]  # constant: skipped
    assert probe_aucs(r)["border"] < PROBE_WARN_AUC and probe_aucs(r)["thumbnail"] < PROBE_WARN_AUC


def test_jpeg_quality_is_a_file_property(tmp_path):
    def make(c, i, rng):  # both JPEG, same size: only the encoder's quality setting differs
        return background(rng), ".jpg", {"quality": (95, 60)[c]}

    probe = audit_dataset(build(tmp_path / "quality", 30, make), pattern="", workers=1)["probes"]["file_properties"]
    assert probe["feature_aucs"]["jpeg_tables"] == 1.0 and probe["header_auc"] == 1.0 and probe["warning"]


def test_a_cue_in_the_file_size_alone_is_a_note_not_a_warning(tmp_path):
    def make(c, i, rng):  # same size, format, mode; class b is grainier, so its PNGs compress worse
        return (background(rng) + rng.normal(0, 1 + 20 * c, (SIZE, SIZE))).clip(0, 255), ".png", {}

    r = audit_dataset(build(tmp_path / "grain", 30, make), pattern="", workers=1)
    probe = r["probes"]["file_properties"]
    assert probe["feature_aucs"]["log2_file_size"] >= 0.95 and probe["header_auc"] is None  # nothing else varies
    assert probe["warning"] is None and probe["note"].startswith("file size alone predicts the label")
    assert any(line.startswith("  note: file size alone") for line in summary_lines(r))


def test_a_warning_names_the_class_that_stands_out(tmp_path):
    def make(c, i, rng):  # only class c was collimated
        img = background(rng)
        if c == 2:
            img[:, :10] = img[:, -10:] = 0
        return img, ".png", {}

    r = audit_dataset(build(tmp_path / "three", 20, make, classes=("a", "b", "c")), pattern="", workers=1)
    border = r["probes"]["border"]
    assert border["class_aucs"]["c"] >= 0.95 and border["class_aucs"]["a"] < border["class_aucs"]["c"]
    assert "c against the rest" in border["warning"]


def test_no_cue_gives_no_warning(tmp_path):
    def make(c, i, rng):  # every property drawn the same way for both classes
        img = background(rng)
        y, x = rng.integers(0, SIZE - 8, 2)
        img[y : y + 6, x : x + 6] = 255
        fmt = rng.integers(2)
        side = int(rng.choice([112, 128, 144]))
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((side, SIZE)))
        return img, (".png", ".jpg")[fmt], ({}, {"quality": 90})[fmt]

    r = audit_dataset(build(tmp_path / "none", 40, make, seed=3), pattern="", workers=1)
    for name, auc in probe_aucs(r).items():
        assert abs(auc - 0.5) < 0.2, (name, auc)
    assert r["summary"]["shortcut_warnings"] == 0
    assert not any("warning:" in line for line in summary_lines(r))


def test_folds_are_grouped_by_patient(tmp_path):
    """A patient's films look alike and share one label: a probe that sees a patient in training and in testing
    reads the label off the patient's look; grouped by patient it cannot."""
    rng = np.random.default_rng(5)
    for p in range(24):
        look = background(rng)
        for k in range(4):
            img = look + rng.normal(0, 8, look.shape)
            folder = tmp_path / "pat" / ("train" if p < 16 else "test") / ("a", "b")[p % 2]
            save(img.clip(0, 255), folder / f"person{p}_bacteria_{k}.png")
    ungrouped = audit_dataset(tmp_path / "pat", pattern="", workers=1)["probes"]["border"]
    grouped = audit_dataset(tmp_path / "pat", pattern=KERMANY_PATIENT_PATTERN, workers=1)["probes"]["border"]
    assert ungrouped["groups"] == 96 and grouped["groups"] == 24
    assert ungrouped["auc"] >= 0.85
    assert grouped["auc"] < PROBE_WARN_AUC and grouped["warning"] is None


def test_probe_groups_join_linked_images():
    g = probe_groups(6, [(0, 1), (1, 2), (4, 4)])
    assert g[0] == g[1] == g[2] and len({g[0], g[3], g[4], g[5]}) == 4
    assert len(set(probe_groups(3, []))) == 3


def test_too_few_images_is_reported_not_guessed(tmp_path):
    def make(c, i, rng):
        return background(rng), ".png", {}

    r = audit_dataset(build(tmp_path / "tiny", 4, make), pattern="", workers=1)
    assert all(auc is None for auc in probe_aucs(r).values())
    assert any("border only not measured" in line for line in summary_lines(r))
    assert r["summary"]["shortcut_warnings"] == 0


def test_header_facts_for_the_file_probe(tmp_path):
    arr = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) % 4096).astype(np.uint16)
    dcm = inspect_file(write_dicom(tmp_path / "f.dcm", arr, bits_stored=12))
    assert (dcm.width, dcm.height, dcm.bits, dcm.mode) == (64, 48, 12, "DICOM MONOCHROME2 12-bit")
    Image.fromarray(arr).save(tmp_path / "f16.png")
    png = inspect_file(tmp_path / "f16.png")
    assert png.bits == 16 and png.file_size == (tmp_path / "f16.png").stat().st_size
    assert len(png.probe_pixels) == 32 * 32 and not inspect_file(tmp_path / "missing.png").probe_pixels


def test_cli_prints_the_probes_and_writes_them(capsys, monkeypatch, tmp_path):
    def make(c, i, rng):
        img = background(rng)
        img[:, : 6 + 6 * c] = 0  # a collimation edge twice as wide in class b
        return img, ".png", {}

    data = build(tmp_path / "collimated", 30, make)
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "audit", data, "--out", tmp_path / "out", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "shortcut probes (5-fold CV AUC" in proc.stdout
    assert "warning: the label can be predicted from the image border alone" in proc.stdout
    saved = json.loads((tmp_path / "out" / "audit.json").read_text())["probes"]
    assert saved["border"]["n"] == 60 and len(saved["border"]["fold_aucs"]) == 5
    assert saved["settings"]["splits"] == "all, pooled"
