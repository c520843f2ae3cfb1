"""A reading room on a fresh SQLite file per test (the PostgreSQL fixtures live in tests/readingroom/postgres.py)."""

from __future__ import annotations

import pytest

from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from cxr.readingroom.service import ModelFacts

MODEL = ModelFacts("demo", "0123456789ab", "smallnet", ["Covid", "Normal", "Viral Pneumonia"], None)
PNG = b"\x89PNG\r\n\x1a\n"


def fake_png(i: int) -> bytes:
    """Distinct bytes per film for storage tests (the room never decodes them; the service tests post real X-rays)."""
    return PNG + f"film {i}".encode()


@pytest.fixture
def room(tmp_path):
    r = ReadingRoom(sqlite_url(tmp_path / "reading.db"), tmp_path / "images", salt=b"pepper")
    yield r
    r.close()
