"""Shortcut audit: how much Grad-CAM mass falls on the image border (markers, text, collimation) vs the centre.

The classic notebooks' CNN looked at the "A-P" text marker instead of the lungs; this makes that check routine.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cxr.data.images import ImageReadError, load_grayscale
from cxr.data.run_files import evaluation_key, split_files
from cxr.errors import CxrError
from cxr.explain.cam import CamExplainer
from cxr.explain.grids import plt
from cxr.inference.bundle import Bundle
from cxr.rundir import RunDir

DEFAULT_BORDER = 0.1  # outer 10 % of each side
DEFAULT_FLAG_ABOVE = 0.5  # "most of the mass on the border"


def border_mask(height: int, width: int, border: float = DEFAULT_BORDER) -> np.ndarray:
    """True on the outer `border` fraction of each side (at least one pixel when border > 0)."""
    if not 0 <= border < 0.5:
        raise ValueError(f"border must be in [0, 0.5), got {border}")
    by = max(1, round(border * height)) if border > 0 else 0
    bx = max(1, round(border * width)) if border > 0 else 0
    mask = np.ones((height, width), bool)
    mask[by : height - by, bx : width - bx] = False
    return mask


def border_fraction(cam: np.ndarray, border: float = DEFAULT_BORDER) -> float:
    """Share of a non-negative map's mass on the border band; NaN for an empty (all-zero) map."""
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0, None)
    total = cam.sum()
    if total <= 0:
        return float("nan")
    return float(cam[border_mask(*cam.shape, border)].sum() / total)


def uniform_baseline(border: float = DEFAULT_BORDER) -> float:
    """Border share of a map that is equally spread: the border band's share of the area."""
    return 1.0 - (1.0 - 2.0 * border) ** 2


@dataclass
class AuditRow:
    path: str
    label: str
    predicted: str
    explained: str
    probability: float
    border_fraction: float
    flagged: bool


def _stats(values: list[float], flags: list[bool]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if not len(v):
        return {"n": len(values), "n_empty_cam": len(values)}
    return {
        "n": len(values),
        "mean": round(float(v.mean()), 4),
        "median": round(float(np.median(v)), 4),
        "p10": round(float(np.percentile(v, 10)), 4),
        "p90": round(float(np.percentile(v, 90)), 4),
        "max": round(float(v.max()), 4),
        "centre_mean": round(float(1 - v.mean()), 4),
        "flagged": int(sum(flags)),
        "flagged_share": round(sum(flags) / len(values), 4),
        "n_empty_cam": int(len(values) - len(v)),
    }


def summarise(rows: list[AuditRow], classes: list[str], border: float, flag_above: float) -> dict:
    """Distribution of border shares overall and per true class (and per predicted class)."""

    def group(key: str) -> dict:
        return {
            c: _stats(
                [r.border_fraction for r in rows if getattr(r, key) == c],
                [r.flagged for r in rows if getattr(r, key) == c],
            )
            for c in classes
        }

    return {
        "border": border,
        "uniform_baseline": round(uniform_baseline(border), 4),
        "flag_above": flag_above,
        "overall": _stats([r.border_fraction for r in rows], [r.flagged for r in rows]),
        "per_class": group("label"),
        "per_predicted_class": group("predicted"),
    }


def write_audit(out_dir: Path, split: str, rows: list[AuditRow], summary: dict) -> dict[str, Path]:
    """`shortcut_<split>.csv` (one row per image), `.json` (summary) and `.png` (distribution per class)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"shortcut_{split}.{k}" for k in ("csv", "json", "png")}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(AuditRow.__dataclass_fields__))
        w.writeheader()
        for r in sorted(rows, key=lambda r: -np.nan_to_num(r.border_fraction, nan=-1)):
            w.writerow(
                {**asdict(r), "border_fraction": f"{r.border_fraction:.4f}", "probability": f"{r.probability:.4f}"}
            )
    paths["json"].write_text(json.dumps(summary, indent=2))
    _plot(rows, summary, paths["png"], split)
    return paths


def _plot(rows: list[AuditRow], summary: dict, path: Path, split: str) -> None:

    classes = list(summary["per_class"])
    data = [[r.border_fraction for r in rows if r.label == c and np.isfinite(r.border_fraction)] for c in classes]
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(classes), 4.2))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(classes) + 1), classes)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=9, alpha=0.6)
    ax.axhline(summary["flag_above"], color="#cf222e", ls="--", lw=1, label=f"flag above {summary['flag_above']:.2f}")
    ax.axhline(
        summary["uniform_baseline"],
        color="grey",
        ls=":",
        lw=1,
        label=f"uniform map ({summary['uniform_baseline']:.2f})",
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"Grad-CAM mass on outer {summary['border']:.0%} border")
    ax.set_title(f"Shortcut audit ({split}, n={len(rows)})")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def audit_run(
    run_dir: str | Path,
    split: str = "test",
    data: Path | None = None,
    out_dir: str | Path | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    border: float = DEFAULT_BORDER,
    flag_above: float = DEFAULT_FLAG_ABOVE,
    batch_size: int = 16,
    n_overlays: int = 12,
    progress: bool = False,
) -> tuple[dict, dict[str, Path]]:
    """Grad-CAM every image of a run's split (for its predicted class), measure border mass, write the audit
    under `out_dir` (default `<run>/audit/`) with overlays of the most border-heavy flagged images."""
    from rich.progress import track

    from cxr.explain.images import explain_images

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else RunDir(run_dir).audit
    bundle = Bundle.load(run_dir)
    explainer = CamExplainer(bundle, method, layer)
    files = split_files(run_dir, split, bundle.classes, data)
    size = bundle.meta.image_size
    rows: list[AuditRow] = []
    starts = range(0, len(files.paths), batch_size)
    for start in track(starts, description="auditing", transient=True, disable=not progress):
        inputs, kept = [], []
        for p, y in zip(files.paths[start : start + batch_size], files.labels[start : start + batch_size]):
            try:
                inputs.append(load_grayscale(p, size))
                kept.append((p, y))
            except ImageReadError:
                continue  # `cxr evaluate` reports unreadable files; the audit measures the readable ones
        if not kept:
            continue
        # The model view is both input and display here: the border is measured in the frame the model sees.
        for (p, y), e in zip(kept, explainer.explain_arrays(inputs, model_inputs=np.stack(inputs))):
            share = border_fraction(e.cam, border)
            rows.append(
                AuditRow(
                    str(p),
                    bundle.classes[y],
                    e.predicted,
                    e.explained,
                    float(e.probabilities[e.predicted_index]),
                    share,
                    bool(np.isfinite(share) and share > flag_above),
                )
            )
    if not rows:
        raise CxrError(f"none of the {len(files.paths)} {split} images could be read; nothing to audit")
    key = evaluation_key(run_dir, split, data)  # another dataset's audit goes beside the run's own, not over it
    summary = summarise(rows, bundle.classes, border, flag_above)
    summary.update(run=str(run_dir), model=bundle.meta.model, split=key, method=method, layer=explainer.layer)
    summary["unreadable_skipped"] = len(files.paths) - len(rows)
    paths = write_audit(out_dir, key, rows, summary)
    flagged = sorted((r for r in rows if r.flagged), key=lambda r: -r.border_fraction)[:n_overlays]
    if flagged:
        labels = {Path(r.path): r.label for r in flagged}
        explain_images(bundle, list(labels), out_dir / f"flagged_{key}", labels=labels, explainer=explainer)
        paths["flagged"] = out_dir / f"flagged_{key}"
    return summary, paths
