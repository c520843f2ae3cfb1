"""The input guard on the ONNX backend: its features come out of the same ONNX Runtime call as the logits (no second,
PyTorch pass), they score as PyTorch's do, and a model.onnx exported before the features were outputs still serves."""

import logging
import shutil

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from cxr.data.images import find_images
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.inference import bundle as bundle_module
from cxr.inference import onnx_export
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.inference.onnx_export import ONNX_FILE, OUTPUT_NAME, TAP_PREFIX, export_onnx
from cxr.serve import create_app
from tests.conftest import CODECADEMY, SHARED_DATA
from tests.inference.spread_bundles import make_bundle
from tests.inference.test_guard import not_chest_films

pytestmark = pytest.mark.skipif(not CODECADEMY.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A smallnet with its guard, exported with the guard's features as outputs; and films, real and not."""
    root = tmp_path_factory.mktemp("onnx_guard")
    run = make_bundle(root / "run", image_size=64, guard=True)
    export_onnx(run)
    files = [p for d in sorted((CODECADEMY / "test").iterdir()) for p in find_images([d])[:3]]
    return run, files + find_images([not_chest_films(root / "odd")])


def old_style_copy(run, tmp_path, monkeypatch):
    """The run with model.onnx as cxr exported it before the guard's features were outputs (logits only)."""
    old = shutil.copytree(run, tmp_path / "old")
    (old / ONNX_FILE).unlink()
    with monkeypatch.context() as m:
        m.setattr(onnx_export, "feature_taps", lambda *a, **k: [])
        export_onnx(old)
    assert [o.name for o in onnx.load(str(old / ONNX_FILE)).graph.output] == [OUTPUT_NAME]
    return old


def no_torch_features(*_a, **_k):
    raise AssertionError("the guard ran a PyTorch forward pass on the ONNX backend")


def test_the_export_outputs_the_guards_features_and_the_same_logits(guarded):
    run, files = guarded
    graph = onnx.load(str(run / ONNX_FILE))
    onnx.checker.check_model(graph)
    names = [o.name for o in graph.graph.output]
    by_onnx = Bundle.load(run, backend="onnx")
    assert names == [OUTPUT_NAME] + [f"{TAP_PREFIX}{i}" for i in range(len(by_onnx.guard.taps))]
    assert by_onnx.onnx.tap_dims == [t.means.shape[1] for t in by_onnx.guard.taps] == [64, 128, 96]
    images = np.random.default_rng(1).integers(0, 256, (4, 64, 64), dtype=np.uint8)
    plain = by_onnx.onnx.logits(images)
    logits, features = by_onnx.onnx.logits_and_features(images)
    np.testing.assert_array_equal(logits, plain)
    np.testing.assert_allclose(plain, Bundle.load(run, backend="torch").logits(images), atol=1e-5)
    assert [f.shape for f in features] == [(4, 64), (4, 128), (4, 96)] and all(f.dtype == np.float64 for f in features)


def test_onnx_guard_scores_equal_the_pytorch_path_without_a_pytorch_pass(guarded, monkeypatch):
    run, files = guarded
    by_torch = Bundle.load(run, backend="torch").predict(files)
    monkeypatch.setattr(bundle_module, "features_and_logits", no_torch_features)
    by_onnx = Bundle.load(run, backend="onnx").predict(files)
    assert by_onnx.paths == by_torch.paths and len(files) == 19
    assert (
        not by_torch.in_distribution.all() and by_torch.in_distribution.any()
    )  # both verdicts occur: it means something
    np.testing.assert_allclose(by_onnx.ood_score, by_torch.ood_score, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(by_onnx.in_distribution, by_torch.in_distribution)
    assert by_onnx.ood_reason == by_torch.ood_reason
    np.testing.assert_allclose(by_onnx.probabilities, by_torch.probabilities, atol=1e-5)


def test_tta_on_onnx_reads_the_guard_from_onnx_too(guarded, monkeypatch):
    run, files = guarded
    by_torch = Bundle.load(run, backend="torch").predict(files[:4], tta=True)
    monkeypatch.setattr(bundle_module, "features_and_logits", no_torch_features)
    by_onnx = Bundle.load(run, backend="onnx").predict(files[:4], tta=True)
    np.testing.assert_allclose(by_onnx.ood_score, by_torch.ood_score, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_onnx.probabilities, by_torch.probabilities, atol=1e-5)


def test_an_old_style_onnx_file_still_serves_and_says_once_to_export_again(guarded, tmp_path, monkeypatch, caplog):
    run, files = guarded
    old = old_style_copy(run, tmp_path, monkeypatch)
    bundle = Bundle.load(old, backend="onnx")
    assert bundle.backend == "onnx" and bundle.onnx.tap_dims == []
    with caplog.at_level(logging.WARNING, logger=bundle_module.log.name):
        first, second = bundle.predict(files[:3]), bundle.predict(files[3:6])
    told = [r.getMessage() for r in caplog.records if "guard's features" in r.getMessage()]
    assert len(told) == 1 and f"cxr run export {old}" in told[0]
    expected = Bundle.load(run, backend="torch").predict(files[:6])
    np.testing.assert_allclose(np.concatenate([first.ood_score, second.ood_score]), expected.ood_score, rtol=1e-4)

    with TestClient(create_app(old, backend="onnx", explain=False)) as client:
        r = client.post("/v1/predict", files={"file": (files[0].name, files[0].read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "onnx" and body["study_id"]
    assert body["ood_score"] == pytest.approx(float(expected.ood_score[0]), rel=1e-4)
    with pytest.raises(CxrError, match="cxr run export"):
        bundle.onnx.logits_and_features(np.zeros((1, 64, 64), np.uint8))


def test_features_for_another_guard_are_not_used(guarded, monkeypatch):
    """Outputs whose widths differ from the guard's (a hand-edited file) fall back to the PyTorch features."""
    run, files = guarded
    bundle = Bundle.load(run, backend="onnx")
    bundle.onnx.tap_dims = [1, 2, 3]
    calls = []
    real = bundle_module.features_and_logits
    monkeypatch.setattr(bundle_module, "features_and_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    scores = bundle.predict(files[:2]).ood_score
    assert calls and np.allclose(scores, Bundle.load(run, backend="torch").predict(files[:2]).ood_score, rtol=1e-4)


def test_served_answers_use_one_onnx_call(guarded, monkeypatch):
    run, files = guarded
    expected = Bundle.load(run, backend="torch").predict(files[:1])
    monkeypatch.setattr(bundle_module, "features_and_logits", no_torch_features)
    with TestClient(create_app(run, backend="onnx", explain=False, store_images=False)) as client:
        r = client.post("/v1/predict", files={"file": (files[0].name, files[0].read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["ood_score"] == pytest.approx(float(expected.ood_score[0]), rel=1e-4)


def test_features_that_disagree_with_pytorch_leave_no_onnx_file(guarded, tmp_path, monkeypatch):
    run = shutil.copytree(guarded[0], tmp_path / "run")
    (run / ONNX_FILE).unlink()
    before = sorted(p.name for p in run.iterdir())
    monkeypatch.setattr(onnx_export, "feature_parity", lambda *a, **k: 0.5)
    with pytest.raises(CxrError, match="guard features disagree"):
        export_onnx(run)
    assert sorted(p.name for p in run.iterdir()) == before and BUNDLE_FILE in before


def test_the_onnx_input_is_normalise_to_the_bit(guarded):
    predictor = Bundle.load(guarded[0], backend="onnx").onnx
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    images[0, :4] = np.arange(256).reshape(4, 64)  # every value once
    expected = normalise(images, predictor.mean, predictor.std).numpy()
    got = predictor.network_input(images)
    assert got.dtype == np.float32 and got.shape == (3, 1, 64, 64) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, expected)
    as_float = images.astype(np.float32)  # not uint8: normalise itself
    np.testing.assert_array_equal(predictor.network_input(as_float), expected)
