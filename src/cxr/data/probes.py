"""Shortcut probes for the data audit: can the label be predicted from things that should not carry it?

COVID classifiers have been shown to read the source hospital (markers, collimation, file format, patient age)
instead of the lungs (DeGrave et al., Nature Machine Intelligence 2021). Each probe fits a deliberately simple model
on one such cue and reports its cross-validated AUC: near 0.5 the cue says nothing about the label; high, a CNN can
reach the label without the disease, and that shortcut will not hold on films from another site.

All splits are pooled (the question is whether the label is learnable from the cue in this collection, not how a
model generalises) and folds are grouped by patient and by duplicate group, so a probe cannot score by
recognising a patient or a copied film. The pixel probes read each image standardised by its own mean and SD: they
ask about layout (markers, framing, body size), not the global brightness the intensity cue already measures.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cxr.data.audit import FileFacts

PROBE_FOLDS = 5
# AUC 0.75 is a large effect (Cohen's d ~0.95 for two normal classes) and, at the ~100+ images per class of a real
# dataset, more than 5 null SDs above 0.5: a cue this strong is one a CNN will find, not noise.
PROBE_WARN_AUC = 0.75
PROBE_SIDE = 32  # the stored downsample (from the audit's 64 px hashing decode) that the pixel probes read
BORDER_FRACTION = 0.1  # outer 10 % of each side: where markers, text and collimator edges sit
THUMBNAIL_SIDE = 8
# A random 5,000 when there are more: on covid19-radiography (10,284) the AUCs moved by 0.01 at 3,000, while the
# full set made the probes as slow as the whole rest of the audit.
PROBE_MAX_IMAGES = 5000

FILE_FEATURES = ("width", "height", "aspect", "bit_depth", "log2_file_size", "format", "mode", "jpeg_tables")
_CATEGORICAL = ("format", "mode", "jpeg_tables")
FILE_SIZE = "log2_file_size"  # the one property that also follows the content: compressed size tracks haze and texture
# Bits per sample of Pillow modes; every other mode (L, P, RGB, RGBA, LA, CMYK, YCbCr) stores 8.
_MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}

WARNINGS = {
    "file_properties": "the label can be predicted from the files' properties alone (AUC {auc:.2f}{detail}): the "
    "classes were acquired, exported or saved differently; resize and re-encode every image alike, or check that "
    "the model does not learn the source",
    "border": "the label can be predicted from the image border alone (AUC {auc:.2f}{detail}): markers, text or "
    "collimation differ by class; check with `cxr data audit-shortcuts` that the model does not read them",
    "thumbnail": "the label can be predicted from an 8x8 thumbnail (AUC {auc:.2f}{detail}): coarse framing, body "
    "size or age differ by class (or the finding is visible at that scale); check that the classes come from the "
    "same population and sites",
}
FILE_SIZE_NOTE = (
    "file size alone predicts the label (AUC {size:.2f}) but the header facts do not ({header}): compressed size "
    "follows the image content (haze, texture, noise), so this is probably the finding itself, not the source"
)
TITLES = {"file_properties": "file properties", "border": "border only", "thumbnail": "8x8 thumbnail"}


def bit_depth(pil_mode: str) -> int:
    return _MODE_BITS.get(pil_mode, 8)


def encoder_digest(im: Any) -> str:
    """8 hex digits naming a JPEG's quantisation tables (encoder and quality) from its header; '' for other files."""
    tables = getattr(im, "quantization", None)
    return hashlib.sha1(repr(sorted(tables.items())).encode()).hexdigest()[:8] if tables else ""


def probe_pixels(gray: np.ndarray) -> bytes:
    """The audit's square decode, block-averaged to PROBE_SIDE px and kept as bytes (1 KB an image)."""
    f = gray.shape[0] // PROBE_SIDE
    small = gray.astype(np.float32).reshape(PROBE_SIDE, f, PROBE_SIDE, f).mean(axis=(1, 3))
    return np.round(small).astype(np.uint8).tobytes()


def _standardised(smalls: Sequence[bytes]) -> np.ndarray:
    x = np.frombuffer(b"".join(smalls), dtype=np.uint8).reshape(-1, PROBE_SIDE, PROBE_SIDE).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    return (x - mean) / np.maximum(sd, 1.0)  # a constant image stays all zeros


def border_features(smalls: Sequence[bytes]) -> np.ndarray:
    """The outer ring of each standardised image (centre dropped, i.e. blanked), one column per pixel."""
    x = _standardised(smalls)
    ring = max(1, round(BORDER_FRACTION * PROBE_SIDE))
    keep = np.ones((PROBE_SIDE, PROBE_SIDE), dtype=bool)
    keep[ring:-ring, ring:-ring] = False
    return x[:, keep]


def thumbnail_features(smalls: Sequence[bytes]) -> np.ndarray:
    x = _standardised(smalls)
    f = PROBE_SIDE // THUMBNAIL_SIDE
    return x.reshape(len(x), THUMBNAIL_SIDE, f, THUMBNAIL_SIDE, f).mean(axis=(2, 4)).reshape(len(x), -1)


