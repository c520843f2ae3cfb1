import pytest

from cxr.errors import CxrError
from cxr.evaluation.evaluate import split_files
from tests.conftest import make_class_folders


def test_another_sites_folders_match_the_models_classes_ignoring_case(tmp_path):
    # "covid" sorts after "Normal" but is the model's class 0: labels must follow the names, not the folder order
    site = make_class_folders(tmp_path / "site", classes=("covid", "Normal"), n_train=2, n_test=3, size=16)
    files = split_files(tmp_path, "test", ["Covid", "Normal"], data=site)
    assert {p.parent.name: y for p, y in zip(files.paths, files.labels)} == {"covid": 0, "Normal": 1}
    assert len(files) == 6
    other = make_class_folders(tmp_path / "other", classes=("covid", "tb"), n_train=2, n_test=1, size=16)
    with pytest.raises(CxrError, match=r"classes \['covid', 'tb'\] differ from the model's classes"):
        split_files(tmp_path, "test", ["Covid", "Normal"], data=other)
