import hashlib
import hmac
import sqlite3
import stat

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from cxr.errors import CxrError
from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import connect, current_revision, sqlite_url
from cxr.readingroom.identity import SALT_ENV, load_salt
from cxr.readingroom.schema import Base, Film
from cxr.readingroom.service import UnknownFilm
from tests.data.dicom_files import dicom_dataset
from tests.readingroom.conftest import MODEL, fake_png


def test_the_shipped_migrations_build_exactly_the_models_tables(room):
    with room.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert current_revision(room.engine) == "0004"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    engine = connect(sqlite_url(tmp_path / "r.db"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_reopening_a_database_keeps_its_records(tmp_path):
    url = sqlite_url(tmp_path / "r.db")
    first = ReadingRoom(url, None, salt=b"s")
    film = first.record(fake_png(1), "a.png", MODEL, [0.1, 0.8, 0.1], "Normal")
    first.close()
    again = ReadingRoom(url, None, salt=b"s")  # runs `upgrade head` again: a no-op, never a re-create
    assert [x["id"] for x in again.studies()["items"]] == [film["id"]]


def test_a_prediction_is_recorded_with_the_image_stored_once_by_content(room):
    data = fake_png(1)
    a = room.record(data, "a.png", MODEL, [0.2, 0.7, 0.1], "Normal", seconds=0.01)
    b = room.record(data, "again.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    digest = hashlib.sha256(data).hexdigest()
    files = [p for p in room.store.root.rglob("*") if p.is_file()]
    assert files == [room.store.root / digest[:2] / f"{digest}.png"] and files[0].read_bytes() == data
    assert room.image_path(a["id"]) == room.image_path(b["id"]) == files[0]
    got = room.study(a["id"])
    assert got["sha256"] == digest and got["probabilities"] == {"Covid": 0.2, "Normal": 0.7, "Viral Pneumonia": 0.1}
    assert got["model"] == {"id": "demo", "version": "0123456789ab", "architecture": "smallnet"}
    assert got["positive_score"] == pytest.approx(0.3) and got["flagged"] is False and got["ood_score"] is None
    assert got["received_at"].endswith("Z") and got["dicom"]["study_uid"] is None and got["patient_hash"] is None


def test_without_the_store_only_the_hash_is_kept(tmp_path):
    room = ReadingRoom(sqlite_url(tmp_path / "r.db"), None, salt=b"s")
    film = room.record(fake_png(1), "a.png", MODEL, [0.6, 0.3, 0.1], "Covid", ood_score=0.25)
    assert room.study(film["id"])["image_stored"] is False and room.study(film["id"])["ood_score"] == 0.25
    with pytest.raises(UnknownFilm, match="not stored"):
        room.image_path(film["id"])
    assert not (tmp_path / "images").exists()


def _dicom_bytes(tmp_path, patient: str, accession: str = "ACC42") -> tuple[bytes, object]:
    ds = dicom_dataset(np.full((16, 16), 90, np.uint8))
    ds.PatientID, ds.AccessionNumber = patient, accession
    ds.StudyDate, ds.ViewPosition = "20270114", "AP"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
    path = tmp_path / f"{patient}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes(), ds


def test_dicom_uids_are_kept_and_the_patient_only_as_a_salted_hash(room, tmp_path):
    data, _ = _dicom_bytes(tmp_path, "PATIENT-7781")
    a = room.record(data, "scan", MODEL, [0.1, 0.1, 0.8], "Viral Pneumonia")
    b = room.record(data + b"", "scan2.dcm", MODEL, [0.1, 0.1, 0.8], "Viral Pneumonia")
    got = room.study(a["id"])
    assert got["dicom"] == {
        "study_uid": "1.2.3",
        "series_uid": "1.2.3.4",
        "sop_uid": "1.2.3.4.5",
        "accession": "ACC42",
        "study_date": "20270114",
        "view": "AP",
    }
    expected = hmac.new(b"pepper", b"PATIENT-7781", hashlib.sha256).hexdigest()
    assert got["patient_hash"] == expected == room.study(b["id"])["patient_hash"]
    assert room.image_path(a["id"]).suffix == ".dcm"  # stored under a suffix the decoder reads back
    with room.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM films").all()
    assert "PATIENT-7781" not in repr(rows) and expected in repr(rows)
    if room.engine.dialect.name != "sqlite":
        return
    with sqlite3.connect(room.engine.url.database) as conn:  # nowhere in the database file or its WAL
        dump = "\n".join(conn.iterdump())
    assert "PATIENT-7781" not in dump and expected in dump
    for f in room.engine.url.database, room.engine.url.database + "-wal":
        assert b"PATIENT-7781" not in open(f, "rb").read()


def test_the_salt_file_is_made_once_private_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    first = load_salt(tmp_path)
    assert len(first) == 64 and load_salt(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "reading-salt").stat().st_mode) == 0o600
    monkeypatch.setenv(SALT_ENV, "from-env")
    assert load_salt(tmp_path) == b"from-env"


def test_a_failed_write_leaves_no_row(room, monkeypatch):
    film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    import cxr.readingroom.service as service

    class Same:
        hex = film["id"]

    monkeypatch.setattr(service.uuid, "uuid4", lambda: Same)  # a primary-key clash fails the insert at commit
    with pytest.raises(Exception):  # noqa: B017 (whichever error the database raises for the clash)
        room.record(fake_png(2), "b.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    with room.session() as s:
        assert s.scalar(select(func.count()).select_from(Film)) == 1


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "oracle://x"])
def test_an_unsupported_or_malformed_url_is_a_one_line_error(url):
    with pytest.raises(CxrError, match="--db"):
        connect(url)


def test_a_sqlite_file_in_a_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(CxrError, match="does not exist"):
        connect(sqlite_url(tmp_path / "nope" / "r.db"))


def test_an_unreachable_postgresql_server_is_a_one_line_error():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CxrError, match="cannot open database .*Connection refused") as e:
        connect(f"postgresql+psycopg://postgres:secret@127.0.0.1:{port}/x")
    assert "secret" not in str(e.value) and f"postgres:***@127.0.0.1:{port}/x" in str(e.value)  # no password shown


NEXT_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("films", sa.Column("laterality", sa.String(8), nullable=True))
"""


def test_a_later_migration_upgrades_a_database_in_use_and_keeps_its_records(room, tmp_path):
    """What a newer cxr does at start-up: `upgrade head` adds its schema change to a database holding records."""
    import shutil
    from importlib import resources

    from cxr.readingroom.db import upgrade

    film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    key = room.add_reader("ann")
    room.add_read(film["id"], key, "Covid")
    scripts = tmp_path / "migrations"
    shutil.copytree(resources.files("cxr.readingroom") / "migrations", scripts)
    (scripts / "versions" / "0005_laterality.py").write_text(NEXT_REVISION)
    upgrade(room.engine, str(scripts))
    assert current_revision(room.engine) == "0005"
    with room.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT id, laterality FROM films").one()
    assert tuple(row) == (film["id"], None)
    assert room.study(film["id"])["history"][0]["label"] == "Covid"  # the read survived too


def test_processes_starting_together_agree_on_one_salt(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv(SALT_ENV, raising=False)
    code = "import sys; from cxr.readingroom.identity import load_salt; print(load_salt(sys.argv[1]).decode())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    salts = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert salts == {(tmp_path / "reading-salt").read_text()} and len(salts.pop()) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["reading-salt"]  # no temp file left
