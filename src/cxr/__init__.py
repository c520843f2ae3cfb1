"""cxr: chest X-ray classification from a folder of images to a served model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cxr.version import __version__

if TYPE_CHECKING:
    from cxr.inference.bundle import Bundle


def load(run_dir: str | Path) -> "Bundle":
    """Load a finished run (model bundle) for prediction: `cxr.load("runs/demo").predict(["a.png"])`."""
    from cxr.inference.bundle import Bundle

    return Bundle.load(run_dir)


__all__ = ["__version__", "load"]
