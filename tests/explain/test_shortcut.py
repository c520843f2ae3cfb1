"""Shortcut audit: border-mass arithmetic, and a model that looks at a border 'marker' gets flagged."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cxr.config import TrainConfig, save_config
from cxr.explain.shortcut import audit_run, border_fraction, border_mask, uniform_baseline
from cxr.inference.bundle import save_bundle
from tests.explain.conftest import CLASSES, blob_image, make_bundle


def test_border_fraction_arithmetic_on_non_square_maps():
    h, w = 40, 60  # border band: 4 rows and 6 columns on each side
    mask = border_mask(h, w, 0.1)
    assert mask[:4].all() and mask[-4:].all() and mask[:, :6].all() and mask[:, -6:].all()
    assert not mask[4:-4, 6:-6].any()
    assert border_fraction(np.ones((h, w))) == pytest.approx(uniform_baseline(0.1)) == pytest.approx(0.36)
    centre, corner = np.zeros((h, w)), np.zeros((h, w))
    centre[15:25, 25:35] = 1
    corner[0:3, 55:60] = 2
    assert border_fraction(centre) == 0 and border_fraction(corner) == 1
    assert border_fraction(centre + corner / 2) == pytest.approx(15 / (100 + 15))
    assert np.isnan(border_fraction(np.zeros((h, w))))
    with pytest.raises(ValueError):
        border_mask(10, 10, 0.5)


def _write_run(tmp_path, model):
    """A finished run whose test split has blobs in the border band (a 'marker') and in the centre."""
    data = tmp_path / "data"
    rng = np.random.default_rng(5)
    spots = {"marker": [(0.05, 0.93), (0.94, 0.06), (0.06, 0.05)], "centre": [(0.5, 0.45), (0.45, 0.55), (0.55, 0.5)]}
    for split in ("train", "test"):
        for cls in CLASSES:
            (data / split / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(blob_image(False, rng, 70, 90)).save(data / split / "clear" / f"c{i}.png")
        for kind, places in spots.items():
            for i, at in enumerate(places):
                Image.fromarray(blob_image(True, rng, 70, 90, at)).save(data / split / "opacity" / f"{kind}{i}.png")
    run = tmp_path / "run"
    run.mkdir()
    bundle = make_bundle(model, run)
    save_bundle(run, model, bundle.meta)
    save_config(TrainConfig(data=data, model="vanilla-cnn", image_size=bundle.meta.image_size), run / "config.yaml")
    return run


def test_audit_flags_images_whose_evidence_sits_on_the_border(blob_model, tmp_path):
    run = _write_run(tmp_path, blob_model)
    summary, paths = audit_run(run, "test", n_overlays=2)
    assert summary["uniform_baseline"] == pytest.approx(0.36) and summary["layer"] == "features"
    rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(open(paths["csv"]))}
    assert len(rows) == 8
    for i in range(3):
        marker, centre = rows[f"marker{i}.png"], rows[f"centre{i}.png"]
        assert marker["predicted"] == centre["predicted"] == "opacity"
        assert float(marker["border_fraction"]) > 0.5 and marker["flagged"] == "True"
        assert float(centre["border_fraction"]) < 0.2 and centre["flagged"] == "False"
    blob = summary["per_class"]["opacity"]
    assert blob["n"] == 6 and blob["flagged"] >= 3 and blob["max"] > 0.5
    assert json.loads(paths["json"].read_text())["per_class"]["opacity"] == blob
    assert paths["png"].stat().st_size > 0
    overlays = sorted(p.name for p in paths["flagged"].glob("*.png"))
    assert len(overlays) == 2 and all(name.startswith("opacity_marker") for name in overlays)


def test_audit_of_another_dataset_goes_beside_the_runs_own_and_unreadable_data_is_an_error(blob_model, tmp_path):
    import shutil

    from cxr.errors import CxrError

    run = _write_run(tmp_path, blob_model)
    _, own = audit_run(run, "test", n_overlays=0)
    other = tmp_path / "other-site"
    shutil.copytree(tmp_path / "data", other)
    for f in (other / "test" / "opacity").glob("centre*.png"):
        f.unlink()
    summary, paths = audit_run(run, "test", data=other, n_overlays=0)
    assert paths["csv"].name == "shortcut_test@other-site.csv" and summary["split"] == "test@other-site"
    assert len(list(csv.DictReader(open(own["csv"])))) == 8  # the run's own audit is untouched
    assert len(list(csv.DictReader(open(paths["csv"])))) == 5
    for f in (other / "test").rglob("*.png"):
        f.write_bytes(b"not a png")
    with pytest.raises(CxrError, match="none of the 5 test images could be read"):
        audit_run(run, "test", data=other)
