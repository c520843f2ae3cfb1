"""Optional extras (cxr.extras): a plain install predicts and trains; serving, PostgreSQL, sweeps and tracking need
their extra, and a missing one is a one-line error naming `pip install "cxr[EXTRA]"`, never a traceback."""

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from cxr.errors import CxrError
from cxr.extras import EXTRAS, require

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = (
    "fastapi",
    "fastapi_offline",
    "uvicorn",
    "python_multipart",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "optuna",
    "pandas",
    "mlflow",
)


def _missing(monkeypatch, *modules):
    """Import as if these modules were not installed (None in sys.modules halts their import)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_is_declared_in_pyproject_and_none_is_a_hard_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRAS) | {"pretrained", "dev"} == set(extras)
    hard = " ".join(project["dependencies"]).lower()
    for package in (
        "fastapi",
        "uvicorn",
        "multipart",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "optuna",
        "pandas",
        "mlflow",
    ):
        assert package not in hard, package
    assert "dev,serve,dicom,pg,sweep,track,pretrained" in (ROOT / "Makefile").read_text()  # make test keeps everything


def test_an_installed_module_is_returned():
    assert require("sweep", "optuna").__name__ == "optuna"
    assert require("track") is not None  # every module of the extra


@pytest.mark.parametrize(
    "extra, module",
    [("sweep", "optuna"), ("sweep", "pandas"), ("track", "mlflow"), ("serve", "fastapi"), ("pg", "psycopg")],
)
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, extra, module):
    _missing(monkeypatch, module)
    with pytest.raises(CxrError) as e:
        require(extra)
    message = str(e.value)
    assert f'pip install "cxr[{extra}]"' in message and module in message and "\n" not in message


def test_tracking_without_mlflow_names_the_extra_not_an_unreachable_store(monkeypatch, tmp_path):
    from cxr.tracking import check_tracking

    _missing(monkeypatch, "mlflow")
    with pytest.raises(CxrError, match=r'pip install "cxr\[track\]"') as e:
        check_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "cannot be reached" not in str(e.value)


def test_a_postgresql_database_without_psycopg_names_the_pg_extra(monkeypatch):
    from cxr.readingroom.db import connect

    _missing(monkeypatch, "psycopg")
    with pytest.raises(CxrError, match=r'pip install "cxr\[pg\]"'):
        connect("postgresql+psycopg://reader@127.0.0.1:1/reading")


BLOCKED_RUN = """
import importlib.machinery, sys

class NotInstalled(importlib.machinery.PathFinder):  # finds every module on sys.path but the optional ones
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [NotInstalled if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
import cxr, cxr.config, cxr.training.train, cxr.inference.bundle, cxr.inference.predict
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {blocked!r})
assert not loaded, loaded
from cxr.errors import CxrError
for module, extra in (("cxr.training.sweep", "sweep"), ("cxr.serve", "serve"), ("cxr.readingroom", "serve")):
    try:
        __import__(module)
    except CxrError as e:
        assert f'cxr[{{extra}}]' in str(e) and "\\n" not in str(e), (module, str(e))
    else:
        raise AssertionError(module + " imported without its extra")
print("ok")
"""


def test_without_the_extras_cxr_trains_and_predicts_and_names_what_is_missing():
    """A fresh interpreter in which no optional package can be imported (as after a plain `pip install cxr`): the
    training and prediction modules import, and the modules that need an extra say which in one line."""
    code = textwrap.dedent(BLOCKED_RUN).format(blocked=set(OPTIONAL))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
