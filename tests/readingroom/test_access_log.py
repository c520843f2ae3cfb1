"""The access log and the keys, on SQLite and PostgreSQL: every upload, film view, read, export and reader change is
logged with who, what, when and from where; the log refuses changes; keys are kept only as salted hashes, roles and
last use are recorded, a revoked key stops at once, and keys made before the migration keep working."""

import hashlib
import hmac
import secrets

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from cxr.errors import CxrError
from cxr.readingroom import ReadingRoom
from cxr.readingroom.access_log import Actor, LogFilter
from cxr.readingroom.db import current_revision, sqlite_path, sqlite_url, upgrade
from cxr.readingroom.feedback import export_feedback
from tests.readingroom.conftest import MODEL, fake_png
from tests.readingroom.test_feedback import reviewed  # noqa: F401 (fixture)

ANN_AT_DESK = "10.0.0.7"


def _log(room, **filters) -> list[tuple]:
    items = room.access_log(LogFilter(**filters), limit=1000)["items"]
    return [(e["actor"], e["role"], e["client"], e["action"], e["film_id"]) for e in reversed(items)]  # oldest first


def test_uploads_views_and_reads_are_logged_with_who_and_where(room):
    sender = Actor("api key", "api-key", "10.0.0.9")
    film = room.record(fake_png(1), "DOE_JOHN.png", MODEL, [0.2, 0.7, 0.1], "Normal", actor=sender)["id"]
    key = room.add_reader("ann")
    ann = Actor("ann", "reader", ANN_AT_DESK)
    room.study(film, ann)
    room.image_path(film, ann)
    room.study(film)  # no actor: a call from Python that shows nobody anything is not a view
    read = room.add_read(film, key, "Covid", client=ANN_AT_DESK)
    assert _log(room, film_id=film) == [
        ("api key", "api-key", "10.0.0.9", "upload", film),
        ("ann", "reader", ANN_AT_DESK, "view_study", film),
        ("ann", "reader", ANN_AT_DESK, "view_image", film),
        ("ann", "reader", ANN_AT_DESK, "read", film),
    ]
    entry = room.access_log(LogFilter(action="read"))["items"][0]
    assert entry["detail"] == f"read {read['id']}, version 1" and entry["at"].endswith("Z")
    assert "DOE_JOHN" not in str(room.access_log(limit=1000))  # the log names studies, never files
    assert room.access_log(LogFilter(actor="nobody"))["total"] == 0


def test_a_failed_read_or_an_unknown_film_logs_nothing(room):
    film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")["id"]
    key = room.add_reader("ann")
    before = room.access_log()["total"]
    ann = Actor("ann", "reader")
    for call in (
        lambda: room.add_read(film, key, "Cat"),
        lambda: room.add_read(film, "cxr_wrong", "Normal"),
        lambda: room.study("0" * 32, ann),
        lambda: room.image_path("0" * 32, ann),
    ):
        with pytest.raises(CxrError):
            call()
    assert room.access_log()["total"] == before


def test_every_exported_film_is_logged(reviewed, tmp_path):  # noqa: F811
    room, ids = reviewed
    result = export_feedback(room, tmp_path / "fb", Actor("alice", "local", "cli@ward-pc"))
    exported = _log(room, action="export")
    assert len(exported) == result.rows and {e[4] for e in exported} == set(ids) - {ids[2]}
    assert {e[:4] for e in exported} == {("alice", "local", "cli@ward-pc", "export")}


def test_the_log_refuses_changes_and_deletions(room):
    room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    for statement in ("UPDATE access_log SET actor = 'someone else'", "DELETE FROM access_log"):
        with pytest.raises(DBAPIError, match="append-only"), room.engine.begin() as conn:
            conn.execute(text(statement))
    assert _log(room)[0][:2] == ("python", "local")


def test_keys_are_kept_only_as_salted_hashes(room):
    keys = [room.add_reader("ann"), room.add_reader("boss", "admin")]
    with room.engine.connect() as conn:
        rows = conn.execute(text("SELECT name, role, key_id, key_salt, key_hash FROM readers ORDER BY name")).all()
    for key, (_, _, key_id, salt, stored) in zip(keys, rows):
        plain = hashlib.sha256(key.encode()).hexdigest()
        assert stored != plain and stored == hmac.new(salt.encode(), plain.encode(), hashlib.sha256).hexdigest()
        assert key.startswith(f"cxr_{key_id}.") and key.split(".", 1)[1] not in str(tuple(rows))
    assert rows[0][3] != rows[1][3] and [r[1] for r in rows] == ["reader", "admin"]
    db_file = sqlite_path(room.url)
    if db_file is not None:  # not a byte of any key in the database files
        raw = b"".join(p.read_bytes() for p in db_file.parent.glob(f"{db_file.name}*"))
        assert not any(k.split(".", 1)[1].encode() in raw for k in keys)


def test_roles_last_use_and_revocation_take_effect_at_once(room):
    key = room.add_reader("boss", "admin")
    assert room.has_active_keys()
    assert room.readers()[0]["last_used_at"] is None
    person = room.authenticate(key)
    assert (person.name, person.role) == ("boss", "admin") and room.readers()[0]["last_used_at"] is not None
    assert room.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # one character off
    assert room.authenticate("cxr_" + "0" * 12 + ".x") is None and room.authenticate(None) is None
    room.revoke_reader("boss", Actor("carol", "admin", "10.0.0.1"))
    assert room.authenticate(key) is None and not room.has_active_keys()
    assert _log(room)[-1] == ("carol", "admin", "10.0.0.1", "revoke_reader", None)
    with pytest.raises(Exception, match="role 'owner'"):
        room.add_reader("dan", "owner")
    with pytest.raises(Exception, match="without control characters"):
        room.add_reader("a/b")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keys_made_before_the_migration_keep_working_and_are_salted(request, tmp_path, backend):
    """A 0.8 database (schema 0001, reader keys as plain SHA-256) upgraded in place."""
    url = sqlite_url(tmp_path / "old.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    upgrade(engine, revision="0001")
    old_key = "cxr_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO readers (name, key_hash, created_at) VALUES ('ann', :h, '2026-12-03')"),
            {"h": hashlib.sha256(old_key.encode()).hexdigest()},
        )
    engine.dispose()
    room = ReadingRoom(url, None, salt=b"s")  # migrates to head
    try:
        assert current_revision(room.engine) == "0004"
        assert room.authenticate(old_key).name == "ann" and room.readers()[0]["role"] == "reader"
        with room.engine.connect() as conn:
            stored = conn.execute(text("SELECT key_hash FROM readers")).scalar()
        assert stored != hashlib.sha256(old_key.encode()).hexdigest()
        film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")["id"]
        assert room.add_read(film, old_key, "Normal")["reader"] == "ann"
    finally:
        room.close()
