"""The intake without a PACS: a film the database could not take is scored later, not lost; a film whose result
cannot be made is still scored and says why."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

pytest.importorskip("pynetdicom")

from cxr.gateway import intake as intake_module  # noqa: E402
from cxr.gateway.config import FrontalRules  # noqa: E402
from cxr.gateway.intake import FAILED, SCORED, Intake  # noqa: E402
from cxr.readingroom import ReadingRoom  # noqa: E402
from cxr.readingroom.db import sqlite_url  # noqa: E402
from cxr.readingroom.schema import DicomInstance  # noqa: E402
from tests.gateway import wait_for  # noqa: E402
from tests.gateway.films import dx_film, encode  # noqa: E402


@pytest.fixture
def room(tmp_path):
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), tmp_path / "images", salt=b"s")
    yield room
    room.close()


def _status(room: ReadingRoom) -> tuple[str, str | None]:
    with room.session() as session:
        row = session.scalar(select(DicomInstance))
        return row.status, row.reason


class Busy(Exception):
    """What the service's predictor raises when the reading room cannot store (its HTTP 503)."""

    status_code = 503


@pytest.mark.parametrize("failure", [OperationalError("INSERT", {}, Exception("database is locked")), Busy("retry")])
def test_a_film_the_database_could_not_take_is_scored_on_a_later_pass(room, tmp_path, monkeypatch, failure):
    monkeypatch.setattr(intake_module, "RETRY_SECONDS", 0.2)
    calls = []

    def score(data: bytes, filename: str, sender: str) -> str:
        calls.append(filename)
        if len(calls) == 1:
            raise failure
        return "f" * 32

    intake = Intake(room, tmp_path / "spool", FrontalRules(), score, lambda header, film_id: None)
    intake.start()
    try:
        film = dx_film()
        assert not intake.receive(encode(film), film, "MOD").duplicate
        wait_for(lambda: _status(room)[0] == SCORED, timeout=20, what="the film to be scored", interval=0.05)
    finally:
        intake.stop()
    assert len(calls) == 2 and not list((tmp_path / "spool").glob("*.dcm"))  # the spooled copy is gone once scored


def test_a_result_that_cannot_be_made_leaves_the_film_scored_with_the_reason(room, tmp_path):
    def on_scored(header, film_id):
        raise ValueError("Patient's Sex must be one of M, F, O")

    intake = Intake(room, tmp_path / "spool", FrontalRules(), lambda *a: "f" * 32, on_scored)
    film = dx_film()
    received = intake.receive(encode(film), film, "MOD")
    assert intake.process(received.instance_id) == SCORED
    status, reason = _status(room)
    assert status == SCORED and "no result for the PACS" in reason and "ValueError" in reason


def test_an_unreadable_film_fails_with_its_reason_and_keeps_nothing_spooled(room, tmp_path):
    def score(data, filename, sender):
        raise ValueError("film.dcm: DICOM lacks valid Rows/Columns; not an image")

    intake = Intake(room, tmp_path / "spool", FrontalRules(), score, lambda *a: None)
    film = dx_film()
    received = intake.receive(encode(film), film, "MOD")
    assert intake.process(received.instance_id) == FAILED
    assert "Rows/Columns" in _status(room)[1] and not list((tmp_path / "spool").glob("*.dcm"))
