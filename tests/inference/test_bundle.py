import numpy as np
import pytest
import torch
from PIL import Image

import cxr
from cxr.errors import CxrError
from cxr.inference.bundle import BUNDLE_FILE, Bundle, BundleMeta, save_bundle
from cxr.inference.predict import predict_arrays
from cxr.models import create_model
from cxr.models.ensemble import ENSEMBLE, ensemble_from_specs
from tests.conftest import synthetic_image


def _bundle(tmp_path, threshold=None):
    torch.manual_seed(0)
    model = create_model("smallnet", 2).eval()
    meta = BundleMeta("smallnet", ["normal", "pneumonia"], 32, mean=0.3, std=0.2, threshold=threshold)
    save_bundle(tmp_path, model, meta)
    return model


def test_bundle_loads_weights_only_and_predicts_like_the_model(tmp_path):
    model = _bundle(tmp_path)
    payload = torch.load(tmp_path / BUNDLE_FILE, weights_only=True)
    assert payload["meta"]["classes"] == ["normal", "pneumonia"] and payload["meta"]["image_size"] == 32
    rng = np.random.default_rng(0)
    imgs = np.stack([synthetic_image(i % 2, rng, 32) for i in range(4)])
    (tmp_path / "in").mkdir()
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / "in" / f"{i}.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"nope")

    preds = cxr.load(tmp_path).predict([tmp_path / "in"])
    assert [p.name for p in preds.paths] == ["0.png", "1.png", "2.png", "3.png"]
    assert len(preds.errors) == 1 and "broken.png" in preds.errors[0]
    np.testing.assert_allclose(preds.probabilities, predict_arrays(model, imgs, 0.3, 0.2), atol=1e-6)
    np.testing.assert_allclose(preds.probabilities.sum(1), 1, atol=1e-5)
    preds.write_csv(tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "path,predicted,p_normal,p_pneumonia" and len(lines) == 5


def test_threshold_in_bundle_decides_binary_prediction(tmp_path):
    _bundle(tmp_path, threshold=0.0)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.png")
    assert cxr.load(tmp_path).predict([tmp_path / "x.png"]).predicted == ["pneumonia"]


def test_unfinished_or_foreign_runs_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CxrError, match="not a finished model.*made by `cxr train`"):
        Bundle.load(tmp_path / "run")
    with pytest.raises(CxrError, match="no such run"):
        Bundle.load(tmp_path / "missing")
    (tmp_path / "run" / BUNDLE_FILE).write_bytes(b"junk")
    with pytest.raises(CxrError, match="not a readable cxr model"):
        Bundle.load(tmp_path / "run")
    torch.save({"state_dict": {}}, tmp_path / "run" / BUNDLE_FILE)
    with pytest.raises(CxrError, match="not a cxr model bundle"):
        Bundle.load(tmp_path / "run")


def test_weights_of_another_layout_are_a_one_line_error(tmp_path):
    _bundle(tmp_path)
    payload = torch.load(tmp_path / BUNDLE_FILE, weights_only=True)
    payload["state_dict"]["features.0.0.bias"] = torch.zeros(16)  # as if saved by a version whose conv had a bias
    payload["cxr_version"] = "0.1.0"
    torch.save(payload, tmp_path / BUNDLE_FILE)
    with pytest.raises(CxrError, match=r"do not fit this cxr's 'smallnet' \(Unexpected key.*saved by cxr 0.1.0") as e:
        Bundle.load(tmp_path)
    assert "\n" not in str(e.value)


def _resave_as_version(run, version: str) -> None:
    payload = torch.load(run / BUNDLE_FILE, weights_only=True)
    payload["cxr_version"] = version
    torch.save(payload, run / BUNDLE_FILE)


def test_a_network_changed_since_the_saving_version_is_refused_not_run(tmp_path):
    meta = BundleMeta("resnet18", ["a", "b"], 32, mean=0.3, std=0.2)
    (tmp_path / "r").mkdir()
    (tmp_path / "s").mkdir()
    save_bundle(tmp_path / "r", create_model("resnet18", 2), meta)
    Bundle.load(tmp_path / "r")  # this version's own save loads
    _resave_as_version(tmp_path / "r", "0.2.0")  # same tensors, but 0.2's ResNet stem had stride 1
    with pytest.raises(CxrError, match=r"'resnet18' was saved by cxr 0.2.0, and cxr 0.3.0 changed .*retrain") as e:
        Bundle.load(tmp_path / "r")
    assert "\n" not in str(e.value)
    members = [
        dict(model="smallnet", mean=0.3, std=0.2, temperature=1.0),
        dict(model="resnet18", mean=0.3, std=0.2, temperature=1.0),
    ]
    ens_meta = BundleMeta(ENSEMBLE, ["a", "b"], 32, mean=0.0, std=1.0, extra={"members": members})
    (tmp_path / "e").mkdir()
    save_bundle(tmp_path / "e", ensemble_from_specs(members, 2), ens_meta)
    _resave_as_version(tmp_path / "e", "0.2.0")  # an ensemble with a member whose network changed
    with pytest.raises(CxrError, match="'resnet18' was saved by cxr 0.2.0"):
        Bundle.load(tmp_path / "e")
    _bundle(tmp_path / "s")  # smallnet did not change: its 0.2 bundles still load
    _resave_as_version(tmp_path / "s", "0.2.0")
    assert Bundle.load(tmp_path / "s").meta.model == "smallnet"


def test_cli_predict_with_no_readable_image_is_an_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from tests.cli.helpers import run_cli_inprocess

    (tmp_path / "run").mkdir()
    _bundle(tmp_path / "run")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"nope")
    proc = run_cli_inprocess(
        capsys, monkeypatch, "predict", tmp_path / "run", tmp_path / "in", "--out", tmp_path / "p.csv"
    )
    assert proc.returncode == 2 and "no readable image among the inputs (1 skipped)" in proc.stderr
    assert "skipped" in proc.stderr and not (tmp_path / "p.csv").exists()
