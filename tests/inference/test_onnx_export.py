import shutil

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from cxr.cli import app
from cxr.data.images import find_images
from cxr.errors import CxrError
from cxr.inference import onnx_export
from cxr.inference.bundle import BUNDLE_FILE, Bundle, BundleMeta, read_bundle_file, save_bundle
from cxr.inference.onnx_export import DIGEST_KEY, ONNX_FILE, PARITY_TOLERANCE, export_onnx, weights_digest
from tests.conftest import CODECADEMY, SHARED_DATA
from tests.inference.spread_bundles import make_bundle

pytestmark = pytest.mark.skipif(not CODECADEMY.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")


def real_xrays(per_class: int = 4) -> list:
    """JPEG and PNG, RGB and grayscale, of varied sizes: the codecademy test split mixes them all."""
    return [p for d in sorted((CODECADEMY / "test").iterdir()) for p in find_images([d])[:per_class]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = make_bundle(tmp_path_factory.mktemp("onnx") / "run", image_size=64)
    return run, export_onnx(run)


def _copy(exported, tmp_path):
    return shutil.copytree(exported[0], tmp_path / "run")


def test_export_writes_model_onnx_that_matches_pytorch_on_real_xrays(exported):
    run, result = exported
    assert result.path == run / ONNX_FILE and result.max_abs_diff <= PARITY_TOLERANCE
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph)
    props = {p.key: p.value for p in graph.metadata_props}
    assert props[DIGEST_KEY] == weights_digest(read_bundle_file(run)["state_dict"])
    assert props["cxr_classes"].split(",") == ["Covid", "Normal", "Viral Pneumonia"]

    files = real_xrays()
    by_onnx = Bundle.load(run, backend="onnx").predict(files)
    by_torch = Bundle.load(run, backend="torch").predict(files)
    assert len(by_onnx.paths) == len(files) == 12
    assert by_onnx.probabilities.std(axis=0).max() > 0.01  # the model's outputs vary: the comparison means something
    assert np.abs(by_onnx.probabilities - by_torch.probabilities).max() < 1e-4
    assert by_onnx.predicted == by_torch.predicted


@pytest.mark.parametrize("input_norm", ["image", "histeq"])
def test_per_image_input_norm_travels_in_the_bundle_and_into_onnx(tmp_path, input_norm):
    run = make_bundle(tmp_path / "run", image_size=64, input_norm=input_norm)
    bundle = Bundle.load(run, backend="torch")
    assert bundle.meta.input_norm == input_norm
    files = real_xrays(2)
    by_torch = bundle.predict(files)
    export_onnx(run)
    by_onnx = Bundle.load(run, backend="onnx").predict(files)
    assert np.abs(by_onnx.probabilities - by_torch.probabilities).max() < 1e-4
    payload = read_bundle_file(run)
    del payload["meta"]["input_norm"]  # as written before input_norm existed: a per-dataset model
    torch.save(payload, run / BUNDLE_FILE)
    assert Bundle.load(run, backend="torch").meta.input_norm == "dataset"


def test_auto_prefers_a_current_onnx_file_and_falls_back_to_torch(exported, tmp_path):
    run = _copy(exported, tmp_path)
    assert Bundle.load(run).backend == "onnx"
    assert Bundle.load(run, backend="torch").backend == "torch"
    (run / ONNX_FILE).unlink()
    assert Bundle.load(run).backend == "torch"
    with pytest.raises(CxrError, match="cxr run export"):
        Bundle.load(run, backend="onnx")
    with pytest.raises(CxrError, match="unknown backend 'tensorrt'"):
        Bundle.load(run, backend="tensorrt")


def test_retrained_weights_make_the_onnx_file_stale(exported, tmp_path):
    run = _copy(exported, tmp_path)
    bundle = Bundle.load(run, backend="torch")
    with torch.no_grad():
        next(bundle.model.parameters()).add_(0.5)
    save_bundle(run, bundle.model, bundle.meta)  # like `cxr train --overwrite`: new weights, old model.onnx
    assert Bundle.load(run).backend == "torch"
    with pytest.raises(CxrError, match="other weights"):
        Bundle.load(run, backend="onnx")


def test_new_metadata_keeps_the_onnx_file_and_is_applied_on_both_backends(exported, tmp_path):
    """Calibration rewrites temperature/threshold in model.pt, not the weights: model.onnx stays valid."""
    run = _copy(exported, tmp_path)
    bundle = Bundle.load(run, backend="torch")
    meta = BundleMeta(**{**bundle.meta.to_dict(), "temperature": 3.0})
    save_bundle(run, bundle.model, meta)
    files = real_xrays(2)
    by_onnx, by_torch = Bundle.load(run).predict(files), Bundle.load(run, backend="torch").predict(files)
    assert Bundle.load(run).backend == "onnx"
    np.testing.assert_allclose(by_onnx.probabilities, by_torch.probabilities, atol=1e-4)
    cooler = Bundle.load(exported[0], backend="onnx").predict(files).probabilities
    assert by_onnx.probabilities.max() < cooler.max()  # T=3 flattened the probabilities on the onnx path too


def test_a_failed_check_leaves_no_onnx_file(exported, tmp_path, monkeypatch):
    run = _copy(exported, tmp_path)
    (run / ONNX_FILE).unlink()
    monkeypatch.setattr(onnx_export, "parity", lambda *a, **k: 0.5)
    with pytest.raises(CxrError, match="disagrees with PyTorch"):
        export_onnx(run)
    assert sorted(p.name for p in run.iterdir()) == [BUNDLE_FILE]


def test_cli_export_and_predict_with_each_backend(exported, tmp_path):
    run = _copy(exported, tmp_path)
    (run / ONNX_FILE).unlink()
    runner = CliRunner()
    files = [str(p) for p in real_xrays(1)]
    refused = runner.invoke(app, ["predict", str(run), *files, "--backend", "onnx"])
    assert refused.exit_code != 0 and "cxr run export" in str(refused.exception)
    assert runner.invoke(app, ["run", "export", str(run), "--format", "tflite"]).exit_code != 0
    exported_now = runner.invoke(app, ["run", "export", str(run), "--format", "onnx"])
    assert exported_now.exit_code == 0, exported_now.output
    assert (run / ONNX_FILE).is_file() and "max probability difference" in exported_now.output
    csvs = {}
    for backend in ("onnx", "torch", "auto"):
        out = tmp_path / f"{backend}.csv"
        result = runner.invoke(app, ["predict", str(run), *files, "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"({'onnx' if backend == 'auto' else backend} backend)" in result.output
        csvs[backend] = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(2, 3, 4))
    np.testing.assert_allclose(csvs["onnx"], csvs["torch"], atol=1e-4)


@pytest.mark.slow
def test_resnet18_at_224_matches_pytorch_on_real_xrays(tmp_path):
    run = make_bundle(tmp_path / "run", model="resnet18", image_size=224, steps=3)
    assert export_onnx(run).max_abs_diff <= PARITY_TOLERANCE
    files = real_xrays(5) + find_images([SHARED_DATA / "chest-xray-pneumonia" / "test" / "NORMAL"])[:5]
    by_onnx = Bundle.load(run, backend="onnx").predict(files)
    by_torch = Bundle.load(run, backend="torch").predict(files)
    assert len(by_onnx.paths) == 20
    assert np.abs(by_onnx.probabilities - by_torch.probabilities).max() < 1e-4


def test_the_battery_exports_a_run_once_and_again_after_new_weights(exported, tmp_path):
    """export_for_stress keeps a current model.onnx (a reused sweep trial) and replaces a stale one."""
    from cxr.evaluation.stress import export_for_stress

    run = _copy(exported, tmp_path)
    before = (run / ONNX_FILE).stat().st_mtime_ns
    assert export_for_stress(run) and (run / ONNX_FILE).stat().st_mtime_ns == before  # current: not exported again
    bundle = Bundle.load(run, backend="torch")
    with torch.no_grad():
        next(bundle.model.parameters()).add_(0.5)
    save_bundle(run, bundle.model, bundle.meta)  # new weights: the old export is stale
    assert export_for_stress(run) and Bundle.load(run).backend == "onnx"
    assert (run / ONNX_FILE).stat().st_mtime_ns != before
