"""Atomic writes: a file (or folder) appears complete under its name or not at all, and no temp file is left behind.

Every run artefact a later command trusts (model.pt, metrics.json, history.csv, manifests, caches) is written this
way, so a crash, Ctrl-C or full disk never leaves half a file that looks finished.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_temps(target: Path, host: str) -> None:
    """Temp files of this target left by a process killed outright (SIGKILL, OOM killer: no cleanup code runs).

    Only this machine's: on a folder shared between nodes, another host's pid says nothing here.
    """
    pattern = re.compile(re.escape(f".{target.stem}.tmp{host}-") + r"(\d+)" + re.escape(target.suffix) + "$")
    for path in target.parent.glob(f".{glob.escape(target.stem)}.tmp*"):
        match = pattern.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            _remove(path)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`: renamed over it when the block ends cleanly, deleted when it raises."""
    # hand-written: the stdlib has no atomic write, and the `atomicwrites` package is archived
    target = Path(target)
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())
    _remove_stale_temps(target, host)
    # same folder (rename stays on one file system), same suffix (np.savez and torch.save key on it), hidden name
    tmp = target.with_name(f".{target.stem}.tmp{host}-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        _remove(tmp)


def write_text_atomic(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_durable(target: str | Path, data: bytes) -> Path:
    """Write `data` so it survives a power cut once this returns: temp file, fsync, rename, fsync of the folder. For
    what is acknowledged to a sender before anything else keeps it (the DICOM gateway's spool)."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return target
