import json

import numpy as np

from cxr.evaluation.evaluate import evaluate_run, evaluation_key
from cxr.inference.bundle import Bundle
from cxr.inference.tta import TTA_VIEWS, tta_logits, view
from tests.evaluation.runs import make_run

S = 40


def _blob(row: int, col: int, half: int = 1) -> np.ndarray:
    img = np.zeros((1, S, S), np.uint8)
    img[0, row - half : row + half + 1, col - half : col + half + 1] = 255
    return img


def _centre_of_mass(img: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(img[0] > 127)
    return np.array([rows.mean(), cols.mean()])


def test_views_shift_rotate_and_zoom_as_stated():
    blob = _blob(20, 20)
    assert view(blob, 0.0, 0.0, 0.0, 1.0) is blob  # identity: untouched
    moved = {
        k: _centre_of_mass(view(blob, 0.0, dx, dy, 1.0)) - 20
        for k, (dx, dy) in {"+x": (0.05, 0), "-x": (-0.05, 0), "+y": (0, 0.05), "-y": (0, -0.05)}.items()
    }
    # 0.05 of 40 px = 2 px, along columns for x and rows for y, opposite signs for opposite shifts
    assert np.allclose(np.abs(moved["+x"]), [0, 2], atol=0.5) and np.allclose(moved["+x"], -moved["-x"], atol=0.5)
    assert np.allclose(np.abs(moved["+y"]), [2, 0], atol=0.5) and np.allclose(moved["+y"], -moved["-y"], atol=0.5)
    # a rotation about the centre moves an off-centre blob along a circle: same radius, another angle
    off = _blob(20, 34)
    turned = _centre_of_mass(view(off, 5.0, 0, 0, 1.0)) - 19.5
    assert abs(np.hypot(*turned) - np.hypot(*(_centre_of_mass(off) - 19.5))) < 0.7
    assert 0.7 < abs(turned[0]) < 2.5  # 14.5 px * sin(5 deg) = 1.3 px off its row
    # zooms in and out change a centred square's area (total brightness) in opposite directions, by ~10 %
    square = _blob(20, 20, half=12)
    areas = [view(square, 0, 0, 0, s).astype(float).sum() / square.astype(float).sum() for s in (0.95, 1.05)]
    assert 0.8 < min(areas) < 0.95 and 1.05 < max(areas) < 1.2


def test_tta_logits_average_the_model_over_every_view():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, S, S), dtype=np.uint8)
    seen = []

    def logits_fn(batch):
        seen.append(batch)
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float64)  # two pixels as "logits"

    out = tta_logits(logits_fn, images)
    assert len(seen) == len(TTA_VIEWS) and seen[0] is images
    assert len({b.tobytes() for b in seen}) == len(TTA_VIEWS)  # nine different views
    assert np.allclose(out, np.mean([b.reshape(3, -1)[:, :2] for b in seen], axis=0))


def test_tta_predictions_and_evaluation_sit_beside_the_plain_ones(tmp_path):
    run = make_run(tmp_path)
    plain = evaluate_run(run, "test", n_bootstrap=0)
    plain_csv = (run / "predictions_test.csv").read_text()
    assert evaluation_key(run, "test", tta=True) == "test-tta"
    tta = evaluate_run(run, "test", n_bootstrap=0, tta=True)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["tta"] is False and saved["test-tta"]["tta"] is True
    assert saved["test"]["accuracy"] == plain["accuracy"] and saved["test-tta"]["n"] == tta["n"] == plain["n"]
    assert (run / "predictions_test.csv").read_text() == plain_csv  # the plain figures are kept
    assert (run / "predictions_test-tta.csv").is_file() and (run / "plots" / "roc_test-tta.png").is_file()

    bundle = Bundle.load(run, backend="torch")
    paths = sorted((tmp_path / "data" / "test").rglob("*.png"))[:4]
    with_tta, without = bundle.predict(paths, tta=True), bundle.predict(paths)
    assert np.allclose(with_tta.probabilities.sum(1), 1, atol=1e-5)
    assert not np.allclose(with_tta.logits, without.logits)