def file_property_features(facts: Sequence[FileFacts]) -> tuple[np.ndarray, list[bool]]:
    """Header facts as a numeric matrix (format and mode as category codes) and the categorical-column mask."""
    split = [(f.mode.split(" ", 1) + [""])[:2] for f in facts]  # the audit's mode string is "<format> <mode>"
    columns = {
        "format": [p[0] for p in split],
        "mode": [p[1] for p in split],
        "jpeg_tables": [f.jpeg_tables for f in facts],
    }
    codes = {k: _category_codes(v) for k, v in columns.items()}
    rows = [
        (
            f.width,
            f.height,
            f.width / max(1, f.height),
            f.bits,
            math.log2(max(1, f.file_size)),
            codes["format"][i],
            codes["mode"][i],
            codes["jpeg_tables"][i],
        )
        for i, f in enumerate(facts)
    ]
    return np.array(rows, dtype=np.float64), [name in _CATEGORICAL for name in FILE_FEATURES]


def _category_codes(values: list[str], most: int = 250) -> list[int]:
    """Codes by frequency; the rarest beyond `most` share one (the trees take at most 255 categories)."""
    from collections import Counter

    rank = {v: min(i, most) for i, (v, _) in enumerate(Counter(values).most_common())}
    return [rank[v] for v in values]


def probe_groups(n: int, linked: list[tuple[int, int]]) -> np.ndarray:
    """A group label per image: images joined by a link (same patient, exact or near copy) share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = np.array(linked, dtype=np.int64).T if linked else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def cross_validated_auc(
    make_model: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    classes: Sequence[str] = (),
    folds: int = PROBE_FOLDS,
) -> dict[str, Any] | None:
    """AUC (one-vs-rest macro for several classes) per fold of a StratifiedGroupKFold; None when too few images.

    With several classes, also each class against the rest on the pooled out-of-fold predictions: a cue often
    marks one class (the one collected elsewhere), and the warning should say which.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    counts = np.bincount(y)
    if len(counts) < 2 or counts.min() < folds or len(np.unique(groups)) < folds:
        return None
    splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(x, y, groups))
    with warnings.catch_warnings():  # convergence chatter; a training fold missing a class gets probability 0
        warnings.simplefilter("ignore")
        oof = cross_val_predict(make_model(), x, y, cv=splits, method="predict_proba")
    scores = np.array([a for a in (_auc(y[test], oof[test]) for _, test in splits) if a is not None])
    if len(scores) == 0:
        return None
    out = {
        "auc": round(float(scores.mean()), 3),
        "auc_sd": round(float(scores.std()), 3),
        "fold_aucs": [round(float(s), 3) for s in scores],
    }
    if len(counts) > 2 and len(classes) == len(counts):
        out["class_aucs"] = {c: round(float(roc_auc_score(y == k, oof[:, k])), 3) for k, c in enumerate(classes)}
    return out


def _auc(y: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC AUC of one fold, one-vs-rest macro for several classes; None when the fold lacks a class."""
    from sklearn.metrics import roc_auc_score

    k = probs.shape[1]
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < k:
        return None
    return float(roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr"))


def _linear_model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # C=0.01: hundreds of correlated pixels; strong shrinkage scored as well as C=1 and converged 2-5x faster
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))


def _tree_model(categorical: list[bool]) -> Callable[[], Any]:
    """Small boosted trees: file facts act through thresholds and categories (one size, one format), not linearly."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return lambda: HistGradientBoostingClassifier(
        max_iter=50,
        max_depth=3,
        min_samples_leaf=5,
        categorical_features=categorical,
        early_stopping=False,
        random_state=0,
    )  # min_samples_leaf 5, not 20: a dozen PNGs among 300 JPEGs is a cue worth a leaf


