"""Site calibration: a cut grouped by patient, a calibrated bundle that records its films and is never scored on them,
and a threshold that moves the way a shifted site demands; binary, multi-class and ensembles; one-line errors."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cxr.data.images import file_sha256
from cxr.data.manifest import read_manifest, write_manifest
from cxr.data.splits import patient_ids, resplit_dataset
from cxr.errors import CxrError
from cxr.evaluation.calibration import calibrate_run
from cxr.evaluation.evaluate import evaluate_run
from cxr.evaluation.report import build_context
from cxr.evaluation.site import MIN_FILMS_PER_CLASS, SITE_KEY, calibrate_on_site
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.inference.ensemble import combine_runs
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.conftest import synthetic_image
from tests.evaluation.runs import SIZE, make_run

KERMANY_NAMES = r"person(\d+)_"


def site_folder(root, classes=("NORMAL", "PNEUMONIA"), patients=10, films=2, shift=0.0, seed=0):
    """Flat `<class>/personN_M.png` films, `films` per patient; `shift` blends the pneumonia pattern into the normals
    (a site whose normals score higher)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for patient in range(patients):
            for film in range(films):
                img = synthetic_image(label, rng, SIZE).astype(float)
                if label == 0 and shift:
                    img = (1 - shift) * img + shift * synthetic_image(1, rng, SIZE)
                pid = 100 * label + patient
                Image.fromarray(img.astype(np.uint8)).save(root / name / f"person{pid}_{film}.png")
    return root


def cut(site, out_csv, fraction=0.3, seed=0):
    result = resplit_dataset(site, 0, 0, seed, by_patient=True, pattern=KERMANY_NAMES, calibration=fraction)
    write_manifest(out_csv, result.splits, result.classes, result.patient_ids)
    return result


def test_the_cut_is_stratified_seeded_and_no_patient_is_on_both_sides(tmp_path):
    site = site_folder(tmp_path / "site", patients=20, films=3)
    result = cut(site, tmp_path / "site.csv", fraction=0.3, seed=0)
    cal, test = result.splits["calibration"], result.splits["test"]
    assert set(result.splits) == {"calibration", "test"} and result.grouped
    ids = lambda files: set(patient_ids(files.paths, KERMANY_NAMES))  # noqa: E731
    assert not ids(cal) & ids(test) and len(ids(cal)) + len(ids(test)) == 40
    assert len(cal) + len(test) == 120 and 0.2 <= len(cal) / 120 <= 0.4  # three of ten patient folds
    assert all(0 < cal.labels.count(k) < test.labels.count(k) for k in (0, 1))  # both classes on both sides
    assert cut(site, tmp_path / "again.csv", seed=0).splits["calibration"].paths == cal.paths
    assert cut(site, tmp_path / "other.csv", seed=1).splits["calibration"].paths != cal.paths
    back = read_manifest(tmp_path / "site.csv", require_train=False)  # the manifest reads back as written
    assert len(back.splits["calibration"]) == len(cal) and back.patient_ids


def test_a_film_stored_twice_lands_on_one_side_of_the_cut(tmp_path):
    site = site_folder(tmp_path / "site", patients=20, films=1)
    for k in range(6):  # copies under new names (no patient id in them): the cut must keep each pair together
        shutil.copyfile(site / "NORMAL" / f"person{k}_0.png", site / "NORMAL" / f"copy{k}.png")
    for seed in range(3):
        splits = cut(site, tmp_path / "site.csv", seed=seed).splits
        names = {s: {p.name for p in files.paths} for s, files in splits.items()}
        for k in range(6):
            side = "calibration" if f"copy{k}.png" in names["calibration"] else "test"
            assert f"person{k}_0.png" in names[side]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    return tmp, make_run(tmp)


def test_a_calibration_film_is_never_scored_and_the_source_run_is_kept(runs, tmp_path, capsys, monkeypatch):
    _, run = runs
    site = site_folder(tmp_path / "site", patients=12)
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "data",
        "split",
        site,
        "--calibration",
        "0.3",
        "--out",
        tmp_path / "site.csv",
        "--patient-pattern",
        KERMANY_NAMES,
    )
    assert proc.returncode == 0, proc.stderr
    before = (run / BUNDLE_FILE).read_bytes()
    new = tmp_path / "new"
    proc = run_cli_inprocess(
        capsys,
        monkeypatch,
        "site",
        "calibrate",
        run,
        "--data",
        tmp_path / "site.csv",
        "--out",
        new,
        "--operating-point",
        "youden",
    )
    assert proc.returncode == 0, proc.stderr
    assert (run / BUNDLE_FILE).read_bytes() == before  # the source run is never changed
    rows = list(csv.DictReader(open(tmp_path / "site.csv")))
    cal_files = [tmp_path / r["path"] for r in rows if r["split"] == "calibration"]
    record = Bundle.load(new).meta.extra[SITE_KEY]
    assert record["site"] == "site" and record["n"] == len(cal_files)
    assert {sha for _, sha in record["films"]} == {file_sha256(p) for p in cal_files}
    assert sum(record["n_per_class"].values()) == len(cal_files) and min(record["n_per_class"].values()) > 0
    saved = json.loads((new / "metrics.json").read_text())["calibration"]
    assert saved["split"] == "calibration@site" and saved[SITE_KEY]["n"] == len(cal_files)

    metrics = evaluate_run(new, "test", data=tmp_path / "site.csv", n_bootstrap=0)
    n_test = sum(r["split"] == "test" for r in rows)
    assert metrics["n"] == n_test and metrics[SITE_KEY]["calibration_films"] == len(cal_files)
    assert metrics["operating_points"][-1]["name"] == "youden (site)"  # the threshold says where it was chosen
    note = build_context(new, "test@site", gradcam=False)["notes"][0]
    assert f"{len(cal_files)} films of site site calibrated this model" in note and f"none of the {n_test}" in note

    # a calibration film copied under another name into the scored rows (a re-cut with another seed, say)
    copy = site / "NORMAL" / "renamed.png"
    shutil.copyfile(cal_files[0], copy)
    with open(tmp_path / "site.csv", "a", newline="") as f:
        csv.writer(f).writerow([str(copy.relative_to(tmp_path)), "NORMAL", "", "test"])
    proc = run_cli_inprocess(capsys, monkeypatch, "evaluate", new, "--data", tmp_path / "site.csv", "--bootstrap", "0")
    assert_one_line_error(proc, "renamed.png calibrated this model", cal_files[0].relative_to(site).as_posix())

    calibrate_run(new)  # calibrated again in place, on the run's own validation split: the site record goes with it
    assert SITE_KEY not in Bundle.load(new).meta.extra


