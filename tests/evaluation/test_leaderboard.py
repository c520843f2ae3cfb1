"""`cxr runs`: figures read from each run's metrics.json and config.yaml, ranked only among comparable runs."""

import csv
import io
import json

import yaml

from tests.cli.helpers import assert_one_line_error, run_cli_inprocess


def _run(path, data, model="smallnet", test=None, val=None, test_n=40, other=None, seconds=12.5):
    """A finished run folder as `cxr train` + `cxr evaluate` leave it (model.pt's content is not read here)."""
    path.mkdir(parents=True)
    (path / "model.pt").write_bytes(b"bundle")
    (path / "config.yaml").write_text(
        yaml.safe_dump({"data": str(data), "model": model, "image_size": 64, "ensemble": 1})
    )
    metrics = {"training": {"epochs_run": 7, "precision": "32", "wall_seconds": seconds}}
    if test is not None:
        metrics["test"] = {
            "n": test_n,
            "accuracy": test,
            "roc_auc": 0.9,
            "ci": {"accuracy": [test - 0.05, test + 0.04]},
        }
    if val is not None:
        metrics["val"] = {"n": 10, "accuracy": val, "roc_auc": 0.8}
    if other:
        metrics[other] = {"n": 5, "accuracy": 0.1}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_runs_lists_two_folders_ranked_within_comparable_groups(tmp_path, capsys, monkeypatch):
    site_a, site_b = tmp_path / "site-a", tmp_path / "site-b"
    _run(tmp_path / "one" / "r1", site_a, test=0.80, val=0.7)
    _run(tmp_path / "one" / "r2", site_a, model="resnet18", test=0.90, other="test@site-b")
    _run(tmp_path / "one" / "r2" / "members" / "0", site_a, test=0.99)  # a member: listed through its ensemble
    _run(tmp_path / "two" / "r3", site_a, test=0.95, test_n=30)  # another test set: not ranked against 40 images
    _run(tmp_path / "two" / "r4", site_b, test=0.99)  # another dataset
    _run(tmp_path / "two" / "r5", site_a)  # not evaluated on test
    args = ["runs", tmp_path / "one", tmp_path / "two", "--sort", "test.accuracy", "--format"]
    cli = run_cli_inprocess(capsys, monkeypatch, *args, "csv")
    assert cli.returncode == 0, cli.stderr
    rows = list(csv.DictReader(io.StringIO(cli.stdout)))
    by_run = {r["run"]: r for r in rows}
    assert sorted(by_run) == ["one/r1", "one/r2", "two/r3", "two/r4", "two/r5"]
    r1, r2, r3, r4, r5 = (by_run[k] for k in sorted(by_run))
    assert (r2["rank"], r1["rank"]) == ("1", "2") and r1["group"] == r2["group"]
    assert r3["group"] != r1["group"] and r3["rank"] == "1"  # 30 test images: its own group
    assert r4["group"] not in (r1["group"], r3["group"]) and r4["data"] == "site-b"
    assert r5["rank"] == "-" and "not evaluated on test" in r5["note"]
    assert r1["test_accuracy"] == "0.800 [0.750, 0.840]" and r1["val_accuracy"] == "0.700"
    assert r2["model"] == "resnet18" and "test@site-b" in r2["note"]
    assert (r1["image_size"], r1["epochs"], r1["precision"], r1["seconds"]) == ("64", "7", "32", "12.5")

    data = json.loads(run_cli_inprocess(capsys, monkeypatch, *args, "json").stdout)
    assert data[0]["run"] == "one/r2" and data[0]["test.accuracy"]["value"] == 0.9
    markdown = run_cli_inprocess(capsys, monkeypatch, *args, "markdown").stdout.splitlines()
    assert markdown[0].startswith("| group | rank | run") and len(markdown) == 2 + 5
    table = run_cli_inprocess(capsys, monkeypatch, "runs", tmp_path / "one", "--sort", "val.accuracy")
    assert table.returncode == 0 and "one/r1" in table.stdout


def test_runs_refuses_a_folder_without_runs_and_bad_options(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    _run(tmp_path / "ok" / "r1", tmp_path, test=0.8)
    cases = [
        (["runs", tmp_path / "empty"], ["holds no finished run"]),
        (["runs", tmp_path / "missing"], ["is not a folder"]),
        (["runs", tmp_path / "ok", "--sort", "accuracy"], ["--sort 'accuracy'", "test.accuracy"]),
        (["runs", tmp_path / "ok", "--format", "xml"], ["--format 'xml'"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *args), *fragments)
