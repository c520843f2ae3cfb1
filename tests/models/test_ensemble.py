"""Ensemble bundles: mean of the members' own calibrated probabilities, refused when members do not fit together."""

import numpy as np
import pytest
import torch

import cxr
from cxr.errors import CxrError
from cxr.inference.bundle import Bundle, BundleMeta, save_bundle
from cxr.inference.ensemble import combine_runs
from cxr.inference.onnx_export import export_onnx
from cxr.inference.predict import predict_arrays
from cxr.models import create_model

SPLITS = "path,label,split\na.png,a,train\nb.png,b,val\n"


def _member(run, seed, mean, std, temperature, classes=("a", "b", "c"), size=32, splits=SPLITS):
    torch.manual_seed(seed)
    net = create_model("smallnet", len(classes))
    with torch.no_grad():  # spread the outputs: a fresh net's are nearly uniform, which would hide a wrong average
        net.classifier[2].weight.mul_(40)
    run.mkdir(parents=True)
    (run / "splits.csv").write_text(splits)
    save_bundle(run, net, BundleMeta("smallnet", list(classes), size, mean, std, temperature=temperature))
    return net.eval()


def test_output_is_the_mean_of_each_members_own_probabilities(tmp_path):
    specs = [(0, 0.4, 0.2, 1.0), (1, 0.6, 0.3, 2.5)]
    nets = [_member(tmp_path / f"m{k}", *s) for k, s in enumerate(specs)]
    combine_runs([tmp_path / "m0", tmp_path / "m1"], tmp_path / "ens")
    bundle = cxr.load(tmp_path / "ens")
    assert (
        bundle.meta.model == "ensemble"
        and bundle.classes == ["a", "b", "c"]
        and (tmp_path / "ens/splits.csv").is_file()
    )
    x = np.random.default_rng(0).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    expected = np.mean([predict_arrays(n, x, m, s, t) for n, (_, m, s, t) in zip(nets, specs)], axis=0)
    np.testing.assert_allclose(bundle.probabilities(x), expected, atol=1e-5)
    assert not np.allclose(expected, predict_arrays(nets[0], x, 0.4, 0.2, 1.0), atol=1e-2)  # members really differ


def test_onnx_export_of_an_ensemble_matches_pytorch(tmp_path):
    for k in range(2):
        _member(tmp_path / f"m{k}", k, 0.5, 0.25, 1.0 + k)
    combine_runs([tmp_path / "m0", tmp_path / "m1"], tmp_path / "ens")
    export_onnx(tmp_path / "ens")
    x = np.random.default_rng(1).integers(0, 255, (4, 32, 32), dtype=np.uint8)
    torch_p = Bundle.load(tmp_path / "ens", backend="torch").probabilities(x)
    np.testing.assert_allclose(Bundle.load(tmp_path / "ens", backend="onnx").probabilities(x), torch_p, atol=1e-4)


@pytest.mark.parametrize(
    "other, message",
    [
        (dict(classes=("a", "b")), "same classes and image size"),
        (dict(size=48), "same classes and image size"),
        (dict(splits="path,label,split\nc.png,a,val\n"), "validated on different splits"),
    ],
)
def test_members_that_do_not_fit_together_are_refused(tmp_path, other, message):
    _member(tmp_path / "m0", 0, 0.5, 0.25, 1.0)
    _member(tmp_path / "m1", 1, 0.5, 0.25, 1.0, **other)
    with pytest.raises(CxrError, match=message):
        combine_runs([tmp_path / "m0", tmp_path / "m1"], tmp_path / "ens")


def test_one_run_or_an_ensemble_as_member_is_refused(tmp_path):
    _member(tmp_path / "m0", 0, 0.5, 0.25, 1.0)
    _member(tmp_path / "m1", 1, 0.5, 0.25, 1.0)
    with pytest.raises(CxrError, match="at least two"):
        combine_runs([tmp_path / "m0"], tmp_path / "ens")
    combine_runs([tmp_path / "m0", tmp_path / "m1"], tmp_path / "ens")
    with pytest.raises(CxrError, match="already an ensemble"):
        combine_runs([tmp_path / "ens", tmp_path / "m0"], tmp_path / "ens2")


def test_cli_combines_runs_and_explains_bad_input(capsys, monkeypatch, tmp_path):
    from PIL import Image

    from tests.cli.helpers import run_cli_inprocess

    rows = ["path,label,split"]
    for i, label in enumerate("abcabc"):
        Image.fromarray(np.full((40, 40), 40 * i, np.uint8)).save(tmp_path / f"v{i}.png")
        rows.append(f"{tmp_path / f'v{i}.png'},{label},val")
    for k in range(2):
        _member(tmp_path / f"m{k}", k, 0.5, 0.25, 1.0, splits="\n".join(rows) + "\n")
    proc = run_cli_inprocess(
        capsys, monkeypatch, "run", "ensemble", tmp_path / "m0", tmp_path / "nope", "--out", tmp_path / "e"
    )
    assert proc.returncode == 2 and "no such run directory" in proc.stderr and not (tmp_path / "e").exists()
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "run",
        "ensemble",
        tmp_path / "m0",
        tmp_path / "m1",
        "--out",
        tmp_path / "e",
        "--operating-point",
        "youden",
    )  # 3 classes: refused, and no half-made bundle is left
    assert proc.returncode == 2 and "binary" in proc.stderr and not (tmp_path / "e" / "model.pt").exists()
    proc = run_cli_inprocess(
        capsys, monkeypatch, "run", "ensemble", tmp_path / "m0", tmp_path / "m1", "--out", tmp_path / "e"
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 members, validation temperature" in proc.stdout
    assert cxr.load(tmp_path / "e").meta.temperature != 1.0  # refitted on the six val images
    proc = run_cli_inprocess(
        capsys, monkeypatch, "run", "ensemble", tmp_path / "m0", tmp_path / "m1", "--out", tmp_path / "m1"
    )
    assert proc.returncode == 2 and "already holds a model" in proc.stderr
