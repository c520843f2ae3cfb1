"""Training on tiny synthetic data: outputs, crash safety, resume, overwrite protection, unreadable files."""

import csv
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.trainer import Trainer  # Lightning's own, whatever `L.Trainer` is patched to

import cxr
from cxr.config import build_config
from cxr.errors import CxrError
from cxr.inference.bundle import BUNDLE_FILE
from cxr.readingroom.monitor import bundle_reference as monitor_reference
from cxr.rundir import RunDir
from cxr.training.train import train


def _cfg(data, **kw):
    base = dict(data=data, model="smallnet", image_size=32, epochs=2, batch_size=8, num_workers=0, lr=3e-3)
    return build_config(None, {**base, **kw})


def test_train_writes_a_complete_bundle(tiny_dataset, tmp_path):
    run = train(_cfg(tiny_dataset, epochs=3), tmp_path / "run")
    for name in (BUNDLE_FILE, "config.yaml", "history.csv", "metrics.json", "splits.csv", "checkpoints/last.ckpt"):
        assert (run / name).exists(), name
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    payload = torch.load(run / BUNDLE_FILE, weights_only=True)
    assert payload["meta"]["classes"] == ["normal", "pneumonia"]
    assert 0 < payload["meta"]["mean"] < 1 and payload["meta"]["std"] > 0
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(r["val_auc"] and r["train_loss"] for r in rows)
    with open(run / "splits.csv") as f:
        splits = [r["split"] for r in csv.DictReader(f)]
    assert splits.count("test") == 8 and splits.count("val") >= 2 and splits.count("train") + splits.count("val") == 24
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["epochs_run"] == 3 and training["images"]["train"] + training["images"]["val"] == 24
    assert 0.05 < training["peak_rss_gb"] < 8  # torch alone is over 50 MB resident; the ceiling is 8 GB
    reference = json.loads((run / "metrics.json").read_text())["val_reference"]  # what `cxr monitor` tests against
    n_val = training["images"]["val"]
    assert reference["n"] == n_val and sum(reference["predicted_counts"].values()) == n_val
    assert set(reference["predicted_counts"]) == {"normal", "pneumonia"}
    assert len(reference["max_probability"]) == len(reference["guard_scores"]) == n_val
    assert all(0.5 <= p <= 1 and p == round(p, 4) for p in reference["max_probability"])
    assert all(s >= 0 and s == round(s, 4) for s in reference["guard_scores"])
    assert monitor_reference(RunDir(run).read_metrics(), ["normal", "pneumonia"]).source == {
        "guard_flag_rate": "bundle (guard pass rate)",
        "class_mix": "bundle (val)",
        "confidence": "bundle (val)",
        "guard_scores": "bundle (val)",
    }
    assert "epochs" in (run / "config.yaml").read_text()
    assert cxr.load(run).predict([tiny_dataset / "test"]).probabilities.shape == (8, 2)


class _Crash(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def _trainers_get(monkeypatch, *extra: L.Callback) -> None:
    """Every Trainer that cxr builds from now on also gets the `extra` callbacks (none: Lightning's own again)."""
    monkeypatch.setattr(L, "Trainer", lambda *a, callbacks=(), **kw: Trainer(*a, callbacks=[*callbacks, *extra], **kw))


def test_crash_leaves_no_finished_model_and_resume_finishes(tiny_dataset, tmp_path, monkeypatch):
    _trainers_get(monkeypatch, _Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tiny_dataset, epochs=3), tmp_path / "run")
    assert not (tmp_path / "run" / BUNDLE_FILE).exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    with pytest.raises(CxrError, match="not a finished model.*cxr train --resume"):
        cxr.load(tmp_path / "run")
    with pytest.raises(CxrError, match="unfinished run"):
        train(_cfg(tiny_dataset, epochs=3), tmp_path / "run")

    _trainers_get(monkeypatch)
    train(_cfg(tiny_dataset, epochs=3), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / BUNDLE_FILE).exists()
    with open(tmp_path / "run" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]


