import pytest
import torch

from cxr.errors import CxrError
from cxr.models import available_models, count_parameters, create_model, register_model


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_model_maps_one_channel_to_class_logits(name, num_classes):
    model = create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 80))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_registry_contents_and_sizes():
    assert {"smallnet", "vanilla-cnn", "resnet18", "densenet121", "efficientnet-b0"} <= set(available_models())
    assert 10_000 < count_parameters(create_model("smallnet", 2)) < 200_000
    assert count_parameters(create_model("resnet18", 2)) > 10_000_000


def test_unknown_model_and_double_registration():
    with pytest.raises(CxrError, match="unknown model 'vgg99'"):
        create_model("vgg99", 2)
    with pytest.raises(ValueError, match="registered twice"):
        register_model("smallnet", "dup")(lambda c, n: None)
