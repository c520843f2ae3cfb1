"""A reading room on a fresh database per test: a SQLite file, and a database on a throw-away PostgreSQL cluster."""

from __future__ import annotations

import pytest

from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from cxr.readingroom.service import ModelFacts
from tests.pg import postgres_server, postgres_url  # noqa: F401 (fixtures)

MODEL = ModelFacts("demo", "0123456789ab", "smallnet", ["Covid", "Normal", "Viral Pneumonia"], None)
PNG = b"\x89PNG\r\n\x1a\n"


def fake_png(i: int) -> bytes:
    """Distinct bytes per film for storage tests (the room never decodes them; the service tests post real X-rays)."""
    return PNG + f"film {i}".encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def room(request, tmp_path):
    url = sqlite_url(tmp_path / "reading.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    r = ReadingRoom(url, tmp_path / "images", salt=b"pepper")
    yield r
    r.close()
