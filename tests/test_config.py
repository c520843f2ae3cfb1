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
    [
        ("epoch: 3\n", "'epoch'"),
        ("augment:\n  rotate: 3\n", "'augment.rotate'"),
        ("lr: -1\n", "'lr'"),
        ("image_size: big\n", "'image_size'"),
        ("model: vgg99\n", "'model'"),
        ("class_weight: auto\n", "'class_weight'"),
    ],
)
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


# That no config is the validated recipe (codecademy-cv.yaml's `default-fp32` with robust-codecademy.yaml's `mild`)
# is checked against the benchmark spaces in tests/benchmarks/test_recorded.py.


def test_class_weights_alone_switch_off_the_default_balanced_sampling():
    assert build_config(None).sampling == "balanced"
    assert build_config(None, {"class_weight": "balanced"}).sampling == "shuffle"
    with pytest.raises(CxrError, match="choose one"):  # both asked for: refused, not silently changed
        build_config(None, {"class_weight": "balanced", "sampling": "balanced"})


def test_a_shipped_recipe_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from cxr.config import RECIPES_DIR, available_recipes

    assert available_recipes() == ["kermany", "lite0-frozen", "pneumoniamnist", "radiography"]
    for name in ("kermany", "pneumoniamnist", "radiography"):  # each keeps what it was chosen with before the
        cfg = build_config(name)  # defaults changed
        assert cfg.sampling == "shuffle" and cfg.augment.mixup == 0, name
    lite = yaml.safe_load((RECIPES_DIR / "lite0-frozen.yaml").read_text())  # chosen under cxr 0.9's defaults, named
    assert {"model", "pretrained", "image_size", "epochs", "sampling", "augment"} <= set(lite)
    assert build_config("lite0-frozen") == build_config(None, {k: v for k, v in lite.items() if k != "config_version"})
    # the acquisition augmentation the issue-20 rule adopted (docs/robust-recipes.md), where it adopted it
    for name in ("kermany", "pneumoniamnist"):
        augment = build_config(name).augment
        assert (augment.low_res, augment.noise, augment.blur, augment.shift) == (0.5, 0.1, 2.0, 0.15), name
    assert build_config("pneumoniamnist").image_size == 64 and build_config("kermany").class_weight == "balanced"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kermany").write_text("epochs: 3\n")
    assert build_config("kermany").epochs == 3
    with pytest.raises(CxrError, match="shipped recipe: kermany, lite0-frozen, pneumoniamnist, radiography"):
        build_config("kermanny")


def test_an_imagenet_start_standardises_each_image_unless_input_norm_is_set():
    assert build_config(None, {"model": "resnet18", "pretrained": "imagenet"}).input_norm == "image"
    assert (
        build_config(None, {"model": "resnet18", "pretrained": "imagenet", "input_norm": "histeq"}).input_norm
        == "histeq"
    )
    assert build_config(None, {"model": "resnet18"}).input_norm == "dataset"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": "resnet18", "pretrained": "imagenet", "weights": "x.pt"}, "two starting points; choose one"),
        ({"model": "vanilla-cnn", "pretrained": "imagenet"}, "'vanilla-cnn' has no published ImageNet weights"),
        ({"model": "resnet18", "pretrained": "radiography"}, "radiography is a smallnet"),
        ({"pretrained": "cifar"}, "'pretrained'"),
        ({"sampling": "undersample", "class_weight": "balanced"}, "undersample and class_weight: balanced"),
    ],
)
def test_starts_and_imbalance_corrections_that_conflict_are_refused(values, message):
    with pytest.raises(CxrError, match=message):
        build_config(None, values)


def test_a_pretrained_start_can_train_the_head_only():
    cfg = build_config(None, {"model": "vgg19", "pretrained": "imagenet", "freeze_backbone": True})
    assert cfg.freeze_backbone and cfg.weights is None


