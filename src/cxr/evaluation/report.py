"""`cxr report RUN`: one self-contained HTML file (every image embedded) that a clinician or reviewer can open.

Reads what `evaluate` wrote (metrics.json, plots/, predictions_<split>.csv) and evaluates first when that is
missing or older than the model. The error gallery shows Grad-CAM overlays when `cxr.explain` is installed.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr.atomic import write_text_atomic
from cxr.data.images import ImageReadError, load_grayscale
from cxr.errors import CxrError
from cxr.evaluation.evaluate import evaluate_run
from cxr.evaluation.site import SITE_KEY, site_note
from cxr.explain.cam import CamExplainer
from cxr.explain.overlay import overlay_rgb
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from cxr.rundir import RunDir
from cxr.version import __version__

log = logging.getLogger("cxr")
THUMB_SIDE = 260
CLINICAL_KEYS = ("calibration",)  # what an evaluation by this version always writes ("ci" only with --bootstrap)


def _data_uri(png_path: Path) -> str | None:
    if not png_path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(png_path.read_bytes()).decode()


def _jpeg_uri(pixels: np.ndarray, side: int = THUMB_SIDE) -> str:
    """Grayscale or RGB uint8 array -> downscaled JPEG data URI (keeps the HTML file small)."""
    im = Image.fromarray(pixels)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def needs_evaluation(run_dir: Path, split: str) -> bool:
    """True when the split was never evaluated, was evaluated by an older cxr, or the model changed since."""
    metrics_path = RunDir(run_dir).metrics
    if not metrics_path.is_file() or not RunDir(run_dir).predictions(split).is_file():
        return True
    section = json.loads(metrics_path.read_text()).get(split)
    if not section or any(k not in section for k in CLINICAL_KEYS):
        return True
    return (run_dir / BUNDLE_FILE).stat().st_mtime > metrics_path.stat().st_mtime


def _read_predictions(path: Path, classes: list[str]) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["probs"] = [float(r[f"p_{c}"]) for c in classes]
    return rows


def _split_counts(run_dir: Path, classes: list[str], metrics: dict, split: str) -> list[dict[str, Any]]:
    """Images per split and class: train/val as trained (splits.csv), the evaluated split as evaluated."""
    counts: dict[str, Counter] = {}
    splits_csv = RunDir(run_dir).splits
    if splits_csv.is_file():
        with open(splits_csv, newline="") as f:
            for row in csv.DictReader(f):
                counts.setdefault(row["split"], Counter())[row["label"]] += 1
    section = metrics.get(split, {})
    counts[split] = Counter({c: v["support"] for c, v in section.get("per_class", {}).items()})
    order = [s for s in ("train", "val", "test") if s in counts] + [
        s for s in counts if s not in ("train", "val", "test")
    ]
    return [
        {"split": s, "counts": [counts[s].get(c, 0) for c in classes], "total": sum(counts[s].values())} for s in order
    ]


def _gradcam(bundle: Bundle, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Grad-CAM overlay data URIs by path; {} when Grad-CAM cannot hook the model (the section degrades)."""
    try:
        explainer = CamExplainer(bundle)
        labels = {Path(r["path"]): r["label"] for r in rows}
        out = {}
        for e in explainer.explain_paths([Path(r["path"]) for r in rows], labels=labels):
            if not isinstance(e, str):
                out[str(e.path)] = _jpeg_uri(overlay_rgb(e.image, e.heatmap))
        return out
    except Exception as e:  # an explanation failure must not cost the user the whole report
        log.warning("Grad-CAM skipped in the report: %s", e)
        return {}


def error_gallery(bundle: Bundle, predictions_csv: Path, size: int, gradcam: bool = True) -> dict[str, Any]:
    """The `size` most confident mistakes (highest probability given to the wrong class), with thumbnails."""
    rows = _read_predictions(predictions_csv, bundle.classes)
    wrong = [r for r in rows if r["correct"] == "0"]
    wrong.sort(key=lambda r: -max(r["probs"]))
    shown = wrong[:size]
    cams = _gradcam(bundle, shown) if gradcam and shown else {}
    items = []
    for r in shown:
        try:
            thumb = _jpeg_uri(load_grayscale(r["path"]))
        except (ImageReadError, OSError):
            thumb = None
        probs = r["probs"]
        items.append(
            {
                "name": Path(r["path"]).name,
                "path": r["path"],
                "label": r["label"],
                "predicted": r["predicted"],
                "p_predicted": probs[bundle.classes.index(r["predicted"])],
                "p_label": probs[bundle.classes.index(r["label"])],
                "image": thumb,
                "cam": cams.get(str(Path(r["path"]))),
            }
        )
    return {"n_wrong": len(wrong), "n": len(rows), "items": items, "gradcam": bool(cams)}


