"""One image-grid renderer for every tiled figure: data preview, evaluation gallery, feature maps, CAM sheets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxr.figures import plt


def image_grid(
    tiles: Sequence[np.ndarray | None],
    titles: Sequence[str],
    path: str | Path,
    colours: Sequence[str] | None = None,
    ncols: int | None = None,
    suptitle: str | None = None,
    cmap: str = "gray",
    tile_inches: float = 2.2,
    frame_colours: bool = False,
) -> Path:
    """Save uint8 tiles ((H, W) shown with `cmap` on 0..255, or (H, W, 3) RGB) in a grid with a title each.

    A None tile leaves its cell empty (to start a new row). `colours` tint the titles (and, with `frame_colours`,
    a thick frame, e.g. red for a wrong prediction).
    """
    if len(tiles) != len(titles):
        raise ValueError("one title per tile")
    path = Path(path)
    n = max(1, len(tiles))
    ncols = ncols or min(8, math.ceil(math.sqrt(n * 1.5)))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * tile_inches, nrows * (tile_inches + 0.35) + 0.6), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(tiles) or tiles[i] is None:
            ax.axis("off")
            continue
        tile = tiles[i]
        ax.imshow(tile, cmap=None if tile.ndim == 3 else cmap, vmin=0, vmax=255)
        colour = colours[i] if colours is not None else "black"
        ax.set_title(titles[i], fontsize=7.5, color=colour)
        if frame_colours and colours is not None:
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scale any array to 0..255 (a flat array becomes black) for display."""
    values = np.asarray(values, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - lo) / (hi - lo) * 255).astype(np.uint8)
