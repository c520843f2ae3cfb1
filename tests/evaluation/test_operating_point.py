"""Operating point: parsing, and thresholds that meet their target on the validation data they were chosen on."""

import numpy as np
import pytest

from cxr.config import build_config
from cxr.errors import CxrError
from cxr.evaluation.metrics import compute_metrics
from cxr.evaluation.operating_point import (
    OperatingPoint,
    check_binary,
    choose_threshold,
    operating_point_table,
    parse_operating_point,
)

CLASSES = ["normal", "pneumonia"]


def _val(n=300, seed=0, separation=1.2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    p1 = 1 / (1 + np.exp(-rng.normal(separation * (2 * y - 1), 1.0)))
    return y, np.c_[1 - p1, p1].astype(np.float32)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sensitivity=0.95", OperatingPoint("sensitivity", 0.95)),
        ("Specificity = 0.9", OperatingPoint("specificity", 0.9)),
        ("youden", OperatingPoint("youden")),
        ("sensitivity=1", OperatingPoint("sensitivity", 1.0)),
    ],
)
def test_parse(text, expected):
    assert parse_operating_point(text) == expected


@pytest.mark.parametrize("text", ["sens=0.9", "sensitivity", "sensitivity=1.5", "sensitivity=0", "youden=3", ""])
def test_parse_rejects_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="sensitivity=0.95|must be in"):
        parse_operating_point(text)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("target", [0.8, 0.95, 0.99])
def test_sensitivity_threshold_reaches_target_and_is_the_highest_that_does(seed, target):
    y, probs = _val(seed=seed)
    t = choose_threshold(y, probs[:, 1], OperatingPoint("sensitivity", target))
    m = compute_metrics(y, probs, CLASSES, threshold=t)
    assert m["sensitivity"] >= target
    # the next positive score above t must be needed: moving the threshold just past it loses the target
    above = np.sort(probs[y == 1, 1][probs[y == 1, 1] >= t])[0]
    assert compute_metrics(y, probs, CLASSES, threshold=float(np.nextafter(above, 1)))["sensitivity"] < target


@pytest.mark.parametrize("seed", range(3))
def test_specificity_threshold_reaches_target_and_keeps_most_sensitivity(seed):
    y, probs = _val(seed=seed)
    t = choose_threshold(y, probs[:, 1], OperatingPoint("specificity", 0.9))
    m = compute_metrics(y, probs, CLASSES, threshold=t)
    assert m["specificity"] >= 0.9
    below = np.sort(probs[y == 0, 1][probs[y == 0, 1] < t])[-1]  # next negative score under t
    assert compute_metrics(y, probs, CLASSES, threshold=float(below))["specificity"] < 0.9


def test_youden_maximises_sensitivity_plus_specificity():
    y, probs = _val(seed=3)
    t = choose_threshold(y, probs[:, 1], OperatingPoint("youden"))
    m = compute_metrics(y, probs, CLASSES, threshold=t)
    p1 = probs[:, 1]
    candidates = np.unique(p1)
    called = p1[None, :] >= candidates[:, None]  # every possible cut at once
    youden = called[:, y == 1].mean(1) + (~called[:, y == 0]).mean(1)
    assert m["sensitivity"] + m["specificity"] == pytest.approx(youden.max())


def test_threshold_sits_between_scores_so_recomputed_probabilities_decide_the_same():
    y, probs = _val(seed=1)
    t = choose_threshold(y, probs[:, 1], OperatingPoint("sensitivity", 0.95))
    assert not np.isclose(probs[:, 1], t, rtol=0, atol=1e-7).any()


def test_unreachable_specificity_calls_nothing_positive():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.9, 0.1, 0.8, 0.7], np.float32)  # a negative has the top score
    t = choose_threshold(y, p1, OperatingPoint("specificity", 1.0))
    assert (p1 < t).all()


def test_binary_only_and_config_validation():
    check_binary("youden", CLASSES)
    check_binary(None, ["a", "b", "c"])
    with pytest.raises(CxrError, match="binary"):
        check_binary("youden", ["a", "b", "c"])
    assert build_config(None, {"operating_point": "sensitivity = 0.95"}).operating_point == "sensitivity=0.95"
    with pytest.raises(CxrError, match="'operating_point'"):
        build_config(None, {"operating_point": "sensitivty=0.95"})


def test_table_has_a_row_per_threshold_with_intervals():
    y, probs = _val(seed=2)
    rows = operating_point_table(y, probs, CLASSES, {"0.5": 0.5, "low": 0.2}, n_bootstrap=200)
    assert [r["name"] for r in rows] == ["0.5", "low"]
    assert rows[1]["sensitivity"] >= rows[0]["sensitivity"] and rows[1]["specificity"] <= rows[0]["specificity"]
    for r in rows:
        for k in ("sensitivity", "specificity", "ppv", "npv"):
            lo, hi = r["ci"][k]
            assert lo <= r[k] <= hi


def test_adjacent_float32_scores_keep_their_decisions():
    lo = np.float32(0.5)
    hi = np.nextafter(lo, np.float32(1))  # no float32 lies between them
    p1 = np.array([0.1, lo, hi, 0.9], np.float32)
    y = np.array([0, 0, 1, 1])
    t = choose_threshold(y, p1, OperatingPoint("sensitivity", 1.0))
    np.testing.assert_array_equal(p1 >= t, [False, False, True, True])
