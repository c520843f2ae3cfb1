import pytest
import torch

from cxr.errors import CxrError
from cxr.inference.bundle import BundleMeta, save_bundle
from cxr.models import create_model, model_spec
from cxr.models.weights import freeze_backbone, keep_frozen_norms_in_eval, load_matching_weights


def test_bundle_weights_load_except_a_head_of_another_size(tmp_path):
    torch.manual_seed(0)
    source = create_model("smallnet", 3)
    save_bundle(tmp_path, source, BundleMeta("smallnet", ["a", "b", "c"], 32, 0.5, 0.2))
    target = create_model("smallnet", 2)
    report = load_matching_weights(target, tmp_path)  # a run directory
    assert set(report.not_loaded) == {"classifier.2.weight", "classifier.2.bias"}
    assert "shape (3, 96) vs (2, 96)" in report.not_loaded["classifier.2.weight"]
    assert len(report.loaded) == len(target.state_dict()) - 2
    torch.testing.assert_close(target.features[0][0].weight, source.features[0][0].weight)
    assert "loaded" in report.summary() and "classifier.2.weight" in report.summary()


def test_lightning_checkpoint_and_plain_state_dict(tmp_path):
    source = create_model("smallnet", 2)
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, tmp_path / "x.ckpt")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    for f in ("x.ckpt", "plain.pt"):
        target = create_model("smallnet", 2)
        report = load_matching_weights(target, tmp_path / f)
        assert not report.not_loaded
        torch.testing.assert_close(target.classifier[2].weight, source.classifier[2].weight)


def test_foreign_and_mismatched_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CxrError, match="not a readable"):
        load_matching_weights(create_model("smallnet", 2), tmp_path / "junk.pt")
    torch.save(create_model("vanilla-cnn", 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(CxrError, match="only 0 of 122 tensors .* match this model"):
        load_matching_weights(create_model("resnet18", 2), tmp_path / "other.pt")
    torch.save(create_model("smallnet", 2).state_dict(), tmp_path / "small.pt")  # a few tensors fit by chance
    with pytest.raises(CxrError, match=r"only [1-9]\d* of \d+ tensors .* another architecture"):
        load_matching_weights(create_model("vgg16", 2), tmp_path / "small.pt")
    with pytest.raises(CxrError, match="not found"):
        load_matching_weights(create_model("smallnet", 2), tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["smallnet", "resnet18", "densenet121", "efficientnet-b0"])
def test_freeze_backbone_leaves_only_the_head_trainable(name):
    model = create_model(name, 2)
    head = model_spec(name).head
    trainable = freeze_backbone(model, head)
    assert trainable and all(n.startswith(head + ".") for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert len(frozen) > len(trainable)
    model.train()
    keep_frozen_norms_in_eval(model, head)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
