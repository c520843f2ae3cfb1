"""Grad-CAM: known answer (the peak lands on the blob that decides the class), alignment, every registry model."""

import numpy as np
import pytest
import torch
from PIL import Image

from cxr.errors import CxrError
from cxr.explain.cam import CamExplainer, choose_target_layer
from cxr.explain.images import explain_array_png, explain_images
from cxr.explain.overlay import overlay_rgb
from cxr.inference.bundle import Bundle, BundleMeta
from cxr.models import available_models, create_model
from tests.explain.conftest import SIZE, blob_image, make_bundle

HEIGHT, WIDTH = 90, 150  # non-square on purpose: a transposed or unstretched heatmap cannot pass
SPOT = (0.27, 0.72)  # asymmetric: flipping either axis or transposing moves the peak far away


def assert_peak_on_spot(heatmap: np.ndarray, spot=SPOT) -> None:
    h, w = heatmap.shape
    r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(r / h - spot[0]) < 0.1 and abs(c / w - spot[1]) < 0.1, (r / h, c / w, spot)

    def heat_at(fr, fc):
        return heatmap[min(h - 1, int(fr * h)), min(w - 1, int(fc * w))]

    assert heat_at(*spot) > 0.6
    for mirrored in ((1 - spot[0], spot[1]), (spot[0], 1 - spot[1]), (1 - spot[0], 1 - spot[1])):
        assert heat_at(*mirrored) < 0.3, mirrored


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_peak_lands_on_the_deciding_blob_in_a_non_square_image(blob_model, method):
    rng = np.random.default_rng(1)
    images = [blob_image(True, rng, HEIGHT, WIDTH, SPOT) for _ in range(3)]
    explained = CamExplainer(make_bundle(blob_model), method).explain_arrays(images)
    for image, e in zip(images, explained):
        assert e.predicted == "opacity" and e.explained == "opacity", e.probabilities
        assert e.image.shape == e.heatmap.shape == (HEIGHT, WIDTH)  # the input's aspect ratio, pixel for pixel
        np.testing.assert_array_equal(e.image, image)
        assert e.cam.shape == (SIZE, SIZE) and e.layer == "features"
        assert_peak_on_spot(e.heatmap)


def test_files_explained_like_arrays_and_saved_with_labels(blob_model, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "in" / "opacity").mkdir(parents=True)
    Image.fromarray(blob_image(True, rng, HEIGHT, WIDTH, SPOT)).save(tmp_path / "in" / "opacity" / "a.png")
    Image.fromarray(blob_image(False, rng, HEIGHT, WIDTH)).save(tmp_path / "in" / "b.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    bundle = make_bundle(blob_model)
    explained = [e for e in CamExplainer(bundle).explain_paths([tmp_path / "in"]) if not isinstance(e, str)]
    by_name = {e.path.name: e for e in explained}
    assert by_name["a.png"].label == "opacity" and by_name["b.png"].label is None  # label from a class-named folder
    assert_peak_on_spot(by_name["a.png"].heatmap)

    result = explain_images(bundle, [tmp_path / "in"], tmp_path / "out", alpha=0.7)
    assert len(result.errors) == 1 and "broken.png" in result.errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "explanations.csv",
        "in_b_gradcam.png",
        "opacity_a_gradcam.png",
    ]
    rows = (tmp_path / "out" / "explanations.csv").read_text().splitlines()
    assert rows[0].startswith("path,label,predicted,probability,explained,border_fraction")
    assert any("a.png,opacity,opacity," in r for r in rows)


def test_overlay_keeps_shape_and_colours_only_where_the_heat_is():
    image = np.full((30, 70), 100, np.uint8)
    heat = np.zeros((30, 70), np.float32)
    heat[5:10, 50:60] = 1.0
    rgb = overlay_rgb(image, heat, alpha=0.6)
    assert rgb.shape == (30, 70, 3)
    assert (rgb[heat == 0] == 100).all()  # untouched X-ray where the model did not look
    assert (np.abs(rgb[heat == 1].astype(int) - 100).max(axis=-1) > 30).all()
    with pytest.raises(ValueError):
        overlay_rgb(image, heat.T)


EXPECTED_LAYER = {
    "smallnet": "features",
    "vanilla-cnn": "features",
    "resnet18": "layer4",
    "densenet121": "class_layers.relu",
    "efficientnet-b0": "_bn1",
}


@pytest.mark.parametrize("name", available_models())
def test_every_registry_model_gets_a_target_layer_and_a_heatmap(name):
    torch.manual_seed(0)
    model = create_model(name, 3).eval()
    bundle = Bundle(None, BundleMeta(name, ["a", "b", "c"], 64, 0.5, 0.25), model, {})
    if name == "dense-baseline":  # no convolutions: its only spatial map is the pooled film itself
        with pytest.raises(CxrError, match="no learnt layer with a spatial feature map"):
            CamExplainer(bundle)
        return
    if name in EXPECTED_LAYER:  # built-ins: the last layer with a spatial map, as one would pick by hand
        assert choose_target_layer(model, 64) == EXPECTED_LAYER[name]
    image = np.random.default_rng(0).integers(0, 255, (40, 90), dtype=np.uint8)
    explainer = CamExplainer(bundle)
    for cls in ("a", "c"):
        e = explainer.explain_arrays([image], class_name=cls)[0]
        assert e.explained == cls and e.heatmap.shape == (40, 90) and e.cam.shape == (64, 64)
        assert np.isfinite(e.heatmap).all() and e.heatmap.min() >= 0 and e.heatmap.max() <= 1


def test_binary_threshold_decides_the_explained_class_and_bundle_model_stays_clean(blob_model):
    bundle = make_bundle(blob_model, threshold=0.0)  # everything is "opacity" at threshold 0
    image = blob_image(False, np.random.default_rng(3), SIZE, SIZE)
    png, e = explain_array_png(bundle, image)
    assert e.predicted == "opacity" and e.explained == "opacity" and e.probabilities[1] < 0.5
    assert png.startswith(b"\x89PNG")
    assert all(not m._forward_hooks and not m._backward_hooks for m in blob_model.modules())  # CAM hooks a copy


def test_bad_requests_are_one_line_errors(blob_model):
    bundle = make_bundle(blob_model)
    with pytest.raises(CxrError, match="unknown CAM method"):
        CamExplainer(bundle, "lime")
    with pytest.raises(CxrError, match="no layer 'feature.9'"):
        CamExplainer(bundle, layer="feature.9")
    explainer = CamExplainer(bundle)
    with pytest.raises(CxrError, match="unknown class 'Covid'.*clear, opacity"):
        explainer.explain_arrays([np.zeros((8, 8), np.uint8)], class_name="Covid")
    with pytest.raises(CxrError, match="grayscale uint8"):
        explainer.explain_arrays([np.zeros((8, 8, 3), np.uint8)])