def test_a_finished_run_stands_for_its_config_only(tmp_path, monkeypatch):
    """A run may stand for a deterministic re-run (a resumed sweep, benchmarks' `run --reuse`) only if it trained
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
    del older["config_version"]  # ... and so before config versions (the oldest version)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(older))
    assert not trained_as(tmp_path, cfg)  # today's defaults add noise and blur; that run had none
    without = cfg.augment.model_copy(update={"noise": 0.0, "blur": 0.0})
    assert trained_as(tmp_path, cfg.model_copy(update={"augment": without}))
    assert load_run_config(tmp_path).augment.noise == 0.0 and build_config(tmp_path / "config.yaml").augment.noise > 0


# Config versions: every saved config and shipped recipe states its config_version; an older one is read through
# MIGRATIONS (one per version), so it means what it meant when it was written (CHANGELOG.md).


def test_a_saved_config_states_its_version_and_reads_back_the_same(tmp_path):
    from cxr.config import CONFIG_VERSION, load_run_config, save_config

    cfg = build_config(None, {"data": "data", "model": "resnet18", "pretrained": "imagenet", "epochs": 3})
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert next(iter(saved)) == "config_version" and saved["config_version"] == CONFIG_VERSION
    assert load_run_config(tmp_path) == cfg == build_config(tmp_path / "config.yaml")
    del saved["augment"]["noise"], saved["body_lr_factor"]  # a versioned file that leaves keys out: its version's
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_config(tmp_path) == cfg  # today's version: its defaults, nothing pinned


def test_one_migration_per_version_up_to_the_current_one():
    from cxr.config import CONFIG_VERSION, MIGRATIONS, OLDEST_VERSION

    assert OLDEST_VERSION == 1 and sorted(MIGRATIONS) == list(range(OLDEST_VERSION, CONFIG_VERSION))


def _unversioned_saved_run(tmp_path, cfg, drop=(), drop_augment=()):
    """A run's config.yaml as cxr wrote it before config versions: every key of its day, no config_version."""
    from cxr.config import save_config

    save_config(cfg, tmp_path / "config.yaml")
    values = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del values["config_version"]
    for key in drop:
        del values[key]
    for key in drop_augment:
        del values["augment"][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))


def test_an_unversioned_saved_run_is_the_oldest_version_and_what_it_lacks_it_trained_without(tmp_path):
    """What cxr wrote before config versions: a key added since reads as the run did without it (trained_as,
    load_run_config, `--resume` all read it so), a key it holds as it holds it."""
    from cxr.config import load_run_config, trained_as

    cfg = build_config(None, {"data": "data", "epochs": 3})
    _unversioned_saved_run(tmp_path, cfg)
    assert load_run_config(tmp_path) == cfg and trained_as(tmp_path, cfg)  # every key there: read as written
    added = ("contrast", "brightness", "low_res", "noise", "blur", "mixup")
    _unversioned_saved_run(tmp_path, cfg, drop=("sampling",), drop_augment=added)
    old = load_run_config(tmp_path)
    assert all(getattr(old.augment, k) == 0.0 for k in added) and old.sampling == "shuffle"
    assert not trained_as(tmp_path, cfg)
    # fine-tuning keys: an ImageNet body trained at the head's learning rate before body_lr_factor existed
    imagenet = build_config(None, {"data": "data", "model": "resnet18", "pretrained": "imagenet"})
    _unversioned_saved_run(tmp_path, imagenet, drop=("body_lr_factor", "frozen_warmup_epochs", "body_batch_norm"))
    assert load_run_config(tmp_path).body_lr_share() == 1.0 and imagenet.body_lr_share() == 0.1
    scratch = build_config(
        None, {"data": "data", "model": "smallnet"}
    )  # any other start: body and head always shared one rate
    _unversioned_saved_run(tmp_path, scratch, drop=("body_lr_factor", "frozen_warmup_epochs", "body_batch_norm"))
    assert load_run_config(tmp_path) == scratch and trained_as(tmp_path, scratch)


def test_an_old_run_started_from_the_repositorys_v06_file_reads_as_the_named_start(tmp_path, monkeypatch):
    """cxr 0.6-0.8 named the kermany recipe's start by its repository path; now by name (`radiography-v0.6`)."""
    from cxr.config import load_run_config, trained_as

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    recipe = build_config("kermany", {"data": "data"})
    assert recipe.pretrained == "radiography-v0.6" and recipe.weights is None
    path = "/work/main/weights/smallnet-radiography-224-v0.6.pt"
    _unversioned_saved_run(tmp_path, recipe.model_copy(update={"pretrained": "none", "weights": path}))
    assert load_run_config(tmp_path) == recipe and trained_as(tmp_path, recipe)
    other = recipe.model_copy(update={"pretrained": "none", "weights": "/x/weights/smallnet-radiography-224.pt"})
    _unversioned_saved_run(tmp_path, other)  # that name held two files over time: a path it stays
    assert str(load_run_config(tmp_path).weights) == other.weights


