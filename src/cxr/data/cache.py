"""Decode and resize each image once: an on-disk uint8 cache under the cache dir, never inside the dataset."""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from cxr.atomic import atomic_path
from cxr.data.images import ImageReadError, load_grayscale

log = logging.getLogger("cxr")
_warned_unwritable: set[Path] = set()


def default_cache_dir() -> Path:
    return Path(os.environ.get("CXR_CACHE_DIR", Path.home() / ".cache" / "cxr"))


@dataclass
class DecodedImages:
    images: np.ndarray  # uint8 (N, size, size), only the readable files
    kept: np.ndarray  # indices into the requested paths that decoded
    errors: list[str]  # one message per unreadable file


def _cache_key(paths: list[Path], size: int) -> str:
    h = hashlib.sha1(f"v1|{size}".encode())
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:  # a listed file removed since (a run's splits.csv): decoding reports it unreadable
            h.update(f"|{p.resolve()}|missing".encode())
            continue
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _decode_all(paths: list[Path], size: int, desc: str) -> DecodedImages:
    def one(p: Path) -> np.ndarray | str:
        try:
            return load_grayscale(p, size)
        except ImageReadError as e:
            return str(e)

    # Threads suffice: PIL releases the GIL while decoding and resizing.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(track(pool.map(one, paths), total=len(paths), description=desc, transient=True))
    kept = np.array([i for i, r in enumerate(results) if not isinstance(r, str)], dtype=np.int64)
    errors = [r for r in results if isinstance(r, str)]
    images = np.stack([results[i] for i in kept]) if len(kept) else np.zeros((0, size, size), np.uint8)
    return DecodedImages(images, kept, errors)


def decode_cached(paths: list[Path], size: int, cache_dir: Path | None = None, desc: str = "decoding") -> DecodedImages:
    """Return decoded images, from `<cache_dir>/decoded/<key>.npz` when the same files were decoded before."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / "decoded" / f"{_cache_key(paths, size)}.npz"
    if target.is_file():
        with np.load(target) as z:
            return DecodedImages(z["images"], z["kept"], list(z["errors"]))
    decoded = _decode_all(paths, size, desc)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            np.savez(tmp, images=decoded.images, kept=decoded.kept, errors=np.array(decoded.errors, dtype=str))
    except OSError as e:  # the cache only saves time: an unwritable one must not stop the run
        if cache_dir not in _warned_unwritable:  # once per run, not once per split
            _warned_unwritable.add(cache_dir)
            log.warning(f"cache dir {cache_dir} is not writable ({e.strerror or e}); decoding again next time")
    return decoded
