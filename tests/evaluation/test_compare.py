"""Comparing two models: McNemar on discordant errors, DeLong on correlated AUCs, paired bootstrap, the command."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from cxr.evaluation.bootstrap import bootstrap_distribution
from cxr.evaluation.compare import compare_runs, delong_test, mcnemar_exact
from cxr.evaluation.metrics import rank_auc
from sklearn.metrics import roc_auc_score
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
    dist = bootstrap_distribution(y.astype(int), lambda idx: {"d": rank_auc(y[idx], a[idx]) - rank_auc(y[idx], b[idx])},
                                  2000, seed=0)  # fmt: skip
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
