"""Confound finder: a subgroup of one class with its own look (a corner marker) is flagged, a dataset without one is
not, a cluster that is the class but touches the other class is not, and each flagged cluster gets a gallery."""

import json

import numpy as np
from PIL import Image

from cxr.explain.confounds import MIN_GAP, confound_audit, find_confounds, lite0_features
from tests.cli.helpers import run_cli_inprocess

SIZE = 64


def block_means(images: np.ndarray) -> np.ndarray:
    """A cheap label-blind feature for the tests: 8x8 block means (the real finder uses Lite0's features)."""
    n, s = len(images), images.shape[1]
    return images.astype(np.float32).reshape(n, 8, s // 8, 8, s // 8).mean(axis=(2, 4)).reshape(n, -1)


def film(rng: np.random.Generator, marker: bool) -> np.ndarray:
    coarse = rng.normal(120, 12, (4, 4)).clip(0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
    img = img + rng.normal(0, 8, img.shape)
    if marker:
        img[:24, :24] = 250
    return img.clip(0, 255).astype(np.uint8)


def build(root, n: int, marked_share: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    for cls in ("a", "b"):
        for i in range(n):
            marker = cls == "b" and i < marked_share * n
            path = root / "train" / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(film(rng, marker)).save(path)
    return root


def test_a_marked_subgroup_of_one_class_is_flagged_with_a_gallery(tmp_path):
    data = build(tmp_path / "d", 60, marked_share=0.8)
    section = confound_audit(data, tmp_path / "out", size=SIZE, cache_dir=tmp_path / "cache", features=block_means)
    assert section["suspects"] == 1, section["findings"]
    (row,) = [r for r in section["findings"] if r["verdict"] == "confound suspect"]
    assert row["top_class"] == "b" and row["purity"] >= 0.95 and row["films"] == 48
    assert row["gap_sd"] >= MIN_GAP and len(row["files"]) == 48
    with Image.open(row["gallery"]) as im:
        assert im.size[0] > 400
    assert row["gallery"] in section["galleries"]
    json.dumps(section)  # JSON-ready


def test_no_confound_no_flag(tmp_path):
    data = build(tmp_path / "d", 60, marked_share=0.0)
    section = confound_audit(data, tmp_path / "out", size=SIZE, cache_dir=tmp_path / "cache", features=block_means)
    assert section["suspects"] == 0 and section["findings"] == [] and section["galleries"] == []


def test_a_cluster_that_is_the_class_but_touches_the_other_is_no_suspect():
    # class b is one pure, large cluster, but a's films run right up to it (a continuum cut in two): no gap
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 10, 300), rng.uniform(10, 20, 300)])
    z = np.stack([x, rng.normal(0, 1, 600)], axis=1)
    y = np.array([0] * 300 + [1] * 300)
    result = find_confounds(z, y, ["a", "b"])
    assert result["suspects"] == 0 and result["findings"], result
    # the same class pushed away from a (a gap around it) is flagged (and so is a: two classes, one gap)
    z[300:, 0] += 30
    result = find_confounds(z, y, ["a", "b"])
    assert "b" in {r["top_class"] for r in result["findings"] if r["verdict"] == "confound suspect"}


def test_lite0_features_are_pooled_1280d():
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    feats = lite0_features(images)
    assert feats.shape == (3, 1280) and np.isfinite(feats).all()


def test_cli_adds_the_section(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    data = build(tmp_path / "d", 12, marked_share=0.8)
    args = ("data", "audit", data, "--out", tmp_path / "a", "--workers", "1", "--confounds", "--confound-size", 64)
    proc = run_cli_inprocess(capsys, monkeypatch, *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["confounds"]["settings"]["films"] == 24 and "confound_suspects" in report["summary"]
    assert "confounds: 24 of 24 train films" in proc.stdout
