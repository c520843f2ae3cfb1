"""Option checks run as Typer callbacks before any work: a wrong `--out` or `--split` is a one-line error (not a
traceback after minutes of work), and a file of another kind (a run's model.pt) is never overwritten."""

from __future__ import annotations

from pathlib import Path

from cxr.errors import CxrError


def _no_file_on_the_way(path: Path) -> None:
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise CxrError(f"--out {path}: {p} is a file, not a folder")


def _file(path: Path | None, suffixes: tuple[str, ...], what: str) -> Path | None:
    if path is None:
        return None
    if path.is_dir():
        raise CxrError(f"--out {path} is a folder; pass a file name, e.g. {path / ('out' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        example = path.with_suffix(suffixes[0])
        raise CxrError(f"--out {path}: {what} file names end in {' or '.join(suffixes)}, e.g. {example}")
    _no_file_on_the_way(path.parent)
    return path


def csv_out(path: Path | None) -> Path | None:
    return _file(path, (".csv",), "CSV")


def html_out(path: Path | None) -> Path | None:
    return _file(path, (".html", ".htm"), "HTML")


def image_out(path: Path | None) -> Path | None:
    return _file(path, (".png", ".jpg", ".jpeg", ".pdf", ".svg"), "image")


def folder_out(path: Path | None) -> Path | None:
    """A folder the command fills (created when missing); an existing file, or a file on its path, is refused."""
    if path is not None:
        _no_file_on_the_way(path)
    return path


def split_name(split: str) -> str:
    if split not in ("test", "val", "train"):
        raise CxrError(f"--split must be test, val or train, not {split!r}")
    return split
