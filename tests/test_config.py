import pytest

from cxr.config import build_config
from cxr.errors import CxrError


def test_yaml_then_cli_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: vanilla-cnn\nepochs: 7\naugment:\n  rotation_deg: 5\n")
    cfg = build_config(f, {"epochs": 3, "lr": None, "augment.hflip": True})
    assert cfg.model == "vanilla-cnn" and cfg.epochs == 3 and cfg.lr == 1e-3
    assert cfg.augment.rotation_deg == 5 and cfg.augment.hflip is True


@pytest.mark.parametrize(
    "text, key",
    [("epoch: 3\n", "'epoch'"), ("augment:\n  rotate: 3\n", "'augment.rotate'"), ("lr: -1\n", "'lr'"),
     ("image_size: big\n", "'image_size'"), ("model: vgg99\n", "'model'"), ("class_weight: auto\n", "'class_weight'")],
)  # fmt: skip
def test_bad_keys_and_values_name_the_key(tmp_path, text, key):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(CxrError) as e:
        build_config(f)
    assert key in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_key_says_unknown(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epoch: 3\n")
    with pytest.raises(CxrError, match="unknown key"):
        build_config(f)


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(CxrError, match="not found"):
        build_config(tmp_path / "missing.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(CxrError, match="not valid YAML"):
        build_config(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(CxrError, match="mapping"):
        build_config(f)
