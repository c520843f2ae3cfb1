"""Confound finder for `cxr data audit --confounds`: clusters of training films that carry one class for a reason
other than the disease.

The films are clustered in a label-blind space: EfficientNet-Lite0's pooled 1280-d ImageNet features (no chest
X-ray and no label has touched them), standardised and reduced by PCA, then KMeans for every k from 2 to 10 (a
subgroup can hide inside a coarser cluster: on covid19-radiography the best-silhouette k, 2, lumps 47 adult films
into the pediatric cluster). A cluster is a *confound suspect* when all of these hold:

1. large: at least MIN_SHARE of the films;
2. pure: at least MIN_PURITY of its films are one class c;
3. it holds the class: at least MIN_COVERAGE of class c's films are in it (so c is rare everywhere else);
4. detached: a gap separates it from every film outside it. On the line through the centroid of the cluster's
   class-c films and the centroid of the films outside the cluster, the 5th percentile of the former lies at least
   MIN_GAP (1) SD of theirs beyond the 95th percentile of the latter. (Outside films of class c count too: a
   cluster that is one end of a continuum has its own class's films in the gap.)

Rules 1-3 alone also fire on a dataset where the disease itself is what the features see (a cluster that simply
*is* the pneumonia class). The difference is rule 4: a disease is a continuum, so mild cases sit next to the
other class's films (no gap on that line); a subgroup collected elsewhere (children's films among adults, another
scanner) is a different population with a gap around it, and no film of the other classes looks like its films.
Clusters that pass 1-3 but not 4 are reported as class clusters, without a warning. Per class, the largest
cluster (any k) that passes 1-4 is reported, else the largest that passes 1-3.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxr.atomic import atomic_path
from cxr.data.cache import decode_cached, default_cache_dir
from cxr.data.manifest import load_dataset
from cxr.explain.grids import image_grid
from cxr.models import create_model
from cxr.models.pretrained import pretrained_file
from cxr.models.registry import model_spec
from cxr.models.weights import load_matching_weights

FEATURE_MODEL = "efficientnet-lite0"
FEATURE_SIZE = 160  # px; the shapes that make a subgroup (body size, framing, markers) survive it, and CPUs cope
MAX_FILMS = 2000  # a seeded random subsample of the train split (class shares kept in expectation)
PCA_DIMS = 32
K_RANGE = range(2, 11)
MIN_SHARE = 0.05
MIN_PURITY = 0.95
MIN_COVERAGE = 0.5
GAP_QUANTILE = 0.05
MIN_GAP = 1.0  # in SDs of the cluster's own films along the line
GALLERY_FILMS = 16  # the cluster's most typical films, then GALLERY_OTHERS nearest films of other classes
GALLERY_OTHERS = 8

Features = Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W) -> float (N, D)


def lite0_features(images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Pooled 1280-d features of ImageNet EfficientNet-Lite0 (grayscale stem: RGB filters summed; per-image norm)."""
    net = create_model(FEATURE_MODEL, num_classes=1000, input_norm="image")
    load_matching_weights(net, pretrained_file("imagenet", FEATURE_MODEL), model_spec(FEATURE_MODEL).foreign_names)
    setattr(net, model_spec(FEATURE_MODEL).head, nn.Identity())
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float().unsqueeze(1) / 255.0
            out.append(net(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardise each feature, then PCA to at most PCA_DIMS components."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features.astype(np.float64))
    dims = max(1, min(PCA_DIMS, x.shape[0] - 1, x.shape[1]))
    return PCA(dims, random_state=seed).fit_transform(x)


def clusterings(z: np.ndarray, seed: int = 0) -> dict[int, tuple[np.ndarray, float]]:
    """KMeans labels and silhouette for every k in K_RANGE (fewer than the films)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    out = {}
    for k in K_RANGE:
        if k >= len(z):
            break
        labels = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
        if len(np.unique(labels)) > 1:
            out[k] = (labels, round(float(silhouette_score(z, labels, random_state=seed)), 4))
    return out


def gap(z: np.ndarray, own: np.ndarray, outside: np.ndarray) -> float:
    """Rule 4: on the line through both centroids, (5th percentile of `own` - 95th of `outside`) / SD of `own`."""
    u = z[own].mean(axis=0) - z[outside].mean(axis=0)
    u = u / max(float(np.linalg.norm(u)), 1e-12)
    p_own, p_outside = z[own] @ u, z[outside] @ u
    margin = np.quantile(p_own, GAP_QUANTILE) - np.quantile(p_outside, 1 - GAP_QUANTILE)
    return float(margin / max(float(p_own.std()), 1e-12))


def _row(k: int, c_id: int, members: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    n, totals = len(y), np.bincount(y, minlength=len(classes))
    counts = np.bincount(y[members], minlength=len(classes))
    top = int(counts.argmax())
    return {
        "k": k,
        "cluster": c_id,
        "films": len(members),
        "share": round(len(members) / n, 4),
        "counts": {classes[i]: int(v) for i, v in enumerate(counts)},
        "top_class": classes[top],
        "purity": round(float(counts[top] / len(members)), 4),
        "coverage": round(float(counts[top] / totals[top]), 4),
        "share_of_class_elsewhere": round(float((totals[top] - counts[top]) / max(1, n - len(members))), 4),
        "members": members.tolist(),
    }


def find_confounds(z: np.ndarray, y: np.ndarray, classes: list[str], seed: int = 0) -> dict[str, Any]:
    """Apply the rule (module docstring) to every cluster of every k; per class, report the largest cluster that
    passes rules 1-4 (a suspect), else the largest that passes 1-3 (a class cluster). JSON-ready, plus members."""
    runs = clusterings(z, seed)
    best_k = max(runs, key=lambda k: runs[k][1]) if runs else 0
    overview, found = [], {}
    for k, (labels, _) in runs.items():
        for c_id in np.unique(labels):
            row = _row(k, int(c_id), np.flatnonzero(labels == c_id), y, classes)
            if k == best_k:
                overview.append({key: v for key, v in row.items() if key != "members"})
            if row["share"] < MIN_SHARE or row["purity"] < MIN_PURITY or row["coverage"] < MIN_COVERAGE:
                continue
            top = classes.index(row["top_class"])
            members = np.array(row["members"])
            row["gap_sd"] = round(gap(z, members[y[members] == top], np.flatnonzero(labels != c_id)), 3)
            row["verdict"] = "confound suspect" if row["gap_sd"] >= MIN_GAP else "class cluster"
            rank = (row["verdict"] == "confound suspect", row["films"], -k)
            old = found.get(top)
            if old is None or rank > (old["verdict"] == "confound suspect", old["films"], -old["k"]):
                found[top] = row
    findings = [found[c] for c in sorted(found)]
    return {
        "best_k": best_k,
        "silhouettes": {k: sil for k, (_, sil) in runs.items()},
        "clusters": overview,  # at the k of the best silhouette, for orientation
        "findings": findings,
        "suspects": sum(f["verdict"] == "confound suspect" for f in findings),
    }


def _features_cached(paths: list[Path], images: np.ndarray, features: Features, cache_dir: Path) -> np.ndarray:
    h = hashlib.sha1(f"confounds-v1|{FEATURE_MODEL}|{images.shape}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    target = cache_dir / "features" / f"{h.hexdigest()[:20]}.npy"
    if target.is_file():
        return np.load(target)
    out = features(images)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, out)
    except OSError:  # the cache only saves time
        pass
    return out


def write_galleries(result: dict[str, Any], z: np.ndarray, images: np.ndarray, y: np.ndarray, classes, out: Path):
    """One grid per suspect (and class) cluster: its most typical films, then the nearest films of other classes."""
    paths = []
    for row in result["findings"]:
        members = np.array(row["members"])
        top = classes.index(row["top_class"])
        centre = z[members].mean(axis=0)
        typical = members[np.argsort(np.linalg.norm(z[members] - centre, axis=1))[:GALLERY_FILMS]]
        others = np.flatnonzero(y != top)
        nearest = others[np.argsort(np.linalg.norm(z[others] - centre, axis=1))[:GALLERY_OTHERS]]
        tiles: list[np.ndarray | None] = [images[i] for i in typical]
        titles = [f"{classes[y[i]]}" for i in typical]
        pad = (-len(tiles)) % GALLERY_OTHERS
        tiles += [None] * pad
        titles += [""] * pad
        tiles += [images[i] for i in nearest]
        titles += [f"nearest other: {classes[y[i]]}" for i in nearest]
        colours = ["black"] * (len(tiles) - len(nearest)) + ["tab:red"] * len(nearest)
        title = (
            f"cluster {row['cluster']} of k={row['k']}: {row['films']} films, {row['purity']:.0%} {row['top_class']} "
            f"({row['verdict']}, gap {row['gap_sd']:.1f} SD); last row: the nearest films of other classes"
        )
        name = f"confound_{row['top_class']}_k{row['k']}_cluster{row['cluster']}.png".replace(" ", "_")
        paths.append(str(image_grid(tiles, titles, out / name, colours=colours, ncols=GALLERY_OTHERS, suptitle=title)))
        row["gallery"] = paths[-1]
    return paths


def confound_audit(
    data: str | Path,
    out: str | Path,
    size: int = FEATURE_SIZE,
    max_films: int = MAX_FILMS,
    seed: int = 0,
    cache_dir: Path | None = None,
    features: Features = lite0_features,
) -> dict[str, Any]:
    """The `confounds` section of the audit for the train split of `data`; galleries go to `out`."""
    ds = load_dataset(data)
    files = ds.splits["train"]
    rng = np.random.default_rng(seed)
    pick = np.arange(len(files)) if len(files) <= max_films else np.sort(rng.choice(len(files), max_films, False))
    paths = [Path(files.paths[i]) for i in pick]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    decoded = decode_cached(paths, size, cache_dir, desc="decoding for the confound finder")
    paths = [paths[i] for i in decoded.kept]
    y = np.array([files.labels[pick[i]] for i in decoded.kept], dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = embed(_features_cached(paths, decoded.images, features, cache_dir), seed)
    result = find_confounds(z, y, ds.classes, seed)
    result["galleries"] = write_galleries(result, z, decoded.images, y, ds.classes, Path(out))
    root = Path(ds.root)
    for row in result["findings"]:  # their films, relative to the dataset root
        members = row.pop("members")
        row["files"] = [
            str(paths[i].relative_to(root)) if paths[i].is_relative_to(root) else str(paths[i]) for i in members
        ]
    result["settings"] = {
        "split": "train",
        "films": len(y),
        "of": len(files),
        "features": f"{FEATURE_MODEL} ImageNet, pooled, {size} px, per-image norm",
        "pca_dims": z.shape[1],
        "k_range": [K_RANGE.start, K_RANGE.stop - 1],
        "min_share": MIN_SHARE,
        "min_purity": MIN_PURITY,
        "min_coverage": MIN_COVERAGE,
        "gap_quantile": GAP_QUANTILE,
        "min_gap_sd": MIN_GAP,
        "seed": seed,
    }
    return result


def confound_lines(section: dict[str, Any]) -> list[str]:
    s = section["settings"]
    lines = [
        f"confounds: {s['films']} of {s['of']} train films, KMeans k={s['k_range'][0]}-{s['k_range'][1]} on "
        f"ImageNet Lite0 features; {section['suspects']} confound suspect(s)"
    ]
    for row in section["findings"]:
        counts = ", ".join(f"{c} {v}" for c, v in row["counts"].items() if v)
        what = (
            f"no film of another class looks like these (gap {row['gap_sd']:.1f} SD): a subgroup that predicts "
            "the label without the disease? see the gallery"
            if row["verdict"] == "confound suspect"
            else f"other classes' films sit next to it (gap {row['gap_sd']:.1f} SD): the class itself, no alarm"
        )
        lines.append(
            f"  {row['verdict']}: cluster {row['cluster']} of k={row['k']}, {row['films']} films, "
            f"{row['purity']:.0%} {row['top_class']} ({row['coverage']:.0%} of that class; {counts}); {what}"
        )
    if not section["findings"]:
        lines.append("  no large cluster is almost pure in one class")
    return lines
