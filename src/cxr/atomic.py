"""Atomic writes: a file (or folder) appears complete under its name or not at all, and no temp file is left behind.

Every run artefact a later command trusts (model.pt, metrics.json, history.csv, manifests, caches) is written this
way, so a crash, Ctrl-C or full disk never leaves half a file that looks finished.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`: renamed over it when the block ends cleanly, deleted when it raises."""
    # hand-written: the stdlib has no atomic write, and the `atomicwrites` package is archived
    target = Path(target)
    # same folder (rename stays on one file system), same suffix (np.savez and torch.save key on it), hidden name
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)