def run_probes(facts: Sequence[FileFacts], labels: Sequence[str], groups: np.ndarray) -> dict[str, Any]:
    """The audit's `probes` section for the readable images: per probe AUC, spread, n, features, warning.

    One thread: these fits are small, and OpenMP's spinning threads made them ~100x slower on a loaded shared CPU.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _run_probes(facts, labels, groups)


def _run_probes(facts: Sequence[FileFacts], labels: Sequence[str], groups: np.ndarray) -> dict[str, Any]:
    rows = [i for i, f in enumerate(facts) if f.probe_pixels]
    readable = len(rows)
    if readable > PROBE_MAX_IMAGES:
        rows = sorted(np.random.default_rng(0).choice(rows, PROBE_MAX_IMAGES, replace=False).tolist())
    classes, y = np.unique([labels[i] for i in rows], return_inverse=True)
    classes = [str(c) for c in classes]
    g = np.asarray(groups)[rows]
    kept = [facts[i] for i in rows]
    file_x, categorical = file_property_features(kept) if kept else (np.zeros((0, len(FILE_FEATURES))), [])
    smalls = [f.probe_pixels for f in kept]
    ring = max(1, round(BORDER_FRACTION * PROBE_SIDE))
    specs = {
        "file_properties": (
            file_x,
            _tree_model(categorical),
            list(FILE_FEATURES),
            "gradient-boosted trees (50 x depth 3)",
        ),
        "border": (
            border_features(smalls) if kept else None,
            _linear_model,
            [f"outer {ring} of {PROBE_SIDE} px per side ({BORDER_FRACTION:.0%}), centre blanked"],
            "standardise + logistic regression",
        ),
        "thumbnail": (
            thumbnail_features(smalls) if kept else None,
            _linear_model,
            [f"{THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} px"],
            "standardise + logistic regression",
        ),
    }
    out: dict[str, Any] = {
        "settings": {
            "folds": PROBE_FOLDS,
            "splits": "all, pooled",
            "cv": "StratifiedGroupKFold",
            "groups": "patient id, exact and near duplicates",
            "warn_auc": PROBE_WARN_AUC,
            "pixels": "each image standardised by its own mean and SD",
            "images": len(rows),
            "readable_images": readable,
        },
    }
    for name, (x, make_model, features, model) in specs.items():
        result = cross_validated_auc(make_model, x, y, g, classes) if kept else None
        probe: dict[str, Any] = {"n": len(rows), "groups": len(np.unique(g)), "features": features, "model": model}
        probe.update(result or {"auc": None, "skipped": f"a class has fewer than {PROBE_FOLDS} images or groups"})
        if name == "file_properties" and result:
            probe.update(_file_property_detail(x, y, g, categorical, result["auc"]))
        probe["warning"], probe["note"] = _verdict(name, probe)
        out[name] = probe
    return out


def _file_property_detail(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, categorical: list[bool], auc: float
) -> dict[str, Any]:
    """Each property alone, and all but the file size together: which fact carries the label, and is it the
    header (how the file was made) or only the compressed size (which also follows the content)?"""
    varying = [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 0]
    single = {FILE_FEATURES[varying[0]]: auc} if len(varying) == 1 else {}  # the probe itself: no second fit
    for j in varying if len(varying) > 1 else []:
        r = cross_validated_auc(_tree_model([categorical[j]]), x[:, [j]], y, g)
        if r:
            single[FILE_FEATURES[j]] = r["auc"]
    header = [j for j in varying if FILE_FEATURES[j] != FILE_SIZE]
    if len(header) == len(varying) or len(header) == 1:  # already fitted: the whole probe, or that one fact
        header_auc = auc if len(header) == len(varying) else single.get(FILE_FEATURES[header[0]])
    else:
        r = cross_validated_auc(_tree_model([categorical[j] for j in header]), x[:, header], y, g) if header else None
        header_auc = r["auc"] if r else None
    return {"feature_aucs": dict(sorted(single.items(), key=lambda kv: -kv[1])), "header_auc": header_auc}


def _verdict(name: str, probe: dict[str, Any]) -> tuple[str | None, str | None]:
    """(warning, note): a warning when the probe reaches PROBE_WARN_AUC, except when only the file size does."""
    if probe["auc"] is None or probe["auc"] < PROBE_WARN_AUC:
        return None, None
    if name == "file_properties":
        header, size = probe.get("header_auc"), probe["feature_aucs"].get(FILE_SIZE, 0.0)
        if (header or 0.0) < PROBE_WARN_AUC and size >= PROBE_WARN_AUC:
            shown = f"AUC {header:.2f}" if header is not None else "all files share dimensions, format, mode, tables"
            return None, FILE_SIZE_NOTE.format(size=size, header=shown)
        detail = "; strongest: " + ", ".join(f"{k} {v:.2f}" for k, v in list(probe["feature_aucs"].items())[:2])
    else:
        top = max(probe.get("class_aucs", {}).items(), key=lambda kv: kv[1], default=None)
        detail = f"; {top[0]} against the rest {top[1]:.2f}" if top else ""
    return WARNINGS[name].format(auc=probe["auc"], detail=detail), None


def probe_lines(probes: dict[str, Any]) -> list[str]:
    """The printed summary: one line with every probe's AUC, then one plain-words warning per probe above threshold."""
    parts = [
        f"{TITLES[k]} {p['auc']:.2f} (folds {min(p['fold_aucs']):.2f}-{max(p['fold_aucs']):.2f})"
        if p["auc"] is not None
        else f"{TITLES[k]} not measured"
        for k, p in probes.items()
        if k in TITLES
    ]
    s = probes["settings"]
    lines = [f"shortcut probes ({s['folds']}-fold CV AUC, all splits pooled, grouped by patient): " + ", ".join(parts)]
    for kind in ("warning", "note"):
        lines += [f"  {kind}: {p[kind]}" for k, p in probes.items() if k in TITLES and p[kind]]
    return lines
