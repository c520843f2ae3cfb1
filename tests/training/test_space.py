"""The sweep's search space: parsed into Optuna parameters, every range end and choice checked against TrainConfig."""

import optuna
import pytest

from cxr.config import build_config
from cxr.errors import CxrError
from cxr.training.space import apply_params, expand, load_space


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path, build_config(None, {"data": tmp_path}))


def test_ranges_and_choices_become_optuna_parameters_within_their_bounds(tmp_path):
    params = _space(
        tmp_path,
        "lr: {low: 1.0e-4, high: 1.0e-2, log: true}\nepochs: {low: 2, high: 6, step: 2}\n"
        "model: [smallnet, resnet18]\naugment:\n  mixup: {choices: [0.0, 0.2]}\n",
    )
    assert [p.key for p in params] == ["lr", "epochs", "model", "augment.mixup"]
    assert params[1].is_int and not params[0].is_int
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        assert 1e-4 <= values["lr"] <= 1e-2 and values["epochs"] in (2, 4, 6)
        assert values["model"] in ("smallnet", "resnet18") and values["augment.mixup"] in (0.0, 0.2)
        study.tell(trial, 0.0)
    assert isinstance(study.trials[0].distributions["lr"], optuna.distributions.FloatDistribution)
    assert study.trials[0].distributions["lr"].log


def test_apply_params_sets_dotted_keys_in_their_section_and_leaves_the_base_alone():
    base = build_config(None, {}).model_dump()
    values = apply_params(base, {"lr": 0.01, "augment.mixup": 0.0})
    assert values["lr"] == 0.01 and values["augment"]["mixup"] == 0.0 and values["augment"]["low_res"] == 0.25
    assert base["augment"]["mixup"] == 0.2 and base["lr"] == 1e-3


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("lrr: {low: 0.001, high: 0.01}\n", ["unknown config key 'lrr'", "searchable keys are"]),
        ("augment.sharpen: [0, 1]\n", ["unknown config key 'augment.sharpen'"]),
        ("lr: {low: 0.01, high: 0.001}\n", ["'lr'", "low 0.01 is above high 0.001"]),
        ("lr: {low: 0.001, high: 5}\n", ["lr=5", "'lr'"]),  # TrainConfig caps lr at 1
        ("model: [smallnet, vgg99]\n", ["model='vgg99'", "unknown model"]),
        ("optimizer: {choices: [adam, sgd]}\n", ["optimizer='sgd'"]),
        ("data: [a, b]\n", ["'data' cannot be searched"]),
        ("lr: {low: 0, high: 0.01, log: true}\n", ["log range needs low > 0"]),
        ("lr: 0.01\n", ["must be a range"]),
        ("lr: {low: 0.001}\n", ["a range takes low, high"]),
        ("[1, 2]\n", ["expected a mapping"]),
    ],
)
def test_bad_spaces_are_one_line_errors(tmp_path, text, fragments):
    with pytest.raises(CxrError) as e:
        _space(tmp_path, text)
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_named_candidates_set_their_keys_together_and_are_checked_like_any_key(tmp_path):
    params = _space(
        tmp_path, "candidates:\n  recipe: {}\n  noisy: {augment: {noise: 0.08}, augment.blur: 1.5}\nseed: [0, 1]\n"
    )
    candidates = params[0]
    assert candidates.key == "candidates" and candidates.choices == ("recipe", "noisy")
    assert expand(params, {"candidates": "noisy", "seed": 1}) == {"augment.noise": 0.08, "augment.blur": 1.5, "seed": 1}
    assert expand(params, {"candidates": "recipe", "seed": 0}) == {"seed": 0}
    for text, message in [
        ("candidates:\n  a: {lrate: 0.1}\n", "unknown config key 'lrate'"),
        ("candidates:\n  a: {augment.noise: 5}\n", "augment.noise"),  # above its bound: TrainConfig refuses it
        ("candidates: [a, b]\n", "must map names"),
        ("candidates:\n  a: {lr: 0.01}\nlr: {low: 0.001, high: 0.01}\n", "both searched and set by a candidate"),
        ("candidates:\n  a: {data: /elsewhere}\n", "cannot be searched"),
    ]:
        with pytest.raises(CxrError, match=message):
            _space(tmp_path, text)


def test_a_candidate_gets_the_rules_that_hang_on_a_key_left_out_as_the_command_line_does(tmp_path):
    """An ImageNet start standardises each image and `class_weight: balanced` shuffles unless the base or the candidate
    says otherwise: a candidate over a base that never named input_norm or sampling gets them as `cxr train` would."""
    from cxr.training.sweep import SweepPlan, trial_config

    base = build_config(None, {"data": tmp_path, "model": "efficientnet-lite0"})
    space = tmp_path / "space.yaml"
    space.write_text(
        "candidates:\n  lite: {pretrained: imagenet}\n  lite-hist: {pretrained: imagenet, input_norm: histeq}\n"
        "  weighted: {class_weight: balanced}\n"
    )
    plan = SweepPlan(base=base, params=load_space(space, base), out=tmp_path / "out", trials=3)
    config = {name: trial_config(plan, {"candidates": name}) for name in ("lite", "lite-hist", "weighted")}
    assert config["lite"].input_norm == "image" and config["lite-hist"].input_norm == "histeq"
    assert config["weighted"].sampling == "shuffle" and base.sampling == "balanced"
    # a base that names the key keeps it
    named = build_config(None, {"data": tmp_path, "model": "efficientnet-lite0", "input_norm": "dataset"})
    plan = SweepPlan(base=named, params=load_space(space, named), out=tmp_path / "out", trials=3)
    assert trial_config(plan, {"candidates": "lite"}).input_norm == "dataset"


def test_apply_params_sets_a_dotted_key_in_a_section_the_base_never_named():
    values = apply_params({"lr": 0.01}, {"augment.mixup": 0.0})
    assert values == {"lr": 0.01, "augment": {"mixup": 0.0}}
    assert build_config(None, values).augment.low_res == build_config(None, {}).augment.low_res