def test_finished_run_is_not_overwritten_by_accident(tiny_dataset, tmp_path):
    train(_cfg(tiny_dataset, epochs=1), tmp_path / "run")
    with pytest.raises(CxrError, match="already holds a finished model"):
        train(_cfg(tiny_dataset, epochs=1), tmp_path / "run")
    train(_cfg(tiny_dataset, epochs=1), tmp_path / "run", overwrite=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_finishes(tiny_dataset, tmp_path, monkeypatch):
    import cxr.training.train as train_mod

    run = train(_cfg(tiny_dataset, epochs=1), tmp_path / "run")
    old = (run / BUNDLE_FILE).read_bytes()
    with pytest.raises(CxrError, match="Lightning refused .*strategy='bogus'"):  # fails before any decoding
        train(_cfg(tiny_dataset, epochs=1, strategy="bogus"), run, overwrite=True)
    with pytest.raises(CxrError, match="does not exist"):
        train(_cfg(tmp_path / "missing", epochs=1), run, overwrite=True)
    assert (run / BUNDLE_FILE).read_bytes() == old and not (run / train_mod.PREVIOUS_RUN).exists()
    with pytest.raises(CxrError, match="does not exist"):  # a new folder that got nothing resumable is removed
        train(_cfg(tmp_path / "missing", epochs=1), tmp_path / "fresh" / "run")
    assert (tmp_path / "fresh").is_dir() and not (tmp_path / "fresh" / "run").exists()
    assert (run / "history.csv").is_file() and cxr.load(run).classes == ["normal", "pneumonia"]

    _trainers_get(monkeypatch, _Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):  # crashes after a checkpoint: the new run is resumable
        train(_cfg(tiny_dataset, epochs=3), run, overwrite=True)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / BUNDLE_FILE).exists()
    assert (run / train_mod.PREVIOUS_RUN / BUNDLE_FILE).read_bytes() == old
    with pytest.raises(CxrError, match="holds the run an unfinished --overwrite replaced"):
        train(_cfg(tiny_dataset, epochs=1), run, overwrite=True)
    _trainers_get(monkeypatch)
    train(_cfg(tiny_dataset, epochs=3), run, resume=True)
    with pytest.raises(CxrError, match="is finished: nothing to resume"):
        train(_cfg(tiny_dataset, epochs=3), run, resume=True)


