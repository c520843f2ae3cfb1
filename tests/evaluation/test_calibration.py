"""Temperature scaling: recovers a known over-confidence, lowers ECE, is stored in the bundle and used by predict."""

import json

import numpy as np
import pytest
import torch

import cxr
from cxr.errors import CxrError
from cxr.evaluation.calibration import (
    TEMPERATURE_PRIOR_SIGMA,
    TEMPERATURE_RANGE,
    calibrate_run,
    calibration_summary,
    fit_temperature,
)
from cxr.evaluation.metrics import expected_calibration_error
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.inference.predict import apply_temperature
from tests.evaluation.runs import make_run


def _calibrated_logits(n, c, rng):
    """Logits whose softmax is the true class distribution the labels are drawn from (a calibrated model)."""
    z = rng.normal(0, 1.5, (n, c))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("c", [2, 4])
def test_fit_recovers_overconfidence_and_lowers_ece_on_held_out_data(c):
    rng = np.random.default_rng(c)
    z_val, y_val = _calibrated_logits(3000, c, rng)
    z_test, y_test = _calibrated_logits(3000, c, rng)
    overconfident = 3.0
    t = fit_temperature(overconfident * z_val, y_val)
    assert t == pytest.approx(overconfident, rel=0.15)
    before = expected_calibration_error(apply_temperature(overconfident * z_test, 1.0), y_test)[0]
    after = expected_calibration_error(apply_temperature(overconfident * z_test, t), y_test)[0]
    assert after < before / 2
    summary = calibration_summary(y_test, overconfident * z_test, t, n_bootstrap=100)
    assert summary["ece_after"] == pytest.approx(after) and summary["nll_after"] < summary["nll_before"]
    assert summary["ci"]["ece_after"][1] < summary["ci"]["ece_before"][0]  # intervals do not even overlap


def test_a_calibrated_model_keeps_temperature_near_one():
    z, y = _calibrated_logits(4000, 3, np.random.default_rng(0))
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.1)


def test_the_prior_stops_a_small_error_free_validation_set_from_sharpening_to_the_bound():
    rng = np.random.default_rng(1)
    y = np.arange(30) % 2
    z = np.stack([-(2 * y - 1) * rng.uniform(1, 4, 30), (2 * y - 1) * rng.uniform(1, 4, 30)], 1)  # all 30 right
    assert fit_temperature(z, y) < 2 * TEMPERATURE_RANGE[0]  # likelihood alone: down to the bound (flat there)
    assert 0.5 < fit_temperature(z, y, prior_sigma=TEMPERATURE_PRIOR_SIGMA) < 1.0
    z_many, y_many = _calibrated_logits(4000, 3, rng)  # thousands of images: the prior barely moves the fit
    free, with_prior = fit_temperature(3 * z_many, y_many), fit_temperature(3 * z_many, y_many, TEMPERATURE_PRIOR_SIGMA)
    assert with_prior == pytest.approx(free, rel=0.03) and free == pytest.approx(3.0, rel=0.15)


def test_bundle_temperature_is_applied_by_predict_and_old_bundles_load(tmp_path):
    run = make_run(tmp_path, steps=2, temperature=2.5)
    bundle = Bundle.load(run)
    assert bundle.meta.temperature == 2.5
    preds = bundle.predict([tmp_path / "data" / "test"])
    np.testing.assert_allclose(preds.probabilities, apply_temperature(preds.logits, 2.5), atol=1e-6)
    sharper = apply_temperature(preds.logits, 1.0)
    assert (preds.probabilities.max(1) <= sharper.max(1) + 1e-6).all()  # T > 1 softens
    payload = torch.load(run / BUNDLE_FILE, weights_only=True)
    del payload["meta"]["temperature"]  # as written before temperature existed
    torch.save(payload, run / BUNDLE_FILE)
    old = cxr.load(run)
    assert old.meta.temperature == 1.0
    np.testing.assert_allclose(old.predict([tmp_path / "data" / "test"]).probabilities, sharper, atol=1e-6)


def test_calibrate_run_rewrites_the_bundle_without_retraining(tmp_path):
    run = make_run(tmp_path, steps=25)
    weights_before = torch.load(run / BUNDLE_FILE, weights_only=True)["state_dict"]
    cal = calibrate_run(run, "sensitivity=0.9")
    meta = Bundle.load(run).meta
    assert meta.temperature == pytest.approx(cal.temperature) and meta.threshold == pytest.approx(cal.threshold)
    assert meta.extra["operating_point"] == "sensitivity=0.9"
    assert cal.summary["val_sensitivity"] >= 0.9
    payload = torch.load(run / BUNDLE_FILE, weights_only=True)
    for k, v in weights_before.items():
        assert torch.equal(payload["state_dict"][k], v)
    assert json.loads((run / "metrics.json").read_text())["calibration"]["threshold"] == pytest.approx(cal.threshold)

    again = calibrate_run(run)  # no rule given: the saved one is applied again
    assert again.operating_point == "sensitivity=0.9" and again.threshold == pytest.approx(cal.threshold)
    cleared = calibrate_run(run, "none")
    assert cleared.threshold is None and "operating_point" not in Bundle.load(run).meta.extra


def test_calibrate_refuses_operating_point_for_multiclass(tmp_path):
    run = make_run(tmp_path, classes=("a", "b", "c"), steps=2)
    with pytest.raises(CxrError, match="binary"):
        calibrate_run(run, "youden")
    with pytest.raises(CxrError, match="not understood"):
        calibrate_run(make_run(tmp_path, steps=2, seed=1), "sensitivity")


def test_training_fits_temperature_and_threshold_on_validation(tiny_dataset, tmp_path):
    from cxr.config import build_config
    from cxr.training.train import train

    cfg = build_config(
        None,
        dict(
            data=tiny_dataset,
            image_size=32,
            epochs=2,
            batch_size=8,
            num_workers=0,
            lr=3e-3,
            operating_point="sensitivity=0.9",
        ),
    )
    run = train(cfg, tmp_path / "run")
    meta = Bundle.load(run).meta
    cal = json.loads((run / "metrics.json").read_text())["calibration"]
    assert cal["split"] == "val" and cal["temperature"] == pytest.approx(meta.temperature)
    assert meta.threshold == pytest.approx(cal["threshold"]) and meta.extra["operating_point"] == "sensitivity=0.9"
    assert cal["val_sensitivity"] >= 0.9
    # the validation sensitivity holds when the saved run is re-predicted from files, as `cxr predict` would
    from cxr.evaluation.evaluate import evaluate_run

    assert evaluate_run(run, "val", n_bootstrap=0)["sensitivity"] >= 0.9
