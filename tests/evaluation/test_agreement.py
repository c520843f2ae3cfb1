"""Reader agreement: kappa equals scikit-learn, CSV problems are one-line errors, paths match by their tail."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from cxr.errors import CxrError
from cxr.evaluation.agreement import match_paths, read_reference_csv, reader_agreement

CLASSES = ["normal", "pneumonia"]


def _paths(n):
    return [Path(f"/data/test/{CLASSES[i % 2]}/img{i:03d}.png") for i in range(n)]


def test_match_by_tail_absolute_and_relative(tmp_path):
    paths = _paths(6)
    refs = ["normal/img000.png", "test/pneumonia/img001.png", str(paths[2]), "img003.png", "missing/img004.png"]
    np.testing.assert_array_equal(match_paths(refs, paths, tmp_path), [0, 1, 2, 3, -1])


def test_kappas_equal_sklearn_and_model_is_judged_on_listed_images_only(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    paths = _paths(n)
    y = np.array([i % 2 for i in range(n)])
    model = np.where(rng.random(n) < 0.85, y, 1 - y)
    r1 = np.where(rng.random(n) < 0.9, y, 1 - y)
    r2 = np.where(rng.random(n) < 0.75, y, 1 - y)
    listed = np.sort(rng.choice(n, 60, replace=False))  # readers saw half the images; reader 2 skipped a few
    skipped = set(listed[::10])
    lines = ["path,r1,r2"] + [
        f"{CLASSES[y[i]]}/{paths[i].name},{CLASSES[r1[i]].upper()},{'' if i in skipped else CLASSES[r2[i]]}"
        for i in listed
    ]
    csv = tmp_path / "readers.csv"
    csv.write_text("\n".join(lines) + "\n")
    ag = reader_agreement(csv, paths, y, model, CLASSES, n_bootstrap=200)
    assert ag["matched"] == len(listed) and ag["readers"] == ["r1", "r2"]
    pairs = {(p["a"], p["b"]): p for p in ag["pairs"]}
    both = np.array([i for i in listed if i not in skipped])
    assert pairs[("model", "r1")]["kappa"] == pytest.approx(cohen_kappa_score(model[listed], r1[listed]))
    assert pairs[("r1", "r2")]["kappa"] == pytest.approx(cohen_kappa_score(r1[both], r2[both]))
    assert pairs[("r1", "r2")]["n"] == len(both)
    lo, hi = pairs[("model", "r1")]["ci"]
    assert lo <= pairs[("model", "r1")]["kappa"] <= hi
    truth = {r["rater"]: r for r in ag["vs_truth"]}
    assert truth["model"]["n"] == len(listed)
    assert truth["model"]["accuracy"] == pytest.approx((model[listed] == y[listed]).mean())
    assert truth["r2"]["sensitivity"] == pytest.approx((r2[both][y[both] == 1] == 1).mean())


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("file,label\na.png,normal\n", "first row"),
        ("path,label\na.png,covid\n", "'covid' is not a class"),
        ("path,model\na.png,normal\n", "not named 'model'"),
    ],
)
def test_bad_reference_files_are_one_line_errors(tmp_path, text, fragment):
    f = tmp_path / "r.csv"
    f.write_text(text)
    with pytest.raises(CxrError, match=fragment) as e:
        read_reference_csv(f, CLASSES)
    assert "\n" not in str(e.value)


def test_reference_naming_no_evaluated_image_is_an_error(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("path,label\nelsewhere/x.png,normal\n")
    with pytest.raises(CxrError, match="none of its 1 paths"):
        reader_agreement(f, _paths(4), np.zeros(4, int), np.zeros(4, int), CLASSES)
    with pytest.raises(CxrError, match="not found"):
        read_reference_csv(tmp_path / "missing.csv", CLASSES)