def test_unreadable_images_are_skipped_or_fail_under_strict(tiny_dataset, tmp_path):
    (tiny_dataset / "train" / "normal" / "corrupt.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CxrError, match="unreadable image"):
        train(_cfg(tiny_dataset, strict=True), tmp_path / "strict")
    assert not (tmp_path / "strict" / BUNDLE_FILE).exists()
    run = train(_cfg(tiny_dataset, epochs=1), tmp_path / "lenient")
    skipped = json.loads((run / "metrics.json").read_text())["training"]["skipped_unreadable"]
    assert len(skipped) == 1 and "corrupt.png" in skipped[0]


def test_balanced_class_weights_reach_the_loss(tiny_dataset, tmp_path):
    from cxr.training.prepare import balanced_class_weights

    assert balanced_class_weights([0, 0, 0, 1], 2) == pytest.approx([4 / 6, 4 / 2])
    run = train(_cfg(tiny_dataset, epochs=1, class_weight="balanced", monitor="val_auc"), tmp_path / "run")
    assert json.loads((run / "metrics.json").read_text())["training"]["monitor"] == "val_auc"


def test_fine_tune_from_a_run_with_frozen_backbone(tiny_dataset, tmp_path):
    base = train(_cfg(tiny_dataset, epochs=1), tmp_path / "base")
    before = cxr.load(base).model.state_dict()
    run = train(_cfg(tiny_dataset, epochs=2, weights=base, freeze_backbone=True, lr=0.05), tmp_path / "tuned")
    after = cxr.load(run).model.state_dict()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != name.startswith("classifier."), name  # backbone (incl. BN statistics) frozen, head trained
    init = json.loads((run / "metrics.json").read_text())["training"]["init_weights"]
    assert init["not_loaded"] == {} and len(init["loaded"]) == len(before)


def test_freeze_without_weights_is_a_config_error(tiny_dataset):
    with pytest.raises(CxrError, match="freeze_backbone needs weights"):
        _cfg(tiny_dataset, freeze_backbone=True)


def test_ensemble_members_share_one_split_and_an_interrupted_ensemble_resumes(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, epochs=1, ensemble=2, seed=5, input_norm="image")
    out = tmp_path / "ens"
    train(cfg, out)
    model = cxr.load(out).model
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():  # every member standardises each image, so gain and offset do not change the output
        torch.testing.assert_close(model(0.5 * x + 0.2), model(x), atol=1e-4, rtol=1e-4)
    members = [out / "members" / str(k) for k in range(2)]
    assert [build_config(m / "config.yaml", {}).seed for m in members] == [5, 6]
    assert (members[0] / "splits.csv").read_text() == (members[1] / "splits.csv").read_text()
    assert torch.load(out / BUNDLE_FILE, weights_only=True)["meta"]["model"] == "ensemble"
    training = json.loads((out / "metrics.json").read_text())["training"]
    assert training["ensemble"] == 2 and training["epochs_run"] == 2
    assert cxr.load(out).predict([tiny_dataset / "test"]).probabilities.shape == (8, 2)

    (out / BUNDLE_FILE).unlink()  # as if stopped while training member 1
    (members[1] / BUNDLE_FILE).unlink()
    with pytest.raises(CxrError, match="unfinished ensemble"):
        train(cfg, out)
    first_member = (members[0] / BUNDLE_FILE).stat().st_mtime_ns
    metrics_0 = json.loads((members[0] / "metrics.json").read_text())
    metrics_0["training"]["wall_seconds"] = 1000.0  # as if member 0 had taken long, in the interrupted session
    (members[0] / "metrics.json").write_text(json.dumps(metrics_0))
    train(cfg, out, resume=True)
    assert (members[0] / BUNDLE_FILE).stat().st_mtime_ns == first_member  # finished members are not retrained
    assert (members[1] / BUNDLE_FILE).is_file() and (out / BUNDLE_FILE).is_file()
    assert json.loads((out / "metrics.json").read_text())["training"]["wall_seconds"] >= 1000.0  # member 0 counts


def test_a_failed_ensemble_overwrite_with_a_member_checkpoint_stays_resumable(tmp_path):
    from cxr.training.train import PREVIOUS_RUN, set_aside_previous_run

    (tmp_path / BUNDLE_FILE).write_bytes(b"old model")
    with pytest.raises(RuntimeError, match="member 1 failed"):
        with set_aside_previous_run(tmp_path, overwrite=True):
            (tmp_path / "members" / "0" / "checkpoints").mkdir(parents=True)
            (tmp_path / "members" / "0" / "checkpoints" / "last.ckpt").write_bytes(b"new progress")
            raise RuntimeError("member 1 failed")
    assert (tmp_path / "members" / "0" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / PREVIOUS_RUN / BUNDLE_FILE).read_bytes() == b"old model"
    assert not (tmp_path / BUNDLE_FILE).exists()


def test_balanced_sampler_draws_each_class_equally_often():
    from cxr.training.prepare import balanced_sampler

    labels = [0] * 90 + [1] * 10
    draws = [labels[i] for _ in range(20) for i in balanced_sampler(labels, seed=0)]
    assert len(draws) == 20 * 100  # an epoch keeps its length
    assert 0.45 < sum(draws) / len(draws) < 0.55  # shuffling alone gives 0.10
    assert list(balanced_sampler(labels, seed=3)) == list(balanced_sampler(labels, seed=3))


def test_sampling_balanced_is_used_by_training_and_not_with_class_weights(tiny_dataset, tmp_path, monkeypatch):
    import cxr.training.prepare as prepare_mod

    calls = []
    real = prepare_mod.balanced_sampler
    monkeypatch.setattr(
        prepare_mod, "balanced_sampler", lambda labels, seed: calls.append(list(labels)) or real(labels, seed)
    )
    for f in sorted((tiny_dataset / "train" / "pneumonia").iterdir())[4:]:
        f.unlink()  # 12 normal : 4 pneumonia
    run = train(_cfg(tiny_dataset, epochs=1, sampling="balanced"), tmp_path / "run")
    assert len(calls) == 1 and sorted(set(calls[0])) == [0, 1] and calls[0].count(0) > calls[0].count(1)
    assert json.loads((run / "metrics.json").read_text())["training"]["sampling"] == "balanced"
    with pytest.raises(CxrError, match="both correct class imbalance"):
        _cfg(tiny_dataset, sampling="balanced", class_weight="balanced")


class _RecordStepWeights(L.Callback):
    """The raw network weights after every optimizer step."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        state = pl_module.net.state_dict()
        self.steps.append({k: v.detach().clone() for k, v in state.items() if v.is_floating_point()})


def test_ema_decay_saves_the_moving_average_of_the_weights(tiny_dataset, tmp_path, monkeypatch):
    recorder = _RecordStepWeights()
    _trainers_get(monkeypatch, recorder)
    decay, epochs = 0.6, 3
    run = train(_cfg(tiny_dataset, epochs=epochs, ema_decay=decay, early_stopping_patience=5), tmp_path / "run")
    saved = torch.load(run / BUNDLE_FILE, weights_only=True)["state_dict"]
    per_epoch = len(recorder.steps) // epochs
    assert per_epoch >= 2 and len(recorder.steps) == per_epoch * epochs

    averages, raw = [], []
    average = dict(recorder.steps[0])  # the first update copies the weights; later ones blend them in
    for i, step in enumerate(recorder.steps[1:], start=2):
        average = {k: decay * average[k] + (1 - decay) * step[k] for k in average}
        if i % per_epoch == 0:
            averages.append(average)
            raw.append(step)

    def matches(weights):
        return all(torch.allclose(saved[k], weights[k], atol=1e-6) for k in weights)

    assert any(matches(a) for a in averages)  # the best epoch's average ...
    assert not any(matches(w) for w in raw)  # ... not the weights the optimizer left
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["ema_decay"] == decay
    with pytest.raises(CxrError, match="ema_decay"):
        _cfg(tiny_dataset, ema_decay=1.0)


class _WeightsAtTrainStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_resume_with_ema_continues_the_raw_weights_and_the_average(tiny_dataset, tmp_path, monkeypatch):
    _trainers_get(monkeypatch, _Crash())
    cfg = _cfg(tiny_dataset, epochs=3, ema_decay=0.6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "run")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    raw, average = last["current_model_state"], last["state_dict"]
    assert any(not torch.equal(raw[k], average[k]) for k in raw)

    probe = _WeightsAtTrainStart()
    _trainers_get(monkeypatch, probe)
    train(cfg, tmp_path / "run", resume=True)
    assert all(torch.equal(probe.weights[k], raw[k]) for k in raw)  # training goes on from the raw weights
    assert (tmp_path / "run" / BUNDLE_FILE).exists()


def test_ensemble_members_can_differ_in_network_and_settings(tiny_dataset, tmp_path):
    members = [{"model": "smallnet"}, {"model": "vanilla-cnn", "epochs": 1, "augment": {"rotation_deg": 3}}]
    cfg = _cfg(tiny_dataset, epochs=2, seed=4, ensemble_members=members)
    assert cfg.ensemble == 2
    out = train(cfg, tmp_path / "mixed")
    saved = [build_config(out / "members" / str(k) / "config.yaml", {}) for k in range(2)]
    assert [(c.model, c.epochs, c.seed) for c in saved] == [("smallnet", 2, 4), ("vanilla-cnn", 1, 5)]
    assert saved[1].augment.rotation_deg == 3 and saved[1].augment.shift == cfg.augment.shift  # merged key by key
    meta = torch.load(out / BUNDLE_FILE, weights_only=True)["meta"]
    assert [m["model"] for m in meta["extra"]["members"]] == ["smallnet", "vanilla-cnn"]
    assert cxr.load(out).predict([tiny_dataset / "test"]).probabilities.shape == (8, 2)
    assert build_config(out / "config.yaml", {}).ensemble_members == members  # `--resume` reads it back

    for bad, message in [
        ([{"model": "nope"}, {}], r"ensemble_members\[0\]: key 'model': unknown model"),
        ([{"image_size": 64}, {}], r"ensemble_members\[0\] sets image_size, which all members share"),
        ([{}], "an ensemble needs two or more"),
    ]:
        with pytest.raises(CxrError, match=message):
            _cfg(tiny_dataset, ensemble_members=bad)
    with pytest.raises(CxrError, match="ensemble: 3 but ensemble_members lists 2"):
        _cfg(tiny_dataset, ensemble=3, ensemble_members=[{}, {}])