def test_a_threshold_chosen_on_a_site_whose_normals_score_higher_moves_up(runs, tmp_path):
    _, run = runs
    plain, shifted = (
        site_folder(tmp_path / "plain", patients=15),
        site_folder(tmp_path / "shifted", patients=15, shift=0.6, seed=1),
    )
    thresholds, specificity = {}, {}
    for name, site in (("plain", plain), ("shifted", shifted)):
        cut(site, tmp_path / f"{name}.csv", fraction=0.5)
        out = calibrate_on_site(
            run, tmp_path / f"{name}.csv", tmp_path / f"new-{name}", operating_point="specificity=0.9", fit_temp=False
        )  # one scale: thresholds compare
        thresholds[name] = out.calibration.threshold
    site_normals = [p for p in (shifted / "NORMAL").iterdir()]
    p_normal = Bundle.load(run).predict(site_normals).probabilities[:, 1]
    assert np.median(p_normal) > thresholds["plain"]  # the shift is real: most site normals look positive
    assert thresholds["shifted"] > thresholds["plain"] + 0.1
    for name in thresholds:  # scored on the shifted site's held-out films
        m = evaluate_run(tmp_path / f"new-{name}", "test", data=tmp_path / "shifted.csv", n_bootstrap=0)
        specificity[name] = m["specificity"]
    assert specificity["shifted"] > specificity["plain"] + 0.3


def test_multi_class_and_ensemble_bundles_with_adaptation(runs, tmp_path):
    tmp, _ = runs
    classes = ("Covid", "normal", "pneumonia")
    members = [make_run(tmp, classes=classes, steps=5, seed=s) for s in (0, 1)]
    ensemble = tmp_path / "ensemble"
    combine_runs(members, ensemble)
    site = site_folder(tmp_path / "site", classes=("COVID", "Normal", "Pneumonia"), patients=10)  # another spelling
    cut(site, tmp_path / "site.csv", fraction=0.5)
    for source in (members[0], ensemble):
        out = tmp_path / f"new-{source.name}"
        result = calibrate_on_site(source, tmp_path / "site.csv", out, adapt=[site])
        bundle = Bundle.load(out)
        assert result.calibration.threshold is None and bundle.meta.threshold is None  # temperature only
        assert bundle.meta.temperature == pytest.approx(result.calibration.temperature) != 1.0
        assert list(result.record["n_per_class"]) == list(classes) and result.adapted.images == 60
        assert bundle.meta.extra["adapted"]["images"] == 60 and bundle.meta.model == Bundle.load(source).meta.model
        metrics = evaluate_run(out, "test", data=tmp_path / "site.csv", n_bootstrap=0)
        assert metrics[SITE_KEY]["scored_among_adaptation_films"] == metrics["n"]  # adapted on all, said so


def test_bad_input_is_a_one_line_error(runs, tmp_path, capsys, monkeypatch):
    _, run = runs
    site = site_folder(tmp_path / "site", patients=6)
    cut(site, tmp_path / "site.csv", fraction=0.5)
    cli = lambda *a: run_cli_inprocess(capsys, monkeypatch, "site", "calibrate", run, *a)  # noqa: E731
    assert_one_line_error(cli("--data", tmp_path / "site.csv", "--out", run), "already holds a model")
    assert_one_line_error(cli("--data", tmp_path / "site.csv"), "--data needs --out")
    assert_one_line_error(cli("--out", tmp_path / "x"), "add --data")
    other = site_folder(tmp_path / "other", classes=("covid", "tb"), patients=6)
    cut(other, tmp_path / "other.csv", fraction=0.5)
    assert_one_line_error(cli("--data", tmp_path / "other.csv", "--out", tmp_path / "x"), "differ from the model's")
    few = site_folder(tmp_path / "few", patients=4, films=1)
    cut(few, tmp_path / "few.csv", fraction=0.5)
    assert_one_line_error(
        cli("--data", tmp_path / "few.csv", "--out", tmp_path / "x"), f"at least {MIN_FILMS_PER_CLASS} of every class"
    )
    assert_one_line_error(cli("--data", site, "--out", tmp_path / "x"), "has no calibration split")
    proc = run_cli_inprocess(
        capsys, monkeypatch, "data", "split", site, "--calibration", "0.3", "--test", "0.2", "--out", tmp_path / "y.csv"
    )
    assert_one_line_error(proc, "drop --val and --test")
    assert not (tmp_path / "x" / BUNDLE_FILE).exists()
    with pytest.raises(CxrError, match="must be a fraction"):
        resplit_dataset(site, 0, 0, 0, True, KERMANY_NAMES, calibration=1.5)
