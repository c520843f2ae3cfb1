"""The benchmarks are data: every recorded config digest still names the config its entry says it is, every space
parses against its study's base, and the runner's pieces agree with what the results and docs cite. No training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from benchmarks.common import (
    BENCH,
    RESULTS,
    ROOT,
    SPACES,
    candidate_config,
    config_of,
    config_sha256,
    datasets,
    sha256_file,
    studies,
    study_base,
)
from cxr.config import available_recipes, build_config
from cxr.models.pretrained import SHIPPED
from cxr.training.space import parse_space


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch):
    """Paths in datasets.yaml, the recipes and the spaces are relative to the repository root, as the runner runs."""
    monkeypatch.chdir(ROOT)


def _digested_entries() -> list[tuple[str, dict]]:
    """Every entry of every results file (history included) that records a config_sha256."""
    found = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if node.get("config_sha256"):
                found.append((where, node))
            for key, value in node.items():
                if key != "machine":
                    walk(value, f"{where} {key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in sorted(RESULTS.glob("*.json")) + sorted(RESULTS.glob("history/*.json")):
        walk(json.loads(path.read_text()), str(path.relative_to(RESULTS)))
    return found


ENTRIES = _digested_entries()


def test_the_recorded_digests_are_found():
    assert len(ENTRIES) >= 27, len(ENTRIES)


@pytest.mark.parametrize("where, entry", ENTRIES, ids=[w for w, _ in ENTRIES])
def test_a_recorded_config_digest_is_still_its_recipe_or_candidate(where, entry):
    """config_of names the benchmark's recipe ({dataset, seed}) or a study's candidate ({study, candidate, seed});
    rebuilt here and hashed as it was recorded (benchmarks.common.config_sha256 of what it trains), it must give the
    recorded digest. A cxr that adds a config key with a default changes every digest: the recorded ones say which cxr
    computed them (config_from; `config_hash` where one was re-recorded)."""
    spec = entry.get("config_of")
    assert spec, f"{where}: config_sha256 without config_of (DATASET or STUDY:CANDIDATE and its seed)"
    cfg = config_of(spec)
    assert config_sha256(cfg.to_yaml_dict()) == entry["config_sha256"], (
        f"{where}: {spec} no longer hashes to the recorded {entry['config_sha256'][:8]} "
        f"(recorded from {entry.get('config_from')!r})"
    )


def test_a_start_is_hashed_by_its_content_not_its_name_or_path(tmp_path):
    """The kermany recipe's start, named `pretrained: radiography-v0.6` (cxr 0.9) or by a path to that file (cxr 0.8:
    weights/..., since moved), is one config; another file is another config."""
    v06 = SHIPPED["radiography-v0.6"]
    named = config_of({"dataset": "kermany", "seed": 0}).to_yaml_dict()
    assert named["pretrained"] == "radiography-v0.6" and not named.get("weights")
    assert sha256_file(v06.path) == v06.sha256  # the digest a name stands for is its file's
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(v06.path.read_bytes())
    for path in (v06.path, run / "model.pt", run):  # the file, a copy elsewhere, a run directory holding it
        assert config_sha256({**named, "pretrained": "none", "weights": str(path)}) == config_sha256(named), path
    other = {**named, "pretrained": "radiography"}
    assert config_sha256(other) != config_sha256(named)
    assert config_sha256({**named, "pretrained": "none", "weights": str(SHIPPED["radiography"].path)}) == (
        config_sha256(other)
    )
    imagenet = {**named, "model": "resnet18", "pretrained": "imagenet"}  # a name: the model fixes the file
    assert config_sha256(imagenet) != config_sha256({**imagenet, "pretrained": "none"})


STUDIES = sorted(studies())


def test_every_space_file_is_a_study_of_a_dataset():
    assert sorted(p.stem for p in SPACES.glob("*.yaml")) == STUDIES
    for name, spec in datasets().items():
        assert spec["recipe"] is None or spec["recipe"] in available_recipes(), name
        assert spec["path"].startswith("../shared/data/"), name  # relative to the root, as datasets.yaml says
    assert {"codecademy-cv", "kermany", "pneumoniamnist"} <= set(STUDIES)
    own = [name for name, spec in datasets().items() if "films_of" not in spec]  # not a second recipe's benchmark
    assert {f"robust-{name}" for name in own} <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_each_space_parses_against_its_study_base(name):
    """What `cxr sweep --space` checks before its first trial: every candidate (and searched key) makes a valid
    config over the study's base, and a candidate sets no key a sweep may not vary."""
    space = yaml.safe_load((SPACES / f"{name}.yaml").read_text(encoding="utf-8"))
    params = parse_space(space, study_base(name, build_data=False), name)
    candidates = next(p for p in params if p.key == "candidates")
    assert len(candidates.choices) >= 2, name


