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


def test_image_input_norm_removes_brightness_and_contrast_and_keeps_the_registry_layout():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 48, 48)
    brighter = 2.5 * x + 0.7  # another scanner's gain and offset
    per_image = create_model("smallnet", 2, input_norm="image").eval()
    per_dataset = create_model("smallnet", 2).eval()
    per_dataset.load_state_dict(per_image.state_dict())  # same keys: weights files move between the two
    with torch.no_grad():
        torch.testing.assert_close(per_image(brighter), per_image(x), atol=1e-4, rtol=1e-4)
        assert (per_dataset(brighter) - per_dataset(x)).abs().max() > 1e-2  # the default does see the change
    with pytest.raises(CxrError, match="unknown input_norm 'batch'"):
        create_model("smallnet", 2, input_norm="batch")


def test_histeq_input_norm_removes_gamma_too_and_keeps_the_spatial_content():
    torch.manual_seed(0)
    x = torch.randint(0, 16, (3, 1, 48, 48)).float() / 15  # 16 grey levels: gamma keeps them apart in 256 bins
    other_scanner = 3.0 * x**2 + 0.5  # another gain, offset and gamma
    equalised = create_model("smallnet", 2, input_norm="histeq").eval()
    standardised = create_model("smallnet", 2, input_norm="image").eval()
    standardised.load_state_dict(equalised.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(equalised(other_scanner), equalised(x), atol=1e-5, rtol=1e-5)
        assert (standardised(other_scanner) - standardised(x)).abs().max() > 1e-3  # gamma survives standardising
        assert (equalised(x.flip(-1)) - equalised(x)).abs().max() > 1e-3  # where things are still matters
