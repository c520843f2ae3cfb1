"""A content-addressed image store: each film's bytes under images/<first two hex digits>/<sha256><suffix>.

The same image received twice is kept once; a file is complete under its name or absent (cxr.atomic), and it is
written before its database row commits, so a recorded film never points at a missing image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cxr.atomic import atomic_path
from cxr.data.images import DICOM_MAGIC_END, IMAGE_EXTENSIONS, is_dicom

_PIL_SUFFIX = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_suffix(data: bytes, filename: str | None) -> str:
    """The suffix a copy needs to be read back by `load_grayscale`: by content first, then the uploaded name."""
    if is_dicom(Path(filename or "upload"), data[:DICOM_MAGIC_END]):
        return ".dcm"
    for magic, suffix in _PIL_SUFFIX.items():
        if data.startswith(magic):
            return suffix
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


class ImageStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, digest: str, suffix: str) -> Path:
        return self.root / digest[:2] / f"{digest}{suffix}"

    def put(self, data: bytes, digest: str, suffix: str) -> Path:
        target = self.path(digest, suffix)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return target
