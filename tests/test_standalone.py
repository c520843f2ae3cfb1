"""The package stands alone: a plain (non-editable) `pip install` of a copy of this tree, in a fresh venv without any
extra, trains the kermany recipe (its start, `pretrained: radiography-v0.6`, comes in the package) and a
`--pretrained radiography` run from a folder outside the repository, and predicts with both.

Slow (a fresh venv: torch and every hard dependency installed, minutes): `pytest -m slow tests/test_standalone.py`.
CXR_STANDALONE_VENV=DIR reuses (or keeps) the venv in DIR; cxr itself is always installed afresh from the copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_class_folders

ROOT = Path(__file__).resolve().parents[1]
PYTHON = shutil.which("python3.11") or sys.executable
TORCH = "torch==2.13.0"  # the CPU wheel the Makefile installs first
NOT_SHIPPED = (
    ".venv",
    ".git",
    "runs",
    "site",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
    ".grimp_cache",
    ".whl",
    ".gpudata",
    "mlruns",
    "mlartifacts",
)
OPTIONAL = ("optuna", "mlflow", "fastapi", "sqlalchemy", "psycopg", "pandas", "uvicorn", "alembic")


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 1800) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_plain_install_trains_and_predicts_outside_the_repository(tmp_path):
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(CUDA_VISIBLE_DEVICES="", CXR_CACHE_DIR=str(tmp_path / "cache"))
    venv = Path(os.environ.get("CXR_STANDALONE_VENV") or tmp_path / "venv")
    if not (venv / "bin" / "python").is_file():
        _run([PYTHON, "-m", "venv", venv], tmp_path, env)
        _run([venv / "bin" / "pip", "install", "-q", TORCH], tmp_path, env)
    tree = tmp_path / "tree"  # the working tree without its venv, runs or caches
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    subprocess.run([venv / "bin" / "pip", "uninstall", "-q", "-y", "cxr"], cwd=tmp_path, env=env, capture_output=True)
    _run([venv / "bin" / "pip", "install", "-q", tree], tmp_path, env)  # not editable; hard dependencies, no extra
    print(f"installed in {time.perf_counter() - t0:.0f} s")

    work = tmp_path / "elsewhere"  # no cxr source here: the recipe and its weights come from the package
    make_class_folders(work / "data", n_train=12, n_test=4, size=64)
    cxr = venv / "bin" / "cxr"
    t1 = time.perf_counter()
    _run([cxr, "train", "--config", "kermany", "--data", "data", "--epochs", "1", "--out", "kermany"], work, env)
    _run([cxr, "predict", "kermany", "data/test", "--out", "kermany.csv"], work, env)
    _run(
        [cxr, "train", "--data", "data", "--pretrained", "radiography", "--epochs", "1", "--out", "radiography"],
        work,
        env,
    )
    _run([cxr, "predict", "radiography", "data/test", "--out", "radiography.csv"], work, env)
    print(f"trained and predicted twice in {time.perf_counter() - t1:.0f} s")
    for name in ("kermany", "radiography"):
        assert len((work / f"{name}.csv").read_text().splitlines()) == 1 + 8, name
    starts = {
        name: json.loads((work / name / "metrics.json").read_text())["training"]["init_weights"]["source"]
        for name in ("kermany", "radiography")
    }
    site = Path(
        _run(
            [venv / "bin" / "python", "-c", "import cxr, os; print(os.path.dirname(cxr.__file__))"], work, env
        ).stdout.strip()
    )
    assert starts == {
        "kermany": str(site / "weights" / "smallnet-radiography-224-v0.6.pt"),
        "radiography": str(site / "weights" / "smallnet-radiography-224.pt"),
    }, starts
    assert ROOT not in site.parents and "site-packages" in site.parts  # the installed package, not this checkout

    # no extra installed: none of them is there, and the modules that need one name it in one line
    probe = (
        "import importlib.util, sys\n"
        f"print(sorted(m for m in {OPTIONAL!r} if importlib.util.find_spec(m)))\n"
        "from cxr.errors import CxrError\n"
        "try:\n    import cxr.training.sweep\nexcept CxrError as e:\n    print(e)\n"
    )
    out = _run([venv / "bin" / "python", "-c", probe], work, env).stdout.splitlines()
    assert out[0] == "[]" and 'pip install "cxr[sweep]"' in out[1], out
    print(f"standalone check: {time.perf_counter() - t0:.0f} s in all")
