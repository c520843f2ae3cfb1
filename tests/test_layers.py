"""The layers hold: import-linter's contracts (.importlinter) are kept, and an import inside a function of a core
module is one of the few that have a reason (the CLI imports inside its commands: `cxr --help` loads no torch)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# (module, what it imports inside a function): why it is not at module level
LAZY_ON_PURPOSE = {
    ("cxr", "cxr.inference.bundle"): "the public API loads torch on first use: `import cxr` stays light",
    ("cxr", "cxr.training.train"): "as above",
    ("cxr", "cxr.evaluation.evaluate"): "as above",
    ("cxr.config", "cxr.models"): "the config stays light (pydantic only): validating a model name loads torch",
    ("cxr.config", "cxr.models.pretrained"): "as above",
    ("cxr.config", "cxr.evaluation.operating_point"): "as above (scikit-learn)",
    ("cxr.data.images", "cxr.data.dicom"): "circle: dicom raises images' ImageReadError; pydicom loads for DICOM only",
    ("cxr.explain.images", "cxr.explain.feature_maps"): "circle: explain's package init imports images",
    ("cxr.explain.shortcut", "cxr.explain.images"): "circle: images imports shortcut's border helpers",
    ("cxr.serve.app", "cxr.serve.dicom"): "the optional extra cxr[dicom]: pynetdicom loads only with --dicom-port",
    ("cxr.docs_reference", "cxr.cli"): "the docs generator runs inside mkdocs: it loads the CLI when a page is built",
    ("cxr.docs_reference", "cxr.config"): "as above",
}


def _function_level_imports() -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith("cxr.cli"):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cxr"):
                        found.add((module, node.module))
    return found


def test_an_import_inside_a_core_function_has_a_reason():
    unexplained = _function_level_imports() - set(LAZY_ON_PURPOSE)
    assert not unexplained, f"move these to module level, or say in LAZY_ON_PURPOSE why not: {sorted(unexplained)}"


def test_the_layers_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([lint], capture_output=True, text=True, cwd=SRC.parent)
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count("KEPT") == 3