# What the code before config versions pinned (benchmarks' DEFAULTS_BEFORE_0_5 and codecademy's BEFORE_ADOPTED)
BEFORE_0_5 = {
    "epochs": 30,
    "sampling": "shuffle",
    "augment": {"low_res": 0.0, "mixup": 0.0, "contrast": 0.0, "brightness": 0.0, "noise": 0.0, "blur": 0.0},
}
CODECADEMY_BEFORE_0_8 = {
    "augment.contrast": 0.0,
    "augment.brightness": 0.0,
    "augment.low_res": 0.5,
    "augment.noise": 0.0,
    "augment.blur": 0.0,
}


def test_a_config_at_an_older_version_takes_that_versions_defaults(tmp_path):
    from cxr.config import config_at, defaults_at

    assert config_at(1) == build_config(None, BEFORE_0_5)
    changes = {"model": "vanilla-cnn", "augment": {"contrast": 0.3}, "augment.brightness": 0.2}
    expected = {
        **BEFORE_0_5,
        "model": "vanilla-cnn",
        "augment": {**BEFORE_0_5["augment"], "contrast": 0.3, "brightness": 0.2},
    }
    assert config_at(1, changes) == build_config(None, expected)
    assert config_at(1, {"class_weight": "balanced"}).sampling == "shuffle"
    assert defaults_at(2) == CODECADEMY_BEFORE_0_8 and defaults_at(4) == {}
    assert config_at(2) == build_config(None, CODECADEMY_BEFORE_0_8)  # cxr 0.5-0.7's augmentation, today's rest
    f = tmp_path / "old.yaml"  # a recipe that states its version reads through the migrations too
    f.write_text("config_version: 1\nmodel: vanilla-cnn\n")
    assert build_config(f) == config_at(1, {"model": "vanilla-cnn"})
    f.write_text("model: vanilla-cnn\n")  # a hand-written config without one is today's
    assert build_config(f) == build_config(None, {"model": "vanilla-cnn"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("config_version: 99\n", "newer than this cxr's"),
        ("config_version: 0\n", "'config_version'"),
        ("config_version: two\n", "'config_version'"),
    ],
)
def test_a_config_version_cxr_cannot_read_is_one_line(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(CxrError, match=message) as e:
        build_config(f)
    assert "\n" not in str(e.value)


def test_shipped_recipes_state_the_current_version_and_name_their_start():
    from cxr.config import CONFIG_VERSION, RECIPES_DIR, available_recipes

    for name in available_recipes():
        text = (RECIPES_DIR / f"{name}.yaml").read_text()
        assert yaml.safe_load(text)["config_version"] == CONFIG_VERSION, name
        assert "weights/" not in text.replace("cxr/weights/README.md", ""), name  # starts by name, never by path


def test_an_ensemble_member_with_an_imagenet_start_standardises_each_image():
    cfg = build_config(None, {"model": "resnet18", "ensemble_members": [{}, {"pretrained": "imagenet"}]})
    assert cfg.for_member(0).input_norm == "dataset" and cfg.for_member(1).input_norm == "image"
    assert cfg.for_member(1).seed == cfg.seed + 1


@pytest.mark.parametrize(
    "given, input_norm, sampling",
    [
        ({}, "dataset", "balanced"),
        ({"model": "resnet18", "pretrained": "imagenet"}, "image", "balanced"),  # an ImageNet start: each image
        ({"model": "resnet18", "pretrained": "imagenet", "input_norm": "histeq"}, "histeq", "balanced"),
        ({"class_weight": "balanced"}, "dataset", "shuffle"),  # one imbalance correction
        ({"sampling": "undersample"}, "dataset", "undersample"),
    ],
)
def test_keys_left_out_follow_from_the_keys_given_and_are_not_counted_as_given(given, input_norm, sampling):
    cfg = build_config(None, given)
    assert (cfg.input_norm, cfg.sampling) == (input_norm, sampling)
    assert cfg.given_values().keys() == given.keys()  # a change to the config derives them again
