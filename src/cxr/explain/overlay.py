"""Heatmap overlays: an RGB array the size of the X-ray, and a titled two-panel PNG (X-ray | overlay)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cxr.explain.cam import Explanation  # noqa: E402

CORRECT_COLOUR, WRONG_COLOUR = "#1a7f37", "#cf222e"


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """(H, W) uint8 X-ray + (H, W) heatmap in 0..1 -> (H, W, 3) uint8.

    Opacity grows with the heat (up to `alpha`), so regions the model ignores stay plain X-ray.
    """
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in size")
    alpha = float(np.clip(alpha, 0.0, 1.0))
    gray = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    heat = np.clip(heatmap, 0.0, 1.0)[..., None]
    colour = plt.get_cmap(cmap)(heat[..., 0])[..., :3]
    weight = alpha * heat
    return np.round(255 * ((1 - weight) * gray + weight * colour)).astype(np.uint8)


def explanation_title(e: Explanation) -> tuple[str, str]:
    """Title text and colour: predicted class and probability, true label when known (red when wrong)."""
    p = float(e.probabilities[e.predicted_index])
    parts = [f"predicted {e.predicted} ({p:.2f})"]
    if e.label is not None:
        parts.append(f"true {e.label}" + ("" if e.correct else "  WRONG"))
    if e.class_index != e.predicted_index:
        parts.append(f"explaining {e.explained} ({float(e.probabilities[e.class_index]):.2f})")
    colour = "black" if e.correct is None else (CORRECT_COLOUR if e.correct else WRONG_COLOUR)
    return " | ".join(parts), colour


def explanation_figure(e: Explanation, alpha: float = 0.5) -> plt.Figure:
    """Two panels at the image's own aspect ratio: the X-ray, and the X-ray with the heatmap."""
    h, w = e.image.shape
    panel_h = 4.5
    panel_w = panel_h * w / h
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_w + 0.9, panel_h + 0.9))
    axes[0].imshow(e.image, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(e.path.name if e.path is not None else "input", fontsize=9)
    axes[1].imshow(overlay_rgb(e.image, e.heatmap, alpha))
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="jet")  # pixels are RGB already
    axes[1].set_title(
        f"{'Grad-CAM++' if e.method == 'gradcam++' else 'Grad-CAM'} for {e.explained} ({e.layer})", fontsize=9
    )
    fig.colorbar(scale, ax=axes[1], fraction=0.046, pad=0.02, ticks=[]).set_label("attention (low to high)", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    title, colour = explanation_title(e)
    fig.suptitle(title, color=colour, fontsize=11)
    fig.tight_layout()
    return fig


def explanation_png(e: Explanation, alpha: float = 0.5, dpi: int = 110) -> bytes:
    """The titled overlay as PNG bytes (for a web response)."""
    buf = io.BytesIO()
    fig = explanation_figure(e, alpha)
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_explanation(e: Explanation, path: str | Path, alpha: float = 0.5) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(explanation_png(e, alpha))
    return path
