"""The HTML report: self-contained, complete, evaluates when needed; the CLI commands around it."""

import json
import os
import re
import time

from cxr.evaluation.report import needs_evaluation, write_report
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.evaluation.runs import make_run


def _images(html):
    return re.findall(r'<img src="([^"]*)"', html)


def test_report_is_self_contained_and_has_every_section(tmp_path):
    run = make_run(tmp_path, steps=25)
    assert needs_evaluation(run, "test")
    out = write_report(run, gradcam=False, evaluate_kwargs={"n_bootstrap": 100})
    html = out.read_text()
    assert out == run / "report.html" and not needs_evaluation(run, "test")
    for heading in (
        "Model &amp; data",
        "Performance on test",
        "Operating point",
        "Calibration",
        "Error gallery",
        "Methods",
    ):
        assert heading in html, heading
    srcs = _images(html)
    assert len(srcs) >= 4 and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "{{" not in html and "{%" not in html
    m = json.loads((run / "metrics.json").read_text())["test"]
    assert f"{m['accuracy']:.3f}" in html and f"{m['ci']['accuracy'][0]:.3f}" in html
    assert "100 resamples" in html


def test_multiclass_report_has_no_operating_point_and_gallery_has_gradcam(tmp_path):
    import cxr.explain.cam  # noqa: F401 (cxr's own module, MONAI a core dependency: an import error fails, never skips)

    run = make_run(tmp_path, classes=("a", "b", "c"), steps=2)
    html = write_report(run, gallery_size=3, evaluate_kwargs={"n_bootstrap": 50}).read_text()
    assert 'id="operating"' not in html and "macro one-vs-rest" in html
    n_wrong = json.loads((run / "metrics.json").read_text())["test"]["n"] - sum(
        1 for line in (run / "predictions_test.csv").read_text().splitlines()[1:] if line.split(",")[3] == "1"
    )
    assert html.count('alt="Grad-CAM of') == min(3, n_wrong)


def test_report_re_evaluates_when_the_model_changed(tmp_path):
    run = make_run(tmp_path, steps=2)
    write_report(run, gradcam=False, evaluate_kwargs={"n_bootstrap": 20})
    assert not needs_evaluation(run, "test")
    later = time.time() + 5
    os.utime(run / "model.pt", (later, later))  # as `cxr site calibrate` rewrites it
    assert needs_evaluation(run, "test")


def test_cli_evaluate_calibrate_compare_report(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path, steps=25)
    weak = make_run(tmp_path, steps=2, seed=1)
    readers = tmp_path / "readers.csv"
    readers.write_text("path,reader\nnormal/img000.png,normal\npneumonia/img001.png,normal\nnormal/img002.png,normal\n")

    proc = run_cli_inprocess(capsys, monkeypatch, "site", "calibrate", run, "--operating-point", "youden")
    assert proc.returncode in (0, None) and "threshold" in proc.stdout
    proc = run_cli_inprocess(
        capsys, monkeypatch, "evaluate", run, "--bootstrap", "50", "--reference", readers, "--report"
    )
    assert proc.returncode in (0, None), proc.stderr
    assert "youden" in proc.stdout and "Cohen's kappa" in proc.stdout and (run / "report.html").is_file()
    assert "Agreement with readers" in (run / "report.html").read_text()
    proc = run_cli_inprocess(capsys, monkeypatch, "compare", run, weak, "--bootstrap", "50", "--out", tmp_path / "c")
    assert proc.returncode in (0, None) and "McNemar" in proc.stdout and (tmp_path / "c" / "comparison.json").is_file()
    proc = run_cli_inprocess(capsys, monkeypatch, "report", run, "--no-gradcam", "--out", tmp_path / "r.html")
    assert proc.returncode in (0, None) and (tmp_path / "r.html").is_file()


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path, steps=2)
    multi = make_run(tmp_path, classes=("a", "b", "c"), steps=2)
    cases = [
        (["site", "calibrate", multi, "--operating-point", "youden"], ["binary"]),
        (["site", "calibrate", run, "--operating-point", "sens=0.9"], ["not understood"]),
        (["evaluate", run, "--bootstrap", "0", "--reference", tmp_path / "nope.csv"], ["not found"]),
        (["compare", run, multi], ["differ"]),
        (["report", tmp_path / "missing"], ["no such run"]),
        (["train", "--data", tmp_path / "data3", "--operating-point", "youden", "--out", tmp_path / "t"], ["binary"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *args), *fragments)
    assert not (tmp_path / "t" / "checkpoints").exists()  # refused before any training
