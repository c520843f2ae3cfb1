"""The one headless (Agg) pyplot and figure writer every layer draws with (evaluation plots, audit plots, grids)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are files
import matplotlib.pyplot as plt  # noqa: E402

DPI = 120


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (making the folder) and close `fig`; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


__all__ = ["plt", "save_figure"]
