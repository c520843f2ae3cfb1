import socket

import pytest

from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.readingroom.conftest import MODEL, fake_png
from tests.serve.conftest import served_run  # noqa: F401 (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readers_add_prints_a_key_that_records_reads(tmp_path, capsys, monkeypatch):
    done = run_cli_inprocess(capsys, monkeypatch, "readers", "add", "Dr Ann", "--db", tmp_path)  # a run directory
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), None, salt=b"s")
    film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    assert room.add_read(film["id"], key, "Covid")["reader"] == "Dr Ann"
    again = run_cli_inprocess(capsys, monkeypatch, "readers", "add", "Dr Ann", "--db", tmp_path)
    assert_one_line_error(again, "exists already")
    listed = run_cli_inprocess(capsys, monkeypatch, "readers", "list", "--db", sqlite_url(tmp_path / "reading.db"))
    assert "Dr Ann" in listed.stdout and key not in listed.stdout
    assert run_cli_inprocess(capsys, monkeypatch, "readers", "revoke", "Dr Ann", "--db", tmp_path).returncode == 0
    assert_one_line_error(
        run_cli_inprocess(capsys, monkeypatch, "readers", "revoke", "Bob", "--db", tmp_path), "no reader named 'Bob'"
    )


def test_a_db_that_is_neither_a_folder_nor_a_url_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    done = run_cli_inprocess(capsys, monkeypatch, "readers", "list", "--db", tmp_path / "missing")
    assert_one_line_error(done, "--db", "not a folder")


@pytest.mark.parametrize("db", ["{tmp}", "{tmp}/typo.db", "sqlite:///{tmp}/typo.db"])
def test_reading_a_database_that_does_not_exist_creates_none(tmp_path, capsys, monkeypatch, db):
    db = db.format(tmp=tmp_path)
    for command in (["readers", "list"], ["feedback", "stats"], ["feedback", "export", "--out", tmp_path / "fb"]):
        assert_one_line_error(run_cli_inprocess(capsys, monkeypatch, *command, "--db", db), "no reading-room database")
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_bad_db_or_watch_folder_in_one_line(served_run, tmp_path, capsys, monkeypatch):
    for flags, message in ((["--db", "oracle://x"], "--db"), (["--watch", tmp_path / "nope"], "--watch")):
        done = run_cli_inprocess(capsys, monkeypatch, "serve", served_run, "--port", _free_port(), *flags)
        assert_one_line_error(done, message)


def test_admins_last_use_and_the_audit_log_on_the_command_line(tmp_path, capsys, monkeypatch):
    import json

    from cxr.readingroom.access_log import Actor

    added = run_cli_inprocess(capsys, monkeypatch, "readers", "add", "Dr Boss", "--role", "admin", "--db", tmp_path)
    assert added.returncode == 0 and "admin 'Dr Boss' added" in added.stdout
    key = added.stdout.strip().splitlines()[-1]
    room = ReadingRoom(sqlite_url(tmp_path / "reading.db"), None, salt=b"s")
    film = room.record(fake_png(1), "a.png", MODEL, [0.2, 0.7, 0.1], "Normal")
    room.study(film["id"], Actor("Dr Boss", "admin", "10.1.2.3"))
    assert room.authenticate(key).role == "admin"
    listed = run_cli_inprocess(capsys, monkeypatch, "readers", "list", "--db", tmp_path)
    assert "admin" in listed.stdout and "last used" in listed.stdout and key not in listed.stdout
    assert room.readers()[0]["last_used_at"][:4] in listed.stdout
    run_cli_inprocess(capsys, monkeypatch, "readers", "revoke", "Dr Boss", "--db", tmp_path)
    table = run_cli_inprocess(capsys, monkeypatch, "audit-log", "--db", tmp_path)
    assert table.returncode == 0 and "view_study" in table.stdout and "10.1.2.3" in table.stdout
    lines = run_cli_inprocess(capsys, monkeypatch, "audit-log", "--db", tmp_path, "--json").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["action"] for e in entries] == ["revoke_reader", "view_study", "upload", "add_reader"]  # newest first
    assert entries[0]["role"] == "local" and entries[0]["client"].startswith("cli@")  # the user at this machine
    only = run_cli_inprocess(capsys, monkeypatch, "audit-log", "--db", tmp_path, "--study", film["id"], "--json")
    assert {json.loads(line)["action"] for line in only.stdout.splitlines()} == {"upload", "view_study"}
    assert_one_line_error(
        run_cli_inprocess(capsys, monkeypatch, "audit-log", "--db", tmp_path, "--action", "peek"), "--action 'peek'"
    )
    assert_one_line_error(
        run_cli_inprocess(capsys, monkeypatch, "readers", "add", "x", "--role", "owner", "--db", tmp_path),
        "role 'owner'",
    )
