"""MLflow tracking (`--track`): what a tracked run, its evaluation and a cross-validation leave in MLflow, read back
through MlflowClient; an unreachable store is a one-line error before any training."""

import json

import pytest
import yaml
from mlflow import MlflowClient

from tests.cli.helpers import assert_one_line_error, run_cli_inprocess

ARGS = ["--epochs", 2, "--image-size", 32, "--batch-size", 8, "--num-workers", 0, "--precision", "32"]


def _tracked(run):
    info = json.loads((run / "mlflow.json").read_text())
    return MlflowClient(info["uri"]), info["run_id"], info["uri"]


def test_tracked_run_logs_params_epochs_figures_and_artifacts(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "a"
    cli = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tiny_dataset, *ARGS, "--out", run, "--track")
    assert cli.returncode == 0, cli.stderr
    client, run_id, uri = _tracked(run)
    assert uri == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"  # the default store, beside the runs
    mlflow_run = client.get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"
    config = yaml.safe_load((run / "config.yaml").read_text())
    params = mlflow_run.data.params
    assert params["lr"] == str(config["lr"]) and params["image_size"] == "32" and params["augment.mixup"] == "0.2"
    tags = mlflow_run.data.tags
    assert tags["cxr.model"] == "smallnet" and tags["cxr.precision"] == "32"
    assert tags["cxr.data"] == str(tiny_dataset.resolve()) and tags["mlflow.source.git.commit"]
    history = [line.split(",") for line in (run / "history.csv").read_text().splitlines()]
    column = history[0].index("val_loss")
    logged = [m.value for m in client.get_metric_history(run_id, "val_loss")]
    assert logged == pytest.approx([float(row[column]) for row in history[1:]], abs=1e-5)  # every epoch, in order
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert mlflow_run.data.metrics["training_epochs_run"] == training["epochs_run"] == 2
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.pt", "config.yaml", "metrics.json", "history.csv"} <= artifacts
    assert (tmp_path / "runs" / "mlartifacts" / "cxr" / run_id / "artifacts" / "model.pt").is_file()  # beside the store

    cli = run_cli_inprocess(capsys, monkeypatch, "evaluate", run, "--bootstrap", 50)  # adds to the same MLflow run
    assert cli.returncode == 0, cli.stderr
    test = json.loads((run / "metrics.json").read_text())["test"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["test_accuracy"] == pytest.approx(test["accuracy"])
    assert [metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]] == pytest.approx(test["ci"]["accuracy"])
    assert "plots/roc_test.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    assert len(client.search_runs([mlflow_run.info.experiment_id])) == 1  # evaluate made no second run


def test_cross_validation_is_a_parent_run_with_a_child_per_fold(tiny_dataset, tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "cv"
    args = ["train", "--data", tiny_dataset, *ARGS, "--epochs", 1, "--cv", 2, "--out", out, "--track"]
    assert run_cli_inprocess(capsys, monkeypatch, *args).returncode == 0
    client, parent, used = _tracked(out)
    assert used == uri
    cv = json.loads((out / "cv.json").read_text())
    assert client.get_run(parent).data.metrics["cv_accuracy"] == pytest.approx(cv["accuracy"])
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(r.info.run_name for r in children) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and r.data.metrics["val_loss"] > 0 for r in children)
    assert {json.loads((out / "folds" / k / "mlflow.json").read_text())["run_id"] for k in "01"} == {
        r.info.run_id for r in children
    }


def test_unreachable_tracking_uri_is_a_one_line_error_before_training(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    out = tmp_path / "run"
    cli = run_cli_inprocess(capsys, monkeypatch, "train", "--data", tiny_dataset, *ARGS, "--out", out, "--track")
    assert_one_line_error(cli, "MLflow tracking URI 'http://127.0.0.1:9' cannot be reached", "without --track")
    assert not out.exists()  # nothing trained, no half-made run folder
    (tmp_path / "a-file").write_text("")  # a store under a file: its folder cannot be made
    store = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    (tmp_path / "cfg.yaml").write_text(f"tracking_uri: {store}\ntrack: true\n")
    cli = run_cli_inprocess(
        capsys, monkeypatch, "train", "--data", tiny_dataset, "--config", tmp_path / "cfg.yaml", *ARGS, "--out", out
    )
    assert_one_line_error(cli, store, "cannot be reached")
    assert not out.exists()


@pytest.mark.slow
def test_ensemble_is_a_parent_run_with_a_child_per_member(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "runs" / "ens"
    args = ["train", "--data", tiny_dataset, *ARGS, "--epochs", 1, "--ensemble", 2, "--out", out, "--track"]
    assert run_cli_inprocess(capsys, monkeypatch, *args).returncode == 0
    client, parent, _ = _tracked(out)
    assert client.get_run(parent).data.tags["cxr.kind"] == "ensemble"
    assert "model.pt" in {a.path for a in client.list_artifacts(parent)}
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(r.info.run_name for r in children) == ["0", "1"]
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]  # member k trains with seed + k
