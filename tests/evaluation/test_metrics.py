import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from cxr.evaluation.metrics import compute_metrics


def _random_probs(n, c, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


@pytest.mark.parametrize("c", [2, 3, 4])
def test_agrees_with_sklearn(c):
    y, p = _random_probs(300, c, seed=c)
    m = compute_metrics(y, p, [f"k{i}" for i in range(c)])
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_avg"]["f1-score"] == pytest.approx(f1_score(y, pred, average="macro"))
    expected_auc = roc_auc_score(y, p[:, 1]) if c == 2 else roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert m["roc_auc"] == pytest.approx(expected_auc)
    assert np.asarray(m["confusion_matrix"]).sum() == 300
    assert sum(v["support"] for v in m["per_class"].values()) == 300


def test_binary_sensitivity_specificity_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p1 = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.1, 0.4, 0.45])
    m = compute_metrics(y, np.c_[1 - p1, p1], ["normal", "pneumonia"])
    assert m["positive_class"] == "pneumonia"
    assert m["sensitivity"] == pytest.approx(3 / 4)  # TP=3 of 4 positives
    assert m["specificity"] == pytest.approx(5 / 6)  # one normal at 0.7
    m_low = compute_metrics(y, np.c_[1 - p1, p1], ["normal", "pneumonia"], threshold=0.25)
    assert m_low["sensitivity"] == pytest.approx(1.0)
    assert m_low["specificity"] == pytest.approx(3 / 6)  # only 0.2, 0.1, 0.1 fall below 0.25


def test_auc_is_none_when_a_class_is_absent():
    y = np.zeros(5, int)
    p = np.tile([0.7, 0.3], (5, 1))
    assert compute_metrics(y, p, ["a", "b"])["roc_auc"] is None
