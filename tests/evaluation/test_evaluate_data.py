import json

import pytest

from cxr.config import load_run_config
from cxr.errors import CxrError
from cxr.evaluation.evaluate import evaluate_run, evaluation_key, split_files
from tests.conftest import make_class_folders
from tests.evaluation.runs import SIZE, make_run


def test_another_sites_folders_match_the_models_classes_ignoring_case(tmp_path):
    # "covid" sorts after "Normal" but is the model's class 0: labels must follow the names, not the folder order
    site = make_class_folders(tmp_path / "site", classes=("covid", "Normal"), n_train=2, n_test=3, size=16)
    files = split_files(tmp_path, "test", ["Covid", "Normal"], data=site)
    assert {p.parent.name: y for p, y in zip(files.paths, files.labels)} == {"covid": 0, "Normal": 1}
    assert len(files) == 6
    other = make_class_folders(tmp_path / "other", classes=("covid", "tb"), n_train=2, n_test=1, size=16)
    with pytest.raises(CxrError, match=r"classes \['covid', 'tb'\] differ from the model's classes"):
        split_files(tmp_path, "test", ["Covid", "Normal"], data=other)


def test_another_sites_figures_go_beside_the_runs_own_never_over_them(tmp_path):
    run = make_run(tmp_path)
    own = evaluate_run(run, "test", n_bootstrap=0)
    own_csv = (run / "predictions_test.csv").read_text()
    site = make_class_folders(tmp_path / "site", n_train=2, n_test=5, size=SIZE, seed=1)
    assert evaluation_key(run, "test", load_run_config(run).data) == "test"  # the run's own data, named explicitly
    assert evaluation_key(run, "test", site) == "test@site"

    theirs = evaluate_run(run, "test", data=site, n_bootstrap=0)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["n"] == own["n"] == 20 and saved["test@site"]["n"] == theirs["n"] == 10
    assert saved["test"]["accuracy"] == own["accuracy"]
    assert (run / "predictions_test.csv").read_text() == own_csv
    assert (run / "predictions_test@site.csv").is_file() and (run / "plots" / "roc_test@site.png").is_file()
