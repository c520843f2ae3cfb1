import csv
import io

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from cxr.data.manifest import read_manifest
from cxr.errors import CxrError
from cxr.readingroom.feedback import agreement_stats, export_feedback
from cxr.readingroom.service import ModelFacts
from tests.cli.helpers import run_cli_inprocess
from tests.conftest import synthetic_image

ANN = {3: "normal", 5: "indeterminate", 9: "normal"}
BOB = {2: "pneumonia", 3: "normal"}
BINARY = ModelFacts("demo", "0123456789ab", "smallnet", ["normal", "pneumonia"], 0.5)


def _png(label: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_image(label, np.random.default_rng(seed), 32)).save(buf, format="PNG")
    return buf.getvalue()


def _film(room, i: int, predicted: str) -> str:
    p = [0.8, 0.2] if predicted == "normal" else [0.3, 0.7]
    return room.record(_png(i % 2, i), f"f{i}.png", BINARY, p, predicted)["id"]


@pytest.fixture
def reviewed(room):
    """12 films; ann reads all, bob the first 8. Both overrule the model on film 3, ann alone on film 9; they tie on
    film 2; ann calls film 5 indeterminate (bob's read alone labels it)."""
    ann, bob = room.add_reader("ann"), room.add_reader("bob")
    ids = [_film(room, i, "normal" if i % 2 == 0 else "pneumonia") for i in range(12)]
    for i, film in enumerate(ids):
        truth = "normal" if i % 2 == 0 else "pneumonia"
        room.add_read(film, ann, ANN.get(i, truth))
        if i < 8:
            room.add_read(film, bob, BOB.get(i, truth))
    _film(room, 99, "normal")  # never read: not exported
    return room, ids


def _manifest_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_writes_reviewed_films_and_a_manifest_training_reads(reviewed, tmp_path):
    room, ids = reviewed
    result = export_feedback(room, tmp_path / "fb")
    rows = _manifest_rows(result.manifest)
    assert list(rows[0])[:4] == ["path", "label", "patient_id", "split"] and "reader_disagreed" in rows[0]
    by_film = {r["study_id"]: r for r in rows}
    assert set(by_film) == set(ids) - {ids[2]}  # the readers tie on film 2: left out, not guessed
    assert result.skipped == {"readers tie": 1} and result.rows == 11
    assert (by_film[ids[3]]["label"], by_film[ids[3]]["reader_disagreed"], by_film[ids[3]]["readers"]) == (
        "normal",
        "1",
        "ann;bob",
    )
    assert (by_film[ids[5]]["label"], by_film[ids[5]]["readers"]) == ("pneumonia", "bob")  # indeterminate: no vote
    assert by_film[ids[9]]["reader_disagreed"] == "1" and by_film[ids[0]]["reader_disagreed"] == "0"
    assert result.disagreed == 2 == sum(r["reader_disagreed"] == "1" for r in rows)
    dataset = read_manifest(result.manifest)  # what `cxr train --data` calls
    assert dataset.classes == ["normal", "pneumonia"] and len(dataset.splits["train"].paths) == 11
    for path in dataset.splits["train"].paths:
        assert path.is_file() and path.parent.name in dataset.classes


def test_export_without_reads_or_store_is_a_clear_error(room, tmp_path):
    _film(room, 1, "normal")
    with pytest.raises(CxrError, match="no reviewed films"):
        export_feedback(room, tmp_path / "fb")
    room.store = None
    with pytest.raises(CxrError, match="--images"):
        export_feedback(room, tmp_path / "fb")


def test_stats_kappa_matches_sklearn_with_an_interval(reviewed):
    room, ids = reviewed
    stats = agreement_stats(room, n_bootstrap=200, seed=0)
    pairs = {(p["a"], p["b"]): p for p in stats["pairs"]}
    assert set(pairs) == {("model", "ann"), ("model", "bob"), ("ann", "bob")}
    model = ["normal" if i % 2 == 0 else "pneumonia" for i in range(12)]
    ann = [ANN.get(i, m) for i, m in enumerate(model)]
    ann_read = [i for i in range(12) if i != 5]
    bob = [BOB.get(i, m) for i, m in enumerate(model[:8])]
    expect = {
        ("model", "ann"): cohen_kappa_score([model[i] for i in ann_read], [ann[i] for i in ann_read]),
        ("model", "bob"): cohen_kappa_score(model[:8], bob),
        ("ann", "bob"): cohen_kappa_score([ann[i] for i in range(8) if i != 5], [bob[i] for i in range(8) if i != 5]),
    }
    for pair, kappa in expect.items():
        assert pairs[pair]["kappa"] == pytest.approx(kappa)
        lo, hi = pairs[pair]["ci"]
        assert lo <= pairs[pair]["kappa"] <= hi and lo < hi
    assert pairs[("model", "ann")]["n"] == 11 and pairs[("model", "ann")]["disagree"] == 2


def test_feedback_commands(reviewed, tmp_path, capsys, monkeypatch):
    room, _ = reviewed
    db = ["--db", room.url, "--images", room.store.root]
    done = run_cli_inprocess(capsys, monkeypatch, "feedback", "export", *db, "--out", tmp_path / "fb")
    assert done.returncode == 0, done.stderr
    assert "11 film(s)" in done.stdout and "1 film(s) left out: readers tie" in done.stderr
    stats = run_cli_inprocess(
        capsys,
        monkeypatch,
        "feedback",
        "stats",
        "--db",
        room.url,
        "--n-bootstrap",
        50,
        "--out",
        tmp_path / "stats.json",
    )
    assert stats.returncode == 0, stats.stderr
    assert "model" in stats.stdout and "ann" in stats.stdout and (tmp_path / "stats.json").is_file()


@pytest.mark.parametrize("room", ["sqlite"], indirect=True)  # ~12 s; the database does not change the manifest
def test_the_export_trains_with_cxr_train_unchanged(reviewed, tmp_path, capsys, monkeypatch):
    room, _ = reviewed
    manifest = export_feedback(room, tmp_path / "fb").manifest
    done = run_cli_inprocess(
        capsys,
        monkeypatch,
        "train",
        "--data",
        manifest,
        "--out",
        tmp_path / "run",
        "--epochs",
        1,
        "--image-size",
        32,
        "--batch-size",
        4,
        "--num-workers",
        0,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model.pt").is_file()