def _notes(section: dict[str, Any], classes: list[str], meta) -> list[str]:
    """Plain-language caveats a reader should see before trusting the numbers."""

    n = section["n"]
    notes = [note] if (note := site_note(section.get(SITE_KEY), n)) else []
    if n < 200 and "ci" in section:
        notes.append(f"Only {n} test images: the 95 % intervals are wide; read them, not the point values.")
    elif "ci" not in section:
        notes.append("No confidence intervals (evaluated with `--bootstrap 0`): the figures carry unknown uncertainty.")
    never = [c for c, v in section["per_class"].items() if v["support"] and v["recall"] == 0]
    if never:
        notes.append(f"The model never correctly predicts {', '.join(never)}: it is not usable as it stands.")
    if len(classes) == 2:
        prev = section["per_class"][classes[1]]["support"] / n
        notes.append(
            f"Positive class: {classes[1]} (the second class in alphabetical order). PPV and NPV depend on the "
            f"prevalence, {prev:.0%} in this test set; they will differ where the disease is rarer or commoner."
        )
        if meta.threshold is None:
            notes.append(
                "No operating point was chosen: decisions use the 0.5 threshold. "
                "Choose one on validation with `cxr site calibrate RUN --operating-point sensitivity=0.95`."
            )
    cal = section.get("calibration", {})
    if cal and cal["temperature"] != 1.0 and cal["nll_after"] > cal["nll_before"]:
        notes.append(
            f"The temperature fitted on validation (T = {cal['temperature']:.2f}) makes the test log-likelihood worse "
            f"({cal['nll_before']:.3f} → {cal['nll_after']:.3f}): the validation split may be too small to "
            "calibrate on."
        )
    if cal and cal.get("temperature") == 1.0:
        notes.append(
            "No temperature was fitted (a run trained before calibration existed): "
            "`cxr site calibrate RUN` fits one on validation without retraining."
        )
    return notes


def _stress_rows(stress: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per shift: its unit and the accuracy at severities 1-4 (None where it has no such level)."""
    rows: dict[str, dict[str, Any]] = {}
    for c in (stress or {}).get("conditions", []):
        row = rows.setdefault(c["shift"], {"shift": c["shift"], "unit": c["unit"], "accuracy": [None] * 4})
        row["accuracy"][c["severity"] - 1] = c["accuracy"]
    return list(rows.values())


def _calibrated_on(calibration: dict[str, Any] | None) -> str:
    """Where temperature and threshold were fitted, in words: the run's validation split or a site's films."""

    site = (calibration or {}).get(SITE_KEY)
    return f"calibration films of site {site['site']}" if site else "validation images"


def build_context(run_dir: Path, split: str, gallery_size: int = 12, gradcam: bool = True) -> dict[str, Any]:
    bundle = Bundle.load(run_dir)
    files = RunDir(run_dir)
    metrics = json.loads(files.metrics.read_text())
    if split not in metrics:
        raise CxrError(f"{files.metrics} has no {split!r} section; run `cxr evaluate {run_dir} --split {split}`")
    section = metrics[split]
    classes = bundle.classes
    plots = files.plots
    return {
        "run": run_dir.resolve().name,
        "run_path": str(run_dir.resolve()),
        "split": split,
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cxr_version": __version__,
        "meta": bundle.meta,
        "info": bundle.info,
        "classes": classes,
        "binary": len(classes) == 2,
        "training": metrics.get("training", {}),
        "val_calibration": metrics.get("calibration"),
        "calibrated_on": _calibrated_on(metrics.get("calibration")),
        "m": section,
        "ci": section.get("ci", {}),
        "counts": _split_counts(run_dir, classes, metrics, split),
        "notes": _notes(section, classes, bundle.meta),
        "plots": {
            "training": _data_uri(plots / "training_curves.png"),
            "confusion": _data_uri(plots / f"confusion_matrix_{split}.png"),
            "roc": _data_uri(plots / f"roc_{split}.png"),
            "pr": _data_uri(plots / f"pr_{split}.png"),
            "reliability": _data_uri(plots / f"reliability_{split}.png"),
            "stress": _data_uri(plots / f"stress_{split}.png"),
        },
        "stress": section.get("stress"),
        "stress_rows": _stress_rows(section.get("stress")),
        "guard": section.get("guard"),
        "gallery": error_gallery(bundle, files.predictions(split), gallery_size, gradcam),
    }


def _codify(text: str):
    """Escape a plain-text note, then show `backticked` commands as <code>."""
    from markupsafe import Markup, escape

    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def render_html(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("cxr.evaluation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,  # a misspelt field fails loudly in tests instead of vanishing from the page
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f} %"
    env.filters["codify"] = _codify
    return env.get_template("report.html.j2").render(**context)


def write_report(
    run_dir: str | Path,
    split: str = "test",
    out: Path | None = None,
    gallery_size: int = 12,
    gradcam: bool = True,
    evaluate_kwargs: dict[str, Any] | None = None,
    evaluate_if_needed: bool = True,
) -> Path:
    """Evaluate if needed, then write `report.html` (or `out`); returns its path."""
    run_dir = Path(run_dir)
    Bundle.load(run_dir)  # a clear error for an unfinished or missing run before anything else
    if evaluate_if_needed and needs_evaluation(run_dir, split):
        log.info("evaluating %s on %s first", run_dir, split)
        evaluate_run(run_dir, split, **(evaluate_kwargs or {}))
    html = render_html(build_context(run_dir, split, gallery_size, gradcam))
    target = Path(out) if out is not None else RunDir(run_dir).report(split)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(target, html)