def test_the_precision_candidates_ask_to_be_written_out_in_full():
    """Candidates chosen under older defaults name those keys (no patch applied in code): the same YAML gives the same
    config whatever cxr's defaults are now."""
    space = yaml.safe_load((SPACES / "codecademy-cv.yaml").read_text(encoding="utf-8"))
    for name, changes in space["candidates"].items():
        assert {"model", "image_size", "epochs", "sampling", "augment"} <= set(changes), name
        assert set(changes["augment"]) >= {"contrast", "brightness", "low_res", "noise", "blur", "mixup"}, name


def test_no_config_is_the_validated_recipe():
    """What cross-validation chose for codecademy (codecademy-cv.yaml `default-fp32`), with the augmentation the
    clean-and-shifted validation rule then adopted (robust-codecademy.yaml `mild`, cxr 0.8), is cxr's default."""
    chosen = candidate_config("codecademy-cv", "default-fp32").model_copy(update={"precision": "auto", "data": None})
    mild = yaml.safe_load((SPACES / "robust-codecademy.yaml").read_text(encoding="utf-8"))["candidates"]["mild"]
    adopted = chosen.augment.model_copy(update=mild["augment"])
    assert build_config(None) == chosen.model_copy(update={"augment": adopted})


def test_the_robust_candidates_are_one_set_of_levels_on_every_dataset():
    spaces = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))["candidates"] for p in SPACES.glob("robust-*.yaml")}
    assert len(spaces) == sum("films_of" not in spec for spec in datasets().values())
    for candidate in ("acquisition", "mild"):
        assert len({json.dumps(c[candidate], sort_keys=True) for c in spaces.values()}) == 1, candidate


def test_no_module_names_a_dataset_path_or_edits_the_import_path():
    for path in sorted(BENCH.glob("*.py")):
        text = path.read_text()
        assert not re.search(r"shared/data|\"shared\"|sys\.path", text), path.name


def test_results_md_is_what_the_table_sub_command_writes():
    from benchmarks.runs import table_text

    assert table_text() == (BENCH / "RESULTS.md").read_text()


def test_the_runner_takes_its_sub_commands():
    from benchmarks.__main__ import build_parser

    parser = build_parser()
    examples = [
        ["run", "codecademy", "--seeds", "0", "1"],
        ["place", "codecademy", "runs/demo"],
        ["table"],
        ["list"],
        ["select", "robust-kermany", "--seeds", "1", "--reuse", "before=runs/bench-kermany"],
        ["select", "codecademy-cv", "default-fp32", "--objective", "cv_accuracy"],
        ["cv", "codecademy-cv", "smallnet-224"],
        ["cv-ensemble", "codecademy", "a", "b"],
        ["cv-external", "codecademy-cv", "smallnet-224"],
        ["tta-cv", "runs/cv"],
        ["temperature-prior", "runs/x"],
        ["external", "codecademy", "runs/demo"],
        ["stress-guard", "kermany", "runs/bench-kermany", "--config-of", "robust-kermany:before"],
        ["site-adaptation"],
        ["site-calibration", "kermany", "--run", "runs/bench-kermany"],
        ["speed", "train"],
        ["speed", "compile"],
        ["speed", "models"],
        ["speed", "predict"],
        ["speed", "stress"],
        ["load", "serve"],
        ["load", "reading", "--backends", "sqlite"],
    ]
    for argv in examples:
        assert parser.parse_args(argv).command == argv[0]
    with pytest.raises(SystemExit):
        parser.parse_args(["select", "no-such-study"])


def test_makefile_targets_use_the_runner():
    text = (ROOT / "Makefile").read_text()
    assert "benchmarks/run.py" not in text and "-m benchmarks place codecademy" in text
    for target in ("benchmark", "bench-codecademy", "results-table"):
        assert re.search(rf"^{target}:", text, re.MULTILINE), target


def test_the_docs_name_no_removed_script():
    removed = (
        "model_selection.py",
        "cv_select.py",
        "cv_ensemble.py",
        "cv_external.py",
        "benchmarks/run.py",
        "benchmarks/external.py",
        "stress_guard.py",
        "stress_speed.py",
        "train_speed.py",
        "compile_speed.py",
        "model_zoo.py",
        "predict_backends.py",
        "serve_load.py",
        "reading_load.py",
        "site_adaptation.py",
        "benchmarks/site_calibration.py",
        "temperature_prior.py",
        "tta_cv.py",
    )
    pages = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        BENCH / "datasets.yaml",
        *sorted(SPACES.glob("*.yaml")),
    ]
    said = [(p.name, r) for p in pages for r in removed if r in " ".join(p.read_text().split())]
    assert said == []


def test_a_study_base_is_its_recipe_or_the_defaults_on_its_data():
    kermany = study_base("robust-kermany", seed=1, build_data=False)
    assert kermany == build_config("kermany", {"data": kermany.data, "seed": 1})
    assert Path(kermany.data).name == "chest-xray-pneumonia"
    radiography = study_base("robust-radiography", build_data=False)
    assert Path(radiography.data).name == "radiography-minus-codecademy.csv"  # trained without codecademy's copies
    assert study_base("kermany").split_seed == 0  # the seed-1 candidate shares seed 0's validation split
