"""The input guard: inputs that are not chest films are flagged; the model's own kind of film is not."""

import csv
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cxr
from cxr.cli import app
from cxr.data.images import ImageInfo, describe_image, find_images, load_grayscale
from cxr.errors import CxrError
from cxr.evaluation.calibration import calibrate_run
from cxr.inference.bundle import BUNDLE_FILE, Bundle, BundleMeta, read_bundle_file, save_bundle
from cxr.inference.guard import (
    MAX_ASPECT,
    MAX_COLOURFULNESS,
    InputGuard,
    cheap_checks,
    checks_the_training_films_fail,
    feature_taps,
    features_and_logits,
)
from cxr.inference.guard_fit import fit_guard, fit_run_guard
from cxr.inference.onnx_export import export_onnx
from cxr.models import available_models, create_model
from cxr.models.ensemble import ENSEMBLE, ensemble_from_specs
from tests.conftest import CODECADEMY, SHARED_DATA, synthetic_image
from tests.inference.spread_bundles import make_bundle

needs_data = pytest.mark.skipif(not CODECADEMY.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")


def not_chest_films(folder):
    """The inputs a user fed cxr 0.5, which answered each with confidence, plus noise and natural photographs."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(folder / "black_square.png")
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(folder / "one_pixel.png")
    Image.fromarray(rng.integers(0, 255, (3, 5000), dtype=np.uint8)).save(folder / "sliver.png")
    Image.fromarray(rng.integers(0, 65535, (300, 300)).astype(np.uint16)).save(folder / "noise_16bit.png")
    Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)).save(folder / "noise_8bit.png")
    Image.fromarray(np.full((64, 64), np.nan, np.float32)).save(folder / "nan.tif")
    Image.fromarray(data.astronaut()).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.jpg")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    return folder


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory):
    """A smallnet fitted briefly on codecademy films, its guard fitted on the whole training split (splits.csv)."""
    if not CODECADEMY.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA}")
    run = make_bundle(tmp_path_factory.mktemp("guard") / "run", image_size=96)
    rows = [("path", "label", "split")]
    for c in sorted(d.name for d in (CODECADEMY / "train").iterdir()):
        files = find_images([CODECADEMY / "train" / c])
        cut = int(len(files) * 0.85)
        rows += [(str(p), c, "train") for p in files[:cut]] + [(str(p), c, "val") for p in files[cut:]]
    with open(run / "splits.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    fit_run_guard(run)
    return run


@needs_data
def test_inputs_that_are_not_chest_films_are_flagged(guarded_run, tmp_path):
    preds = cxr.load(guarded_run).predict([not_chest_films(tmp_path / "odd")])
    verdicts = {p.name: (bool(ok), why) for p, ok, why in zip(preds.paths, preds.in_distribution, preds.ood_reason)}
    assert len(verdicts) == 10 and not preds.errors
    flagged = {name for name, (ok, _) in verdicts.items() if not ok}
    assert flagged == set(verdicts), {name: v for name, v in verdicts.items() if v[0]}
    assert "under 64 on a side" in verdicts["one_pixel.png"][1] and "under 64" in verdicts["sliver.png"][1]
    assert "nearly constant" in verdicts["black_square.png"][1] and "NaN" in verdicts["nan.tif"][1]
    assert "CMYK" in verdicts["cmyk.jpg"][1]


@needs_data
def test_few_of_the_models_own_test_films_are_flagged(guarded_run):
    preds = cxr.load(guarded_run).predict([CODECADEMY / "test"])
    assert len(preds.paths) == 66
    assert preds.flagged <= 0.05 * 66, [r for r in preds.ood_reason if r]
    # codecademy's films carry coloured overlays: the colour check describes this collection and is off for it
    assert "colour" in Bundle.load(guarded_run).guard.fitted["checks_off"]


@needs_data
def test_predict_csv_and_reject_ood_on_the_command_line(guarded_run, tmp_path):
    odd = not_chest_films(tmp_path / "odd")
    films = tmp_path / "films"
    films.mkdir()
    for p in find_images([CODECADEMY / "test" / "Normal"])[:3]:
        shutil.copy(p, films / p.name)
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(guarded_run), str(odd), str(films), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert {"ood_score", "in_distribution", "ood_reason"} <= set(rows[0])
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert (
        by_name["black_square.png"]["in_distribution"] == "false"
        and float(by_name["black_square.png"]["ood_score"]) > 0
    )
    assert sum(r["in_distribution"] == "true" for r in rows) >= 2  # real films pass
    result = runner.invoke(
        app, ["predict", str(guarded_run), str(odd), str(films), "--reject-ood", "--out", str(tmp_path / "kept.csv")]
    )
    kept = list(csv.DictReader(open(tmp_path / "kept.csv")))
    assert result.exit_code == 0 and kept and all(r["in_distribution"] == "true" for r in kept)
    assert "left out" in result.output


@needs_data
def test_onnx_backend_gives_the_same_verdicts(guarded_run, tmp_path):
    run = shutil.copytree(guarded_run, tmp_path / "run")
    export_onnx(run)
    odd = not_chest_films(tmp_path / "odd")
    onnx_bundle = Bundle.load(run, backend="onnx")
    assert onnx_bundle.backend == "onnx"
    a = Bundle.load(run, backend="torch").predict([odd, CODECADEMY / "test" / "Covid"])
    b = onnx_bundle.predict([odd, CODECADEMY / "test" / "Covid"])
    np.testing.assert_allclose(a.ood_score, b.ood_score, rtol=1e-5)
    np.testing.assert_array_equal(a.in_distribution, b.in_distribution)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)


@needs_data
def test_recalibration_keeps_the_guard(guarded_run, tmp_path):
    run = shutil.copytree(guarded_run, tmp_path / "run")
    before = Bundle.load(run).guard
    (run / "config.yaml").write_text(f"data: {CODECADEMY}\nimage_size: 64\n")
    calibrate_run(run)
    after = Bundle.load(run).guard
    assert after is not None and after.threshold == before.threshold
    np.testing.assert_array_equal(after.taps[2].means, before.taps[2].means)


def test_old_bundles_without_a_guard_predict_as_before(tmp_path):
    torch.manual_seed(0)
    save_bundle(tmp_path, create_model("smallnet", 2), BundleMeta("smallnet", ["a", "b"], 32, 0.5, 0.25))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.png")
    preds = cxr.load(tmp_path).predict([tmp_path / "x.png"])
    assert preds.in_distribution is None and preds.flagged == 0
    result = CliRunner().invoke(app, ["predict", str(tmp_path), str(tmp_path / "x.png")])
    assert result.exit_code == 0 and "has no input guard" in result.output and "cxr run guard" in result.output


def test_guard_without_splits_is_a_one_line_error(tmp_path):
    save_bundle(tmp_path, create_model("smallnet", 2), BundleMeta("smallnet", ["a", "b"], 32, 0.5, 0.25))
    with pytest.raises(CxrError, match="no splits.csv"):
        fit_run_guard(tmp_path)


def test_a_guard_of_an_unknown_format_is_refused(tmp_path):
    save_bundle(tmp_path, create_model("smallnet", 2), BundleMeta("smallnet", ["a", "b"], 32, 0.5, 0.25))
    payload = read_bundle_file(tmp_path)
    payload["guard"] = {"format": "cxr-guard/99"}
    torch.save(payload, tmp_path / BUNDLE_FILE)
    with pytest.raises(CxrError, match="cxr run guard RUN"):
        Bundle.load(tmp_path)


def test_threshold_passes_99_percent_of_validation_and_flags_far_points():
    rng = np.random.default_rng(0)

    def films(n, shift=0.0):  # two taps, two classes 3 apart
        y = np.repeat([0, 1], n)
        return [rng.normal(3 * y[:, None] + shift, 1, (2 * n, d)) for d in (8, 4)], y

    train, labels = films(200)
    val, _ = films(300)
    guard = InputGuard.fit(train, labels, val)
    assert guard.fitted["pass_rate"] == pytest.approx(0.99, abs=0.005)
    far, _ = films(10, shift=12.0)
    assert (guard.scores(far) > guard.threshold).all()
    only_one_tap_far = [far[0], films(10)[0][1]]  # the largest distance over taps decides
    assert (guard.scores(only_one_tap_far) > guard.threshold).all()
    fresh, _ = films(500)
    assert 0.95 <= (guard.scores(fresh) <= guard.threshold).mean() <= 1.0


def test_a_check_most_training_films_fail_is_turned_off():
    images = np.random.default_rng(0).integers(0, 255, (10, 16, 16), dtype=np.uint8)
    images[0] = 7  # one blank film in ten: 10 % > 1 %, so "constant" describes this collection too
    assert checks_the_training_films_fail(images, [None] * 10) == ["constant"]
    assert checks_the_training_films_fail(images[1:], [None] * 9) == []


@pytest.mark.parametrize("name", available_models())
def test_every_registry_model_and_an_ensemble_give_features_at_three_taps(name):
    net = create_model(name, 3).eval()
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    feats, logits = features_and_logits(net, feature_taps(net, name), x, 0.5, 0.25)
    assert len(feats) == (1 if name == "dense-baseline" else 3)  # a network without convolutions: the head alone
    assert all(f.shape[0] == 2 and f.ndim == 2 and f.shape[1] >= 8 for f in feats)
    assert logits.shape == (2, 3)
    with torch.no_grad():  # the same forward pass: the hooks do not change the output
        from cxr.data.transforms import normalise

        np.testing.assert_allclose(logits, net(normalise(x, 0.5, 0.25)).numpy(), atol=1e-5)


def test_ensemble_features_are_the_members_taps_together():
    specs = [{"model": "smallnet", "mean": 0.5, "std": 0.25, "temperature": 1.0}] * 2
    ens = ensemble_from_specs(specs, 2).eval()
    x = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    feats, _ = features_and_logits(ens, feature_taps(ens, ENSEMBLE, specs), x, 0.0, 1.0)
    single, _ = features_and_logits(ens.members[0], feature_taps(ens.members[0], "smallnet"), x, 0.5, 0.25)
    assert len(feats) == 6
    for a, b in zip(feats[:3], single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_describe_image_reads_size_colour_and_nan_without_moving_a_stream(tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "colour.png")
    Image.fromarray(data.astronaut()).convert("L").convert("RGB").save(tmp_path / "gray_rgb.jpg")
    Image.fromarray(np.full((5, 7), np.nan, np.float32)).save(tmp_path / "nan.tif")
    assert describe_image(tmp_path / "colour.png").colourfulness > 40
    gray = describe_image(tmp_path / "gray_rgb.jpg")
    assert gray.colourfulness < 3 and (gray.width, gray.height) == (512, 512) and gray.mode == "RGB"
    nan = describe_image(tmp_path / "nan.tif")
    assert nan.nonfinite and (nan.width, nan.height) == (7, 5)
    with open(tmp_path / "colour.png", "rb") as f:
        describe_image(f)
        assert f.tell() == 0


def _gray_film(i: int, rng: np.random.Generator, height: int = 96, width: int = 96) -> np.ndarray:
    """A synthetic gray film of class i % 2 (a bright blob top-left or bottom-right), `height` x `width` pixels."""
    return np.asarray(
        Image.fromarray(synthetic_image(i % 2, rng, 96)).resize((width, height), Image.Resampling.BILINEAR)
    )


@pytest.fixture(scope="module")
def gray_guarded_run(tmp_path_factory):
    """A seeded smallnet whose guard is fitted on synthetic gray films read from their files, so that no cheap check
    describes the collection and every one stays on (codecademy's coloured overlays turn the colour check off)."""
    root = tmp_path_factory.mktemp("gray-guard")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(48):
        paths.append(root / f"film{i:02d}.png")
        Image.fromarray(_gray_film(i, rng)).save(paths[-1])
    images, labels = np.stack([load_grayscale(p, 64) for p in paths]), np.arange(48) % 2
    torch.manual_seed(0)
    net = create_model("smallnet", 2).eval()
    meta = BundleMeta("smallnet", ["a", "b"], 64, 0.5, 0.25)
    guard = fit_guard(net, meta, images[:32], labels[:32], images[32:], paths[:32])
    assert guard.fitted["checks_off"] == []  # gray films of a usual size: the colour and aspect checks are on
    (root / "run").mkdir()
    save_bundle(root / "run", net, meta, guard)
    return root


def test_a_colour_image_and_a_strip_of_film_are_flagged_when_the_checks_are_on(gray_guarded_run, tmp_path):
    """The colour and aspect checks, which codecademy's guard never reaches (colour is off there; the sliver is too
    small first): each fires alone, on an image large enough for the size check, while the films themselves pass."""
    rng = np.random.default_rng(1)
    film = _gray_film(0, rng)
    tinted = np.stack([film, film * 0.6, film * 0.3], axis=-1).astype(np.uint8)  # a sepia/orange photograph of it
    Image.fromarray(tinted).save(tmp_path / "colour.png")
    Image.fromarray(film).convert("RGB").save(tmp_path / "gray_rgb.png")  # RGB mode but gray: not colour
    Image.fromarray(_gray_film(0, rng, height=320)).save(tmp_path / "tall.png")  # 96 x 320: 3.3:1
    Image.fromarray(_gray_film(1, rng, width=320)).save(tmp_path / "wide.png")
    Image.fromarray(_gray_film(0, rng, height=280)).save(tmp_path / "long_but_within.png")  # 2.9:1
    for name in ("film00.png", "film01.png"):  # two of the training films, as they are on disk
        shutil.copy(gray_guarded_run / name, tmp_path / name)
    assert describe_image(tmp_path / "colour.png").colourfulness > MAX_COLOURFULNESS
    preds = cxr.load(gray_guarded_run / "run").predict([tmp_path])
    why = {
        p.name: ("" if ok else reason) for p, ok, reason in zip(preds.paths, preds.in_distribution, preds.ood_reason)
    }
    assert len(why) == 7 and not preds.errors

    assert re.fullmatch(r"a colour image \(colourfulness \d+\); radiographs are gray", why["colour.png"]), why
    assert why["tall.png"] == "aspect ratio 3.3:1, beyond 1:3" and why["wide.png"] == "aspect ratio 3.3:1, beyond 1:3"
    assert "aspect" not in why["long_but_within.png"] and "colour" not in why["gray_rgb.png"]
    assert why["film00.png"] == why["film01.png"] == "", why  # the model's own kind of film passes


def test_the_aspect_and_colour_limits_and_a_check_turned_off():
    """At the limits: 1:3 and colourfulness 20 pass, just beyond them fail; a check the training films fail is off."""
    film = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)

    def names(width, height, colour=0.0):
        return [name for name, _ in cheap_checks(film, ImageInfo(width, height, "RGB", colour, False))]

    assert names(100, int(100 * MAX_ASPECT)) == [] and names(100, 301) == ["aspect"] and names(301, 100) == ["aspect"]
    assert names(20, 100) == ["small"]  # too small: the size check speaks, not the aspect check
    assert names(512, 512, MAX_COLOURFULNESS) == [] and names(512, 512, MAX_COLOURFULNESS + 0.5) == ["colour"]
    info = ImageInfo(512, 512, "RGB", 40.0, False)
    taps = [np.zeros((1, 2))]
    on = InputGuard([], 1.0, {"checks_off": []})
    on.scores = lambda features: np.zeros(len(features[0]))  # the feature distance is not what is tested here
    off = InputGuard([], 1.0, {"checks_off": ["colour"]})
    off.scores = on.scores
    flagged = on.assess(film[None], taps, [info])
    assert not flagged.in_distribution[0] and flagged.reasons[0].startswith("a colour image (colourfulness 40)")
    passed = off.assess(film[None], taps, [info])
    assert passed.in_distribution[0] and passed.reasons == [""]
