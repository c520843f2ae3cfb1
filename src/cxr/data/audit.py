"""Dataset audit: counts, sizes and modes, unreadable files, exact and near duplicates, patient overlap.

Published chest X-ray results are often inflated by leakage (the same patient, or the same image re-encoded, in
train and test); this finds it before anyone trains. Every finding lists its files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr.atomic import write_text_atomic
from cxr.data.audit_plots import plot_class_counts, plot_pairs
from cxr.data.dicom import dicom_summary
from cxr.data.images import DICOM_MAGIC_END, ImageReadError, is_dicom, load_grayscale
from cxr.data.manifest import load_dataset
from cxr.data.probes import bit_depth, encoder_digest, probe_groups, probe_lines, probe_pixels, run_probes
from cxr.data.splits import patient_ids
from cxr.rundir import PLOTS

# pHash with a 16x16 DCT block (256 bits): on covid19-radiography and Kermany, re-encoded/cropped copies of one
# radiograph sit at distance <= ~44 and different images of the same look (pediatric AP films) from ~38 up;
# 32 keeps false alarms out of a CI gate. 8x8 (64-bit) hashes put different chest films at distance 4-6.
HASH_SIZE = 16
DEFAULT_THRESHOLD = 32


@dataclass
class FileFacts:
    sha256: str
    width: int = 0
    height: int = 0
    mode: str = ""
    bits: int = 0  # bits per sample, from the header
    file_size: int = 0
    jpeg_tables: str = ""  # a digest of the JPEG quantisation tables: which encoder and quality saved the file
    phash: bytes = b""  # packed bits; empty when unreadable
    intensity: tuple[float, ...] = ()  # the image's global look: mean, std and percentiles of its pixel values
    probe_pixels: bytes = b""  # 32x32 grayscale for the shortcut probes; empty when unreadable
    error: str = ""


def inspect_file(path: Path) -> FileFacts:
    """Content hash, header facts and perceptual hash of one file (runs in worker processes)."""
    import imagehash
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as e:
        return FileFacts(sha256="", error=f"{path}: cannot be read ({e.strerror or e})")
    facts = FileFacts(sha256=hashlib.sha256(data).hexdigest(), file_size=len(data))
    try:
        if is_dicom(path, data[:DICOM_MAGIC_END]):
            facts.width, facts.height, facts.mode, facts.bits = dicom_summary(io.BytesIO(data), str(path))
        else:
            with Image.open(io.BytesIO(data)) as im:
                facts.width, facts.height = im.size
                facts.mode, facts.bits = f"{im.format} {im.mode}", bit_depth(im.mode)
                facts.jpeg_tables = encoder_digest(im)
        # THE decoder, at the hash's working size (pHash resizes to 4 x HASH_SIZE anyway): JPEG decodes at 1/4 scale.
        gray = load_grayscale(io.BytesIO(data), size=4 * HASH_SIZE, name=str(path))
        bits = imagehash.phash(Image.fromarray(gray), hash_size=HASH_SIZE).hash
        facts.phash = np.packbits(bits.ravel()).tobytes()
        facts.intensity = intensity_profile(gray)
        facts.probe_pixels = probe_pixels(gray)  # the same decode feeds the shortcut probes: no second read
    except ImageReadError as e:
        facts.error = str(e)
    except Exception as e:  # Pillow's header parsing on a corrupt file; the decoder itself only raises ImageReadError
        facts.error = f"{path}: not a readable image ({type(e).__name__})"
    return facts


INTENSITY_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
INTENSITY_CUE_WARN = 0.8  # above this AUC, global brightness/contrast alone largely tells the classes apart


def intensity_profile(gray: np.ndarray) -> tuple[float, ...]:
    g = gray.astype(np.float32)
    return (float(g.mean()), float(g.std()), *(float(v) for v in np.percentile(g, INTENSITY_PERCENTILES)))


def intensity_cue_auc(profiles: np.ndarray, labels: np.ndarray, folds: int = 5) -> float | None:
    """Cross-validated AUC (one-vs-rest) of a logistic regression on `intensity_profile`s alone; ~0.5 = no cue.

    A high value means the classes differ in global brightness/contrast (scanner, batch, processing): a CNN can
    learn that instead of the disease, and it will not hold on films from elsewhere. None when too few images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    if len(counts) < 2 or counts.min() < folds:
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    probs = cross_val_predict(clf, profiles, y, cv=cv, method="predict_proba")
    return float(roc_auc_score(y, probs[:, 1]) if len(counts) == 2 else roc_auc_score(y, probs, multi_class="ovr"))


