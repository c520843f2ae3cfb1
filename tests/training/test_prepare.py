"""prepare_data: validation carved by patient when ids exist; a CSV manifest works as --data; evaluate reads it too."""

import csv
import re

import numpy as np
import pytest
from PIL import Image

from cxr.config import KERMANY_PATIENT_PATTERN, build_config
from cxr.data.splits import patient_id_from_name
from cxr.errors import CxrError
from cxr.evaluation.evaluate import split_files
from cxr.training.prepare import prepare_data
from tests.conftest import synthetic_image


@pytest.fixture
def kermany_like(tmp_path):
    """Pneumonia images named personN_*, several per patient; normal images IM-NNNN-*."""
    rng = np.random.default_rng(0)
    root = tmp_path / "k"
    for split, n_patients in (("train", 16), ("test", 3)):
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            d = root / split / cls
            d.mkdir(parents=True)
            for pid in range(n_patients):
                for k in range(3):
                    name = f"IM-{pid:04d}-{k:04d}.png" if label == 0 else f"person{pid}_bacteria_{k}.png"
                    Image.fromarray(synthetic_image(label, rng, 24)).save(d / name)
    return root


def _cfg(data, **kw):
    return build_config(None, dict(data=data, image_size=16, num_workers=0, val_fraction=0.25, **kw))


def test_validation_is_carved_by_patient(kermany_like, tmp_path):
    prepared = prepare_data(_cfg(kermany_like), tmp_path)
    regex = re.compile(KERMANY_PATIENT_PATTERN)
    ids = {name: {patient_id_from_name(p.name, regex) for p in prepared.files[name].paths} for name in ("train", "val")}
    assert ids["val"] and not ids["train"] & ids["val"]
    # by image, 48 images x 25 % would almost surely split some patient's three images across train and val
    by_image = prepare_data(_cfg(kermany_like, patient_id_pattern=""), tmp_path)
    ids_img = {n: {patient_id_from_name(p.name, regex) for p in by_image.files[n].paths} for n in ("train", "val")}
    assert ids_img["train"] & ids_img["val"]


def test_bad_pattern_in_config_names_the_key():
    with pytest.raises(CxrError, match="patient_id_pattern.*not a valid regular expression"):
        build_config(None, {"patient_id_pattern": "person(\\d+"})


def test_manifest_as_data_for_train_and_evaluate(kermany_like, tmp_path):
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id", "split"])
        for p in sorted(kermany_like.rglob("*.png")):
            split, cls = p.relative_to(kermany_like).parts[:2]
            w.writerow([p.relative_to(tmp_path).as_posix(), cls.lower(), f"{cls}-{p.name[:7]}", split])
    run = tmp_path / "run"
    run.mkdir()
    prepared = prepare_data(_cfg(manifest), run)
    assert prepared.classes == ["normal", "pneumonia"]
    assert len(prepared.files["train"]) + len(prepared.files["val"]) == 96 and len(prepared.files["test"]) == 18
    group = {p: f"{p.parent.name}-{p.name[:7]}" for p in prepared.files["train"].paths + prepared.files["val"].paths}
    train_ids = {group[p] for p in prepared.files["train"].paths}
    assert not train_ids & {group[p] for p in prepared.files["val"].paths}
    test = split_files(run, "test", ["normal", "pneumonia"], data=manifest)
    assert len(test) == 18 and sorted(set(test.labels)) == [0, 1]
    with pytest.raises(CxrError, match="classes"):
        split_files(run, "test", ["a", "b"], data=manifest)
