"""Stratified bootstrap: keeps class sizes, is seeded, and its 95 % intervals cover the truth about 95 % of the time."""

import numpy as np
from scipy.stats import norm

from cxr.evaluation.bootstrap import bootstrap_distribution, intervals, percentile_interval, stratified_resamples
from cxr.evaluation.metrics import compute_metrics, resampled_metrics


def test_resamples_keep_each_class_size_and_stay_within_class():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5)
    for idx in stratified_resamples(labels, 450, seed=0):
        assert idx.shape[1] == len(labels)
        for c, n in ((0, 7), (1, 3), (2, 5)):
            assert ((labels[idx] == c).sum(axis=1) == n).all()
    assert sum(len(idx) for idx in stratified_resamples(labels, 450, seed=0)) == 450


def test_same_seed_same_interval_other_seed_other_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, 80), 0, 1)
    probs = np.c_[1 - p1, p1]
    a = compute_metrics(y, probs, ["n", "p"], n_bootstrap=300, seed=1)["ci"]
    b = compute_metrics(y, probs, ["n", "p"], n_bootstrap=300, seed=1)["ci"]
    c = compute_metrics(y, probs, ["n", "p"], n_bootstrap=300, seed=2)["ci"]
    assert a == b and a["roc_auc"] != c["roc_auc"]
    point = compute_metrics(y, probs, ["n", "p"])
    for key in ("accuracy", "roc_auc", "sensitivity", "specificity", "ppv", "npv"):
        assert a[key][0] <= point[key] <= a[key][1], key


def test_undefined_metric_has_no_interval():
    assert percentile_interval(None) is None
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_intervals_cover_the_true_value_at_about_the_nominal_rate():
    """Known truth: sensitivity 0.8, specificity 0.9, AUC of N(1,1) vs N(0,1) scores = Phi(1/sqrt 2).

    Calls the same machinery as compute_metrics(n_bootstrap=...), minus its scikit-learn point estimates (speed).
    """
    n_pos, n_neg, sims = 120, 120, 200
    true_auc = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(123)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    hits = {"sensitivity": 0, "specificity": 0, "roc_auc": 0}
    truth = {"sensitivity": 0.8, "specificity": 0.9, "roc_auc": true_auc}
    for s in range(sims):
        p1 = 1 / (1 + np.exp(-rng.normal(y.astype(float), 1.0)))
        probs = np.c_[1 - p1, p1]
        pred = np.r_[rng.random(n_pos) < 0.8, rng.random(n_neg) >= 0.9].astype(int)  # known error rates

        def figures(idx, pred=pred, probs=probs):
            return resampled_metrics(y[idx], pred[idx], probs[idx], ["n", "p"])

        dist = bootstrap_distribution(y, figures, 400, s)
        ci = intervals(dist)
        for key in hits:
            hits[key] += ci[key][0] <= truth[key] <= ci[key][1]
    for key, h in hits.items():
        # 200 simulations: the coverage estimate has a standard error of about 0.015
        assert 0.89 <= h / sims <= 0.99, (key, h / sims)
