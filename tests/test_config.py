import pytest
import yaml

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


def test_no_config_is_the_validated_recipe():
    """What cross-validation chose for codecademy (benchmarks/model_selection.py `default-fp32`), with the augmentation
    the clean-and-shifted validation rule then adopted (its `mild` candidate, cxr 0.8), is the default."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from model_selection import MILD, ROBUST, candidate_config

    assert ROBUST["codecademy"]["candidates"]["mild"] == MILD
    chosen = candidate_config("codecademy", "default-fp32", None).model_copy(update={"precision": "auto"})
    adopted = chosen.augment.model_copy(update={k.removeprefix("augment."): v for k, v in MILD.items()})
    assert build_config(None) == chosen.model_copy(update={"augment": adopted})


def test_class_weights_alone_switch_off_the_default_balanced_sampling():
    assert build_config(None).sampling == "balanced"
    assert build_config(None, {"class_weight": "balanced"}).sampling == "shuffle"
    with pytest.raises(CxrError, match="choose one"):  # both asked for: refused, not silently changed
        build_config(None, {"class_weight": "balanced", "sampling": "balanced"})


def test_a_shipped_recipe_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from cxr.config import available_recipes

    assert available_recipes() == ["kermany", "pneumoniamnist", "radiography"]
    for name in available_recipes():  # each keeps what it was chosen with before the defaults changed
        cfg = build_config(name)
        assert cfg.sampling == "shuffle" and cfg.augment.mixup == 0, name
    # the acquisition augmentation the issue-20 rule adopted (docs/robust-recipes.md), where it adopted it
    for name in ("kermany", "pneumoniamnist"):
        augment = build_config(name).augment
        assert (augment.low_res, augment.noise, augment.blur, augment.shift) == (0.5, 0.1, 2.0, 0.15), name
    assert build_config("pneumoniamnist").image_size == 64 and build_config("kermany").class_weight == "balanced"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kermany").write_text("epochs: 3\n")
    assert build_config("kermany").epochs == 3
    with pytest.raises(CxrError, match="shipped recipe: kermany, pneumoniamnist, radiography"):
        build_config("kermanny")


def test_an_imagenet_start_standardises_each_image_unless_input_norm_is_set():
    assert build_config(None, {"model": "resnet18", "pretrained": "imagenet"}).input_norm == "image"
    assert build_config(None, {"model": "resnet18", "pretrained": "imagenet", "input_norm": "histeq"}).input_norm == "histeq"
    assert build_config(None, {"model": "resnet18"}).input_norm == "dataset"


@pytest.mark.parametrize(
    "values, message",
    [({"model": "resnet18", "pretrained": "imagenet", "weights": "x.pt"}, "two starting points; choose one"),
     ({"model": "vanilla-cnn", "pretrained": "imagenet"}, "'vanilla-cnn' has no published ImageNet weights"),
     ({"model": "resnet18", "pretrained": "radiography"}, "radiography is a smallnet"),
     ({"pretrained": "cifar"}, "'pretrained'"),
     ({"sampling": "undersample", "class_weight": "balanced"}, "undersample and class_weight: balanced")],
)  # fmt: skip
def test_starts_and_imbalance_corrections_that_conflict_are_refused(values, message):
    with pytest.raises(CxrError, match=message):
        build_config(None, values)


def test_a_pretrained_start_can_train_the_head_only():
    cfg = build_config(None, {"model": "vgg19", "pretrained": "imagenet", "freeze_backbone": True})
    assert cfg.freeze_backbone and cfg.weights is None


def test_a_finished_run_stands_for_its_config_only(tmp_path, monkeypatch):
    """A run may stand for a deterministic re-run (a resumed sweep, benchmarks/run.py --reuse) only if it trained
    exactly this config: where it ran and how its paths are written do not count; any training key does."""
    from cxr.config import load_run_config, save_config, trained_as

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    cfg = build_config(None, {"data": "data", "epochs": 3})
    where = {"data": tmp_path / "data", "num_workers": 0, "track": True}  # absolute data path, another place to run
    save_config(cfg.model_copy(update=where), tmp_path / "config.yaml")
    assert trained_as(tmp_path, cfg)
    assert not trained_as(tmp_path, cfg.model_copy(update={"epochs": 4}))
    assert not trained_as(tmp_path, cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"noise": 0.1})}))
    assert not trained_as(tmp_path / "missing", cfg)
    older = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del older["augment"]["noise"], older["augment"]["blur"]  # written before these augmentations existed: off
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(older))
    assert not trained_as(tmp_path, cfg)  # today's defaults add noise and blur; that run had none
    without = cfg.augment.model_copy(update={"noise": 0.0, "blur": 0.0})
    assert trained_as(tmp_path, cfg.model_copy(update={"augment": without}))
    assert load_run_config(tmp_path).augment.noise == 0.0 and build_config(tmp_path / "config.yaml").augment.noise > 0
