"""The pretrained smallnets shipped in the package (cxr/weights/) load as start points and as models, and still
classify radiographs."""

import numpy as np
import pytest

import cxr
from cxr.data.images import find_images
from cxr.models import create_model
from cxr.models.pretrained import RADIOGRAPHY_FILE, SHIPPED
from cxr.models.weights import load_matching_weights
from tests.conftest import SHARED_DATA

WEIGHTS = RADIOGRAPHY_FILE  # `--pretrained radiography`
RADIOGRAPHY_TEST = SHARED_DATA / "covid19-radiography" / "test"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_tensor_loads_and_a_two_class_head_is_left_out(name):
    report = load_matching_weights(create_model("smallnet", 3), SHIPPED[name].path)
    assert not report.not_loaded and not report.unused
    report = load_matching_weights(create_model("smallnet", 2), SHIPPED[name].path)
    assert set(report.not_loaded) == {"classifier.2.weight", "classifier.2.bias"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_file_is_a_bundle_with_its_classes_and_normalisation(name):
    bundle = cxr.load(SHIPPED[name].path)
    assert bundle.classes == ["COVID", "Normal", "Viral Pneumonia"] and bundle.meta.image_size == 224
    assert 0.3 < bundle.meta.mean < 0.7 and 0.1 < bundle.meta.std < 0.4


@pytest.mark.skipif(not RADIOGRAPHY_TEST.is_dir(), reason="needs ../shared/data")
def test_it_classifies_radiography_test_images():
    """Measured 0.975 on all 1,538 test images (benchmarks/results/radiography.json, the entry whose weights_sha256 is
    this file's); 20 per class here."""
    bundle = cxr.load(WEIGHTS)
    paths, labels = [], []
    for label, name in enumerate(bundle.classes):
        files = find_images([RADIOGRAPHY_TEST / name])[:20]
        paths += files
        labels += [label] * len(files)
    pred = bundle.predict(paths)
    accuracy = float(np.mean(pred.probabilities.argmax(1) == np.array(labels)))
    assert accuracy >= 0.85, accuracy
