"""The vectorised metrics behind the bootstrap equal scikit-learn / torchmetrics on the same data."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

from cxr.evaluation.metrics import (
    batched_confusion,
    cohen_kappa_from_confusion,
    compute_metrics,
    expected_calibration_error,
    rank_auc,
    rates_from_confusion,
    resampled_metrics,
)
from tests.evaluation.test_metrics import _random_probs


@pytest.mark.parametrize("c", [2, 3, 4])
def test_rates_and_auc_equal_sklearn_on_every_resample(c):
    y, p = _random_probs(200, c, seed=10 + c)
    pred = p.argmax(1)
    pred[:7] = c - 1  # make some classes over-predicted, some rarely predicted
    rng = np.random.default_rng(c)
    idx = rng.integers(0, len(y), size=(5, len(y)))
    r = rates_from_confusion(batched_confusion(y[idx], pred[idx], c))
    m = resampled_metrics(y[idx], pred[idx], p[idx], [str(i) for i in range(c)])
    for b in range(len(idx)):
        yt, yp, pb = y[idx[b]], pred[idx[b]], p[idx[b]]
        prec, rec, f1, _ = precision_recall_fscore_support(yt, yp, labels=range(c), zero_division=0)
        np.testing.assert_allclose(r["precision"][b], prec)
        np.testing.assert_allclose(r["recall"][b], rec)
        np.testing.assert_allclose(r["f1-score"][b], f1)
        assert r["balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(yt, yp))
        assert m["macro_avg"]["f1-score"][b] == pytest.approx(f1.mean())
        w = precision_recall_fscore_support(yt, yp, labels=range(c), average="weighted", zero_division=0)
        assert m["weighted_avg"]["precision"][b] == pytest.approx(w[0])
        expected_auc = roc_auc_score(yt, pb[:, 1]) if c == 2 else roc_auc_score(yt, pb, multi_class="ovr")
        assert m["roc_auc"][b] == pytest.approx(expected_auc)


def test_identity_resample_reproduces_compute_metrics():
    y, p = _random_probs(150, 2, seed=3)
    full = compute_metrics(y, p, ["neg", "pos"], threshold=0.3)
    pred = (p[:, 1] >= 0.3).astype(int)
    m = resampled_metrics(y[None], pred[None], p[None], ["neg", "pos"])
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "ppv", "npv"):
        assert m[key][0] == pytest.approx(full[key]), key


def test_rank_auc_handles_ties_like_sklearn_and_refuses_one_class():
    scores = np.array([0.1, 0.4, 0.4, 0.4, 0.8, 0.8, 0.2, 0.9])
    positive = np.array([0, 1, 0, 1, 1, 0, 0, 1], bool)
    assert rank_auc(positive, scores)[0] == pytest.approx(roc_auc_score(positive, scores))
    assert rank_auc(np.ones(4, bool), scores[:4]) is None


def test_kappa_equals_sklearn():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 120)
    b = np.where(rng.random(120) < 0.7, a, rng.integers(0, 3, 120))
    assert cohen_kappa_from_confusion(batched_confusion(a, b, 3))[0] == pytest.approx(cohen_kappa_score(a, b))


@pytest.mark.parametrize("c", [2, 3])
def test_ece_equals_torchmetrics(c):
    y, p = _random_probs(500, c, seed=20 + c)
    expected = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=c, n_bins=15, norm="l1")
    assert expected_calibration_error(p, y, 15)[0] == pytest.approx(float(expected), abs=1e-6)


def test_binary_ppv_npv_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p1 = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.1, 0.4, 0.45])
    m = compute_metrics(y, np.c_[1 - p1, p1], ["normal", "pneumonia"], threshold=0.5)
    assert m["ppv"] == pytest.approx(3 / 4)  # 0.9, 0.8, 0.6 right; 0.7 a false positive
    assert m["npv"] == pytest.approx(5 / 6)  # one positive (0.3) among the six called negative
