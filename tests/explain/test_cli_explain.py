"""`cxr explain`, `cxr data audit-shortcuts`, `cxr data preview`, `cxr evaluate --gallery` through the real entry
point."""

import numpy as np
from PIL import Image

from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.conftest import make_class_folders
from tests.explain.test_shortcut import _write_run


def test_explain_writes_overlays_feature_maps_and_csv(blob_model, tmp_path, capsys, monkeypatch):
    run = _write_run(tmp_path, blob_model)
    images = run.parent / "data" / "test" / "opacity"
    out = tmp_path / "out"
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "explain",
        run,
        images / "marker0.png",
        images / "centre0.png",
        "--out",
        out,
        "--method",
        "gradcam++",
        "--class",
        "clear",
        "--feature-maps",
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 explained with gradcam++ on layer 'features'" in proc.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "explanations.csv",
        "opacity_centre0_feature_maps.png",
        "opacity_centre0_gradcampp.png",
        "opacity_marker0_feature_maps.png",
        "opacity_marker0_gradcampp.png",
    ]
    rows = (out / "explanations.csv").read_text().splitlines()[1:]
    assert all(",opacity,opacity," in r and ",clear," in r for r in rows)  # label, predicted; --class explained
    with Image.open(out / "opacity_marker0_feature_maps.png") as im:
        assert im.width > 800  # 8 channels per row


def test_explain_and_audit_bad_input_are_one_line_errors(blob_model, tmp_path, capsys, monkeypatch):
    run = _write_run(tmp_path, blob_model)
    image = run.parent / "data" / "test" / "clear" / "c0.png"
    cases = [
        (["explain", run, image, "--out", tmp_path / "o", "--method", "lime"], ["unknown CAM method 'lime'"]),
        (["explain", run, image, "--out", tmp_path / "o", "--class", "Covid"], ["unknown class 'Covid'"]),
        (["explain", run, image, "--out", tmp_path / "o", "--layer", "fc9"], ["no layer 'fc9'"]),
        (["explain", run, tmp_path / "missing.png", "--out", tmp_path / "o"], ["missing.png", "no such file"]),
        (["explain", tmp_path / "data", image, "--out", tmp_path / "o"], ["not a finished model"]),
        (["data", "audit-shortcuts", run, "--split", "holdout"], ["--split must be"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *args), *fragments)


def test_audit_shortcuts_prints_per_class_table(blob_model, tmp_path, capsys, monkeypatch):
    run = _write_run(tmp_path, blob_model)
    proc = run_cli_inprocess(capsys, monkeypatch, "data", "audit-shortcuts", run, "--out", tmp_path / "audit")
    assert proc.returncode == 0, proc.stderr
    assert "opacity" in proc.stdout and "uniform map puts 0.36" in proc.stdout
    assert (tmp_path / "audit" / "shortcut_test.json").is_file()


def test_evaluate_gallery_marks_wrong_predictions_and_explains_them(blob_model, tmp_path, capsys, monkeypatch):
    run = _write_run(tmp_path, blob_model)
    wrong = run.parent / "data" / "test" / "clear" / "c9.png"  # a blob filed under "clear": a certain error
    Image.fromarray(np.asarray(Image.open(run.parent / "data" / "test" / "opacity" / "centre0.png"))).save(wrong)
    proc = run_cli_inprocess(capsys, monkeypatch, "evaluate", run, "--gallery")
    assert proc.returncode == 0, proc.stderr
    for name in ("gallery_test.png", "misclassified_test.png"):
        with Image.open(run / "plots" / name) as im:
            assert im.width > 300 and im.height > 200


def test_data_preview_is_seeded_and_shows_augmentation(tmp_path, capsys, monkeypatch):
    data = make_class_folders(tmp_path / "data", n_train=4, n_test=1, size=40)
    outs = {}
    for name, extra in (("a", []), ("b", []), ("plain", ["--no-augment"])):
        outs[name] = tmp_path / f"{name}.png"
        proc = run_cli_inprocess(
            capsys,
            monkeypatch,
            "data",
            "preview",
            data,
            "--out",
            outs[name],
            "--image-size",
            "32",
            "--per-class",
            "3",
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
    assert outs["a"].read_bytes() == outs["b"].read_bytes()  # same seed, same picture
    assert outs["a"].read_bytes() != outs["plain"].read_bytes()  # augmentation visibly changes the images
    missing = run_cli_inprocess(capsys, monkeypatch, "data", "preview", tmp_path / "nope")
    assert_one_line_error(missing, "does not exist")
