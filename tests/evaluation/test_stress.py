"""`cxr stress`: each shift does what it says, harder with severity; the runner's figures agree with `evaluate`."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr.cli import app
from cxr.errors import CxrError
from cxr.evaluation.evaluate import evaluate_run
from cxr.evaluation.shifts import MAX_SEVERITY, SHIFTS, apply_shift, choose_shifts
from cxr.evaluation.stress import run_stress
from cxr.inference.ensemble import combine_runs
from cxr.inference.onnx_export import export_onnx
from tests.conftest import CODECADEMY, SHARED_DATA, synthetic_image
from tests.inference.spread_bundles import make_bundle

needs_data = pytest.mark.skipif(not CODECADEMY.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")


@pytest.fixture(scope="module")
def films():
    rng = np.random.default_rng(0)
    return np.stack([synthetic_image(i % 3, rng, 96) for i in range(6)])


@pytest.mark.parametrize("name", [n for n, s in SHIFTS.items() if len(s.levels) > 1])
def test_every_shift_changes_the_films_more_as_severity_rises(films, name):
    shift = SHIFTS[name]
    change = [
        np.abs(apply_shift(shift, k, films).astype(float) - films).mean() for k in range(1, len(shift.levels) + 1)
    ]
    assert change[0] > 0.05, change
    assert all(b > a for a, b in zip(change, change[1:])), change
    out = apply_shift(shift, 2, films)
    assert out.shape == films.shape and out.dtype == np.uint8


def test_shifts_move_intensities_and_geometry_the_right_way(films):
    mean, std = films.mean(), films.std()
    assert apply_shift(SHIFTS["gamma"], 3, films).mean() < mean  # gamma > 1 darkens the mid-tones
    assert apply_shift(SHIFTS["brightness"], 2, films).mean() > mean
    assert apply_shift(SHIFTS["contrast"], 3, films).std() < 0.6 * std
    np.testing.assert_array_equal(apply_shift(SHIFTS["invert"], 1, films), 255 - films)
    border = apply_shift(SHIFTS["collimation"], 4, films)
    k = round(96 * 0.18)
    assert border[:, :k].max() == 0 and border[:, :, -k:].max() == 0 and (border[:, 48, 48] == films[:, 48, 48]).all()
    boxed = apply_shift(SHIFTS["letterbox"], 4, films)
    assert boxed[:, :, :15].max() == 0 and boxed[:, :, -15:].max() == 0  # 0.6 of 96 px wide: ~19 px black each side
    marked = apply_shift(SHIFTS["marker"], 4, films)
    assert (marked[:, :30, :60] == 255).sum() > (films[:, :30, :60] == 255).sum() + 50
    assert (marked[:, 60:, :] == films[:, 60:, :]).all()  # the text stays in its corner
    square = np.zeros((1, 96, 96), np.uint8)
    square[0, 38:58, 38:58] = 200
    assert (apply_shift(SHIFTS["zoom"], 4, square) > 100).sum() > 1.8 * (square > 100).sum()  # 1.5x magnified
    assert (apply_shift(SHIFTS["squash"], 4, square) > 100).sum() > 1.4 * (square > 100).sum()  # wider
    moved = apply_shift(SHIFTS["translation"], 2, square)
    ys, xs = np.nonzero(moved[0] > 100)
    assert abs(abs(xs.mean() - 47.5) - 9.6) < 1.5 and abs(abs(ys.mean() - 47.5) - 9.6) < 1.5  # 0.1 x 96 px each way


def test_random_shifts_repeat_with_the_seed(films):
    a = apply_shift(SHIFTS["gaussian_noise"], 2, films, seed=0)
    np.testing.assert_array_equal(a, apply_shift(SHIFTS["gaussian_noise"], 2, films, seed=0))
    assert not np.array_equal(a, apply_shift(SHIFTS["gaussian_noise"], 2, films, seed=1))
    np.testing.assert_array_equal(
        apply_shift(SHIFTS["poisson_noise"], 3, films), apply_shift(SHIFTS["poisson_noise"], 3, films)
    )


def test_choosing_shifts_and_bad_names_or_severities():
    assert len(choose_shifts(None, None)) == sum(len(s.levels) for s in SHIFTS.values())
    one = choose_shifts(None, 2)
    assert {k for _, k in one} == {2} and "invert" not in {s.name for s, _ in one}  # inversion has one level
    assert [(s.name, k) for s, k in choose_shifts(["blur", "invert"], 1)] == [("blur", 1), ("invert", 1)]
    with pytest.raises(CxrError, match=f"1 \\(mild\\) to {MAX_SEVERITY}"):
        choose_shifts(None, MAX_SEVERITY + 1)
    with pytest.raises(CxrError, match="unknown shift 'fog'.*gamma"):
        choose_shifts(["fog"], None)
    with pytest.raises(CxrError, match="has severity 3"):
        choose_shifts(["invert"], 3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not CODECADEMY.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA}")
    run = make_bundle(tmp_path_factory.mktemp("stress") / "run", image_size=48)
    (run / "config.yaml").write_text(f"data: {CODECADEMY}\nimage_size: 48\n")
    return run


@needs_data
def test_stress_writes_figures_that_agree_with_evaluate_and_survive_a_reevaluation(run):
    section = run_stress(run, "test", shifts=["blur", "invert", "marker"])
    evaluated = evaluate_run(run, "test", n_bootstrap=0)
    assert section["n"] == evaluated["n"] == 66
    assert section["clean"]["accuracy"] == pytest.approx(evaluated["accuracy"])
    assert len(section["conditions"]) == 4 + 1 + 4
    s = section["summary"]
    assert s["mean_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in section["conditions"]]))
    assert s["worst_condition"]["accuracy"] == min(r["accuracy"] for r in section["conditions"])
    assert set(s["shift_means"]) == {"blur", "invert", "marker"}
    stored = json.loads((run / "metrics.json").read_text())["test"]
    assert stored["stress"]["summary"] == json.loads(json.dumps(s)) and stored["accuracy"] == evaluated["accuracy"]
    rows = list(csv.DictReader(open(run / "stress_test.csv")))
    assert rows[0]["shift"] == "clean" and len(rows) == 10
    assert (run / "plots" / "stress_test.png").stat().st_size > 10_000


@needs_data
def test_stress_on_onnx_and_on_an_ensemble(run, tmp_path):
    onnx_run = shutil.copytree(run, tmp_path / "onnx")
    export_onnx(onnx_run)
    a = run_stress(run, "test", shifts=["jpeg"], severity=4, backend="torch")
    b = run_stress(onnx_run, "test", shifts=["jpeg"], severity=4, backend="onnx")
    assert b["backend"] == "onnx" and b["conditions"][0]["accuracy"] == pytest.approx(
        a["conditions"][0]["accuracy"], abs=2 / 66
    )
    first = shutil.copytree(run, tmp_path / "m0")
    other = make_bundle(tmp_path / "m1", image_size=48, seed=1)
    for m in (first, other):
        (m / "splits.csv").write_text("path,label,split\nx.png,Covid,val\n")
    combine_runs([first, other], tmp_path / "ens")
    (tmp_path / "ens" / "config.yaml").write_text(f"data: {CODECADEMY}\nimage_size: 48\n")
    e = run_stress(tmp_path / "ens", "test", shifts=["gamma"], severity=1)
    assert e["n"] == 66 and 0 <= e["conditions"][0]["accuracy"] <= 1


@needs_data
def test_cli_stress_prints_the_table_and_refuses_bad_input_in_one_line(run):
    runner = CliRunner()
    result = runner.invoke(app, ["stress", str(run), "--shift", "brightness", "--severity", "1"])
    assert result.exit_code == 0, result.output
    assert "brightness" in result.output and "mean under shift" in result.output
    for args, message in [
        (["--severity", "7"], "--severity must be 1"),
        (["--shift", "fog"], "unknown shift"),
        (["--split", "val"], "no splits.csv"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-c", "from cxr.cli import main; main()", "stress", str(run), *args],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@needs_data
def test_report_shows_the_stress_section_once_stress_has_run(run, tmp_path):
    from cxr.evaluation.report import write_report

    copy = make_bundle(tmp_path / "run", image_size=48)  # never stressed (the module's run may have been)
    (copy / "config.yaml").write_text(f"data: {CODECADEMY}\nimage_size: 48\n")
    html = write_report(copy, "test", gradcam=False).read_text()
    assert 'id="stress"' not in html  # never stressed: no section
    run_stress(copy, "test", shifts=["contrast", "invert"])
    html = write_report(copy, "test", gradcam=False).read_text()
    section = html[html.index('id="stress"') : html.index("</section>", html.index('id="stress"'))]
    assert "Acquisition shifts" in section and "contrast" in section and "invert" in section
    assert section.count("<tr>") == 3 and "data:image/png;base64" in section
