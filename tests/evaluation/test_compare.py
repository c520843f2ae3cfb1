"""Comparing two models: McNemar on discordant errors, DeLong on correlated AUCs, paired bootstrap, the command."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from cxr.errors import CxrError
from cxr.evaluation.bootstrap import bootstrap_distribution
from cxr.evaluation.compare import compare_runs, delong_test, mcnemar_exact
from cxr.evaluation.metrics import rank_auc
from cxr.evaluation.oof import write_oof
from tests.evaluation.runs import make_run


def test_mcnemar_uses_only_discordant_pairs():
    a = np.array([1] * 50 + [1] * 12 + [0] * 3 + [0] * 10, bool)
    b = np.array([1] * 50 + [0] * 12 + [1] * 3 + [0] * 10, bool)
    r = mcnemar_exact(a, b)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"]) == (12, 3)
    assert r["p_value"] == pytest.approx(binomtest(3, 15, 0.5).pvalue)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def _correlated_scores(n, shift_b, seed):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)]
    shared = rng.normal(size=n)  # both models see the same hard cases
    a = 1.0 * y + shared + 0.5 * rng.normal(size=n)
    b = shift_b * y + shared + 0.5 * rng.normal(size=n)
    return y, a, b


def test_delong_aucs_match_sklearn_and_se_matches_paired_bootstrap():
    y, a, b = _correlated_scores(400, 0.6, seed=0)
    r = delong_test(y, a, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a)) and r["auc_b"] == pytest.approx(roc_auc_score(y, b))
    dist = bootstrap_distribution(
        y.astype(int), lambda idx: {"d": rank_auc(y[idx], a[idx]) - rank_auc(y[idx], b[idx])}, 2000, seed=0
    )
    assert r["se"] == pytest.approx(dist["d"].std(), rel=0.15)
    assert r["p_value"] < 0.01 and r["ci"][0] > 0


def test_delong_identical_models_and_null_calibration():
    y, a, _ = _correlated_scores(200, 1.0, seed=1)
    same = delong_test(y, a, a)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    # equally good models: p-values are not systematically small (type I error near 5 %)
    rejections = sum(delong_test(*_correlated_scores(200, 1.0, seed=s))["p_value"] < 0.05 for s in range(200))
    assert rejections / 200 < 0.10


def test_compare_runs_writes_json_and_plot(tmp_path):
    good = make_run(tmp_path, steps=25, seed=0)
    weak = make_run(tmp_path, steps=2, seed=1)
    result = compare_runs(good, weak, n_bootstrap=200, out=tmp_path / "cmp")
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert (tmp_path / "cmp" / "roc_compare_test.png").stat().st_size > 5000
    assert saved["n"] == 20 and saved["mcnemar"]["method"] == "McNemar, exact"
    assert saved["auc_test"]["method"] == "DeLong"
    names = list(saved["metrics"])
    assert saved["auc_test"]["difference"] == pytest.approx(
        saved["metrics"][names[0]]["roc_auc"] - saved["metrics"][names[1]]["roc_auc"]
    )
    assert set(saved["differences"]) >= {"accuracy", "roc_auc", "sensitivity", "specificity"}
    assert result["out"] == str(tmp_path / "cmp")


def test_compare_multiclass_uses_paired_bootstrap(tmp_path):
    a = make_run(tmp_path, classes=("a", "b", "c"), steps=25, seed=0)
    b = make_run(tmp_path, classes=("a", "b", "c"), steps=2, seed=1)
    result = compare_runs(a, b, n_bootstrap=200, out=tmp_path / "cmp3")
    assert result["auc_test"]["method"].startswith("paired stratified bootstrap")
    lo, hi = result["auc_test"]["ci"]
    assert lo <= result["auc_test"]["difference"] <= hi


def _fake_cross_validation(folder: Path, probs_of_class1: list[float], labels: list[int], paths: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "cv.json").write_text("{}")
    p1 = np.array(probs_of_class1)
    write_oof(
        folder / "predictions_oof.csv",
        [(p, i % 3) for i, p in enumerate(paths)],
        labels,
        np.stack([1 - p1, p1], 1),
        ["normal", "pneumonia"],
    )
    return folder


def test_compare_pairs_two_cross_validations_image_by_image(tmp_path):
    labels = [0, 1] * 10
    paths = [f"/data/img{i}.png" for i in range(20)]
    right, wrong = (lambda y: 0.9 if y else 0.1), (lambda y: 0.1 if y else 0.9)
    a_probs = [right(y) if i < 16 else wrong(y) for i, y in enumerate(labels)]  # A wrong on images 16-19
    b_probs = [right(y) if 6 <= i else wrong(y) for i, y in enumerate(labels)]  # B wrong on 0-5
    cv_a = _fake_cross_validation(tmp_path / "cv-a", a_probs, labels, paths)
    cv_b = _fake_cross_validation(tmp_path / "cv-b", b_probs[::-1], labels[::-1], paths[::-1])  # other row order
    (tmp_path / "cv-b" / "predictions_oof.csv").write_text(
        (tmp_path / "cv-b" / "predictions_oof.csv").read_text() + "/data/only-in-b.png,normal,0,0.9,0.1\n"
    )
    result = compare_runs(cv_a, cv_b, n_bootstrap=200)
    assert result["split"] == "out-of-fold" and result["n"] == 20  # the image B alone scored is left out
    assert result["mcnemar"]["a_right_b_wrong"] == 6 and result["mcnemar"]["a_wrong_b_right"] == 4
    names = list(result["metrics"])
    assert [result["metrics"][n]["accuracy"] for n in names] == [0.8, 0.7]
    assert (Path(result["out"]) / "roc_compare_out-of-fold.png").is_file()
    with pytest.raises(CxrError, match="not one of each"):
        compare_runs(cv_a, make_run(tmp_path / "model", steps=1))
