"""Explain files or arrays and save the results: what `cxr explain`, the HTML report and the web service call."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from cxr.data.images import find_images, load_grayscale
from cxr.explain.cam import CamExplainer, Explanation
from cxr.explain.overlay import explanation_png, save_explanation
from cxr.explain.shortcut import DEFAULT_BORDER, border_fraction


@dataclass
class ExplainedFile:
    """One saved overlay and what it shows (a row of `explanations.csv`)."""

    path: Path
    label: str | None
    predicted: str
    probability: float
    explained: str
    border_fraction: float
    overlay: Path
    feature_maps: Path | None = None


@dataclass
class ExplainResult:
    files: list[ExplainedFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # unreadable inputs, skipped
    layer: str = ""
    csv: Path | None = None


def _unique_name(path: Path, used: set[str]) -> str:
    """`<class folder>_<stem>`: images with the same name in different class folders do not overwrite each other."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{path.parent.name}_{path.stem}").strip("_") or "image"
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def explain_images(
    bundle,
    paths: Iterable[str | Path],
    out_dir: str | Path,
    method: str = "gradcam",
    layer: str | None = None,
    class_name: str | None = None,
    alpha: float = 0.5,
    labels: dict[Path, str] | None = None,
    feature_maps: bool = False,
    batch_size: int = 16,
    progress: bool = False,
    explainer: CamExplainer | None = None,
) -> ExplainResult:
    """Save one overlay PNG per image under `out_dir` (`<folder>_<stem>_<method>.png`) plus `explanations.csv`.

    `bundle` is a loaded `cxr.inference.bundle.Bundle`; `labels` maps paths to true classes (otherwise a parent
    folder named like a class is taken as the label). Unreadable files are skipped and listed in `errors`.
    """
    from cxr.explain.feature_maps import save_feature_maps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    explainer = explainer or CamExplainer(bundle, method, layer)
    files = find_images(list(paths))
    result = ExplainResult(layer=explainer.layer)
    used: set[str] = set()
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("explaining", total=len(files))
        for item in explainer.explain_paths(files, class_name, labels, batch_size):
            bar.advance(task)
            if isinstance(item, str):
                result.errors.append(item)
                continue
            name = _unique_name(item.path, used)
            overlay = save_explanation(item, out_dir / f"{name}_{explainer.method.replace('++', 'pp')}.png", alpha)
            maps = None
            if feature_maps:
                model_view = load_grayscale(item.path, bundle.meta.image_size)
                maps = save_feature_maps(
                    bundle,
                    model_view,
                    out_dir / f"{name}_feature_maps.png",
                    title=f"{item.path.name}: first convolution layers",
                )
            result.files.append(_record(item, overlay, maps))
    result.csv = write_explanations_csv(out_dir / "explanations.csv", result.files)
    return result


def _record(e: Explanation, overlay: Path, maps: Path | None) -> ExplainedFile:
    return ExplainedFile(
        path=Path(e.path) if e.path is not None else Path("<array>"),
        label=e.label,
        predicted=e.predicted,
        probability=float(e.probabilities[e.predicted_index]),
        explained=e.explained,
        border_fraction=border_fraction(e.cam, DEFAULT_BORDER),
        overlay=overlay,
        feature_maps=maps,
    )


def write_explanations_csv(path: Path, rows: list[ExplainedFile]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "predicted", "probability", "explained", "border_fraction", "overlay"])
        for r in rows:
            w.writerow(
                [
                    r.path,
                    r.label or "",
                    r.predicted,
                    f"{r.probability:.6f}",
                    r.explained,
                    f"{r.border_fraction:.4f}",
                    r.overlay.name,
                ]
            )
    return path


def explain_array_png(
    bundle_or_explainer,
    image: np.ndarray,
    class_name: str | None = None,
    alpha: float = 0.5,
    method: str = "gradcam",
    label: str | None = None,
) -> tuple[bytes, Explanation]:
    """A decoded grayscale uint8 image (any size, e.g. an upload read by `load_grayscale`) -> (overlay PNG, details).

    Pass a `CamExplainer` built once when calling repeatedly (a service): building one copies the model.
    """
    explainer = (
        bundle_or_explainer
        if isinstance(bundle_or_explainer, CamExplainer)
        else CamExplainer(bundle_or_explainer, method)
    )
    e = explainer.explain_arrays([image], class_name, labels=[label])[0]
    return explanation_png(e, alpha), e