def inspect_all(paths: list[Path], workers: int | None = None, progress: bool = False) -> list[FileFacts]:
    """Several processes: decoding and DCT hashing are CPU-bound and partly hold the GIL."""
    workers = workers or os.cpu_count() or 1
    chunksize = max(1, min(64, len(paths) // (workers * 8) or 1))
    if workers == 1 or len(paths) < 64:
        results = map(inspect_file, paths)
        return list(_track(results, len(paths), progress))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(_track(pool.map(inspect_file, paths, chunksize=chunksize), len(paths), progress))


def _track(results, total: int, progress: bool):
    if not progress:
        return results
    from rich.progress import track

    return track(results, total=total, description="hashing images", transient=True)


def near_pairs(hashes: np.ndarray, threshold: int, block: int = 256) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= threshold.

    Brute force by hand (numpy XOR + popcount, blocked): 10k hashes take about a second, and imagehash has no index.
    """
    if len(hashes) < 2:
        return []
    words = np.ascontiguousarray(hashes).view(np.uint64)  # (n, 4) for 256-bit hashes
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(words), block):
        chunk = words[start : start + block]
        dist = np.bitwise_count(chunk[:, None, :] ^ words[None, start:, :]).sum(axis=-1, dtype=np.int32)
        ii, jj = np.nonzero(dist <= threshold)
        for i, j in zip(ii.tolist(), jj.tolist()):
            if start + i < start + j:
                out.append((start + i, start + j, int(dist[i, j])))
    return out


def phash_matrix(facts: list[FileFacts]) -> tuple[list[int], np.ndarray]:
    """Indices of the readable files and their packed hashes as one (n, bytes) array, the input of `near_pairs`."""
    readable = [i for i, f in enumerate(facts) if f.phash]
    hashes = np.frombuffer(b"".join(facts[i].phash for i in readable), dtype=np.uint8)
    return readable, hashes.reshape(len(readable), HASH_SIZE**2 // 8)


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (of the nodes 0..n-1) that have more than one member, each sorted, by first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not edges:
        return []
    a, b = np.array(edges).T
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for node in sorted({int(x) for x in np.concatenate([a, b])}):
        members[int(label[node])].append(node)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


@dataclass
class _Entry:
    path: Path
    rel: str
    split: str
    label: str
    patient: str | None


def _file_record(e: _Entry) -> dict[str, Any]:
    return {"path": e.rel, "split": e.split, "label": e.label, **({"patient_id": e.patient} if e.patient else {})}


def _group_finding(members: list[_Entry], **extra: Any) -> dict[str, Any]:
    splits = sorted({m.split for m in members})
    labels = sorted({m.label for m in members})
    return {
        "n_files": len(members),
        "splits": splits,
        "across_splits": len(splits) > 1,
        "labels": labels,
        "conflicting_labels": len(labels) > 1,
        **extra,
        "files": [_file_record(m) for m in members],
    }


def audit_dataset(
    data: str | Path,
    threshold: int = DEFAULT_THRESHOLD,
    pattern: str = "",
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The audit report as a JSON-ready dict; `report["summary"]["leakage"]` is True for any cross-split finding."""
    data = Path(data)
    ds = load_dataset(data)
    entries: list[_Entry] = []
    for split, files in ds.splits.items():
        ids = patient_ids(files.paths, pattern, ds.patient_ids)
        for p, y, pid in zip(files.paths, files.labels, ids):
            rel = os.path.relpath(p, ds.root) if Path(p).is_relative_to(ds.root) else str(p)
            entries.append(_Entry(Path(p), Path(rel).as_posix(), split, ds.classes[y], pid))
    facts = inspect_all([e.path for e in entries], workers, progress)

    counts = {s: {c: 0 for c in ds.classes} for s in ds.splits}
    for e in entries:
        counts[e.split][e.label] += 1
    unreadable = [{**_file_record(e), "error": f.error} for e, f in zip(entries, facts) if f.error]

    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(facts):
        if f.sha256:
            by_hash[f.sha256].append(i)
    exact = [
        _group_finding([entries[i] for i in ix], sha256=h)
        for h, ix in sorted(by_hash.items(), key=lambda kv: kv[1][0])
        if len(ix) > 1
    ]

    readable, hashes = phash_matrix(facts)
    pairs = [
        (readable[a], readable[b], d)
        for a, b, d in near_pairs(hashes, threshold)
        if facts[readable[a]].sha256 != facts[readable[b]].sha256  # byte-identical copies are reported as exact
    ]
    near = []
    for comp in _components(len(entries), [(a, b) for a, b, _ in pairs]):
        inside = set(comp)
        dists = [d for a, b, d in pairs if a in inside]
        near.append(_group_finding([entries[i] for i in comp], max_distance=max(dists), min_distance=min(dists)))
    cross_pairs = [(a, b, d) for a, b, d in pairs if entries[a].split != entries[b].split]

    patients: dict[str, list[_Entry]] = defaultdict(list)
    for e in entries:
        if e.patient:
            patients[e.patient].append(e)
    overlap = [
        {"patient_id": pid, **_group_finding(members)}
        for pid, members in sorted(patients.items())
        if len({m.split for m in members}) > 1
    ]

    fit_split = "train" if "train" in ds.splits else next(iter(ds.splits))  # the images a model learns from
    cue_rows = [i for i, e in enumerate(entries) if e.split == fit_split and facts[i].intensity]
    cue = (
        intensity_cue_auc(
            np.array([facts[i].intensity for i in cue_rows]), np.array([entries[i].label for i in cue_rows])
        )
        if cue_rows
        else None
    )

    first_of: dict[str, int] = {}  # a patient's first image: the others link to it
    linked = [(a, b) for a, b, _ in pairs] + [(ix[0], j) for ix in by_hash.values() for j in ix[1:]]
    linked += [(first_of.setdefault(e.patient, i), i) for i, e in enumerate(entries) if e.patient]
    probes = run_probes(facts, [e.label for e in entries], probe_groups(len(entries), linked))

    sizes = Counter(f"{f.width}x{f.height}" for f in facts if f.width)
    summary = {
        "images": len(entries),
        "unreadable": len(unreadable),
        "exact_duplicate_groups": len(exact),
        "exact_duplicate_groups_across_splits": sum(g["across_splits"] for g in exact),
        "near_duplicate_pairs": len(pairs),
        "near_duplicate_pairs_across_splits": len(cross_pairs),
        "near_duplicate_groups": len(near),
        "near_duplicate_groups_across_splits": sum(g["across_splits"] for g in near),
        "duplicates_with_conflicting_labels": sum(g["conflicting_labels"] for g in exact + near),
        "patients": len(patients),
        "files_without_patient_id": sum(e.patient is None for e in entries),
        "patients_across_splits": len(overlap),
        "intensity_cue_auc": None if cue is None else round(cue, 3),
        "shortcut_probe_aucs": {k: p["auc"] for k, p in probes.items() if k != "settings"},
        "shortcut_warnings": sum(bool(p.get("warning")) for p in probes.values()),
    }
    summary["leakage"] = bool(
        summary["exact_duplicate_groups_across_splits"] or summary["near_duplicate_pairs_across_splits"] or overlap
    )
    return {
        "data": str(data),
        "root": str(ds.root),  # file paths below are relative to it
        "settings": {
            "hash": f"pHash {HASH_SIZE**2} bits",
            "threshold": threshold,
            "patient_id_pattern": pattern,
            "intensity_cue_split": fit_split,
        },
        "classes": ds.classes,
        "summary": summary,
        "counts": counts,
        "image_sizes": {"distinct": len(sizes), "most_common": dict(sizes.most_common(10)), **_size_range(facts)},
        "modes": dict(Counter(f.mode for f in facts if f.mode).most_common()),
        "unreadable": unreadable,
        "exact_duplicates": exact,
        "near_duplicates": near,
        "near_duplicate_pairs_across_splits": [
            {"distance": d, "files": [_file_record(entries[a]), _file_record(entries[b])]} for a, b, d in cross_pairs
        ],
        "patient_overlap": overlap,
        "probes": probes,
    }


def _size_range(facts: list[FileFacts]) -> dict[str, list[int]]:
    ok = [f for f in facts if f.width]
    if not ok:
        return {}
    return {
        "min_width_height": [min(f.width for f in ok), min(f.height for f in ok)],
        "max_width_height": [max(f.width for f in ok), max(f.height for f in ok)],
    }


def example_pairs(report: dict[str, Any], limit: int = 8) -> list[tuple[Path, Path, str]]:
    """Pairs to show side by side: cross-split near duplicates (closest first), then cross-split exact copies."""
    root = Path(report["root"])
    out = []
    for pair in sorted(report["near_duplicate_pairs_across_splits"], key=lambda p: p["distance"]):
        a, b = pair["files"]
        out.append((root / a["path"], root / b["path"], f"distance {pair['distance']}"))
    for group in report["exact_duplicates"]:
        if group["across_splits"]:
            a, b = group["files"][:2]
            out.append((root / a["path"], root / b["path"], "identical bytes"))
    return out[:limit]


def run_audit(data: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Audit `data`, write `<out>/audit.json` and `<out>/plots/`; returns the report."""

    out = Path(out)
    report = audit_dataset(data, **kwargs)
    plots = out / PLOTS  # named as a run's
    report["plots"] = [str(plot_class_counts(report["counts"], plots / "class_counts.png"))]
    pairs = example_pairs(report)
    if pairs:
        report["plots"].append(str(plot_pairs(pairs, plots / "duplicates_across_splits.png")))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "audit.json", json.dumps(report, indent=1))
    return report


def _intensity_cue_line(auc: float | None, split: str) -> str:
    if auc is None:
        return "intensity cue: not measured (fewer than 5 readable images in a class)"
    line = f"intensity cue: global brightness/contrast statistics alone predict the class with AUC {auc:.2f} ({split})"
    if auc > INTENSITY_CUE_WARN:
        line += (
            "; a model can learn the scanner or batch instead of the disease: consider `input_norm: image` or `histeq`"
        )
    return line


def summary_lines(report: dict[str, Any], examples: int = 3) -> list[str]:
    """Human-readable summary: totals, then each kind of finding with its first few files."""
    s = report["summary"]
    lines = [
        f"{s['images']} images, {len(report['classes'])} classes, splits: "
        + ", ".join(f"{k} {sum(v.values())}" for k, v in report["counts"].items()),
        f"sizes: {report['image_sizes']['distinct']} distinct; modes: "
        + ", ".join(f"{m} {n}" for m, n in list(report["modes"].items())[:4]),
        f"unreadable: {s['unreadable']}",
        f"exact duplicates: {s['exact_duplicate_groups']} groups, "
        f"{s['exact_duplicate_groups_across_splits']} across splits",
        f"near duplicates (pHash distance <= {report['settings']['threshold']}): {s['near_duplicate_pairs']} pairs, "
        f"{s['near_duplicate_pairs_across_splits']} across splits",
        f"duplicates with conflicting labels: {s['duplicates_with_conflicting_labels']}",
        f"patients: {s['patients']} ids ({s['files_without_patient_id']} files without one), "
        f"{s['patients_across_splits']} in more than one split",
        _intensity_cue_line(s["intensity_cue_auc"], report["settings"]["intensity_cue_split"]),
        *probe_lines(report["probes"]),
    ]

    def show(title: str, findings: list[dict[str, Any]]) -> None:
        for f in findings[:examples]:
            lines.append(f"  {title}: " + "  |  ".join(f"{x['split']}: {x['path']}" for x in f["files"][:3]))

    show("unreadable", [{"files": [u]} for u in report["unreadable"]])
    show("exact copy across splits", [g for g in report["exact_duplicates"] if g["across_splits"]])
    show("near copy across splits", report["near_duplicate_pairs_across_splits"])
    show("patient across splits", report["patient_overlap"])
    return lines
