"""Keys over HTTP: once a key exists every /v1 route refuses a request without one (the routes are enumerated from
the app, so a new route cannot be forgotten); readers, admins and the shared key each get what their role allows; a
revoked key stops at once; wrong keys are limited per client; `cxr serve` refuses the network without a key; and
the service's own log lines name no file and no patient."""

import logging
import shutil

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cxr.readingroom.db import sqlite_url
from cxr.serve import create_app
from cxr.serve.app import is_loopback
from cxr.serve.limits import FailedKeyLimiter
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.serve.live import free_loopback_port

SHARED = "s3cret"


def _app(run, tmp_path, **options):
    return create_app(run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"), **options)


def _walk(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # newer FastAPI keeps an included router whole
        if inner is not None:
            yield from _walk(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


def v1_operations(app) -> list[tuple[str, str]]:
    """Every (method, path) under /v1, walked from the app's routes (hidden ones too) and checked against the schema."""
    walked = {(m, r.path) for r in _walk(app.routes) if r.path.startswith("/v1") for m in r.methods}
    documented = {(m.upper(), p) for p, item in app.openapi()["paths"].items() if p.startswith("/v1") for m in item}
    assert walked == documented
    return sorted(walked)


def _request(client, method: str, path: str, headers: dict | None = None, xray=None):
    path = path.replace("{study_id}", "0" * 32).replace("{name}", "someone")
    if path in ("/v1/predict", "/v1/explain"):
        files = {"file": ("x.jpeg", xray.read_bytes() if xray else b"not read", "image/jpeg")}
        return client.request(method, path, files=files, headers=headers)
    return client.request(
        method, path, json={"label": "Normal", "name": "x"} if method == "POST" else None, headers=headers
    )


@pytest.mark.parametrize("which", ["api key", "reader key"])
def test_every_v1_route_answers_401_without_a_key_once_one_exists(served_run, tmp_path, which):
    app = _app(served_run, tmp_path, api_key=SHARED if which == "api key" else "", failed_keys=(10**6, 60.0))
    with TestClient(app) as c:
        if which == "reader key":
            app.state.reading.room.add_reader("ann")
        operations = v1_operations(app)
        patient_data = {
            ("GET", "/v1/studies"),
            ("GET", "/v1/studies/{study_id}"),
            ("GET", "/v1/disagreements"),
            ("GET", "/v1/studies/{study_id}/image"),
            ("POST", "/v1/predict"),
            ("GET", "/v1/access-log"),
        }
        assert patient_data <= set(operations)
        for method, path in operations:
            for headers in (None, {"X-API-Key": "wrong"}, {"X-Reader-Key": "cxr_0123456789ab.wrong"}):
                r = _request(c, method, path, headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert "detail" in r.json()


def test_without_any_key_loopback_is_open_and_the_schema_asks_for_none(served_run, tmp_path, xray):
    app = _app(served_run, tmp_path, api_key="")
    with TestClient(app) as c:
        assert c.post("/v1/predict", files={"file": (xray.name, xray.read_bytes())}).status_code == 200
        assert c.get("/v1/studies").json()["total"] == 1
        assert c.get("/healthz").json()["auth"] is False
        ops = c.get("/openapi.json").json()["paths"]
        assert "security" not in ops["/v1/studies"]["get"] and "security" in ops["/v1/studies/{study_id}/reads"]["post"]
        app.state.reading.room.add_reader("ann")  # from now on a key is needed, and the schema says so
        assert c.get("/v1/studies").status_code == 401 and c.get("/healthz").json()["auth"] is True
        assert "security" in c.get("/openapi.json").json()["paths"]["/v1/studies"]["get"]
        # a proxy in front of a keyless service would open it to the proxy's network: refused
        app.state.reading.room.revoke_reader("ann")
        r = c.get("/v1/studies", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 401 and "proxy" in r.json()["detail"]


def test_roles_the_shared_key_a_reader_and_an_admin(served_run, tmp_path, xray):
    app = _app(served_run, tmp_path, api_key=SHARED)
    room = app.state.reading.room
    ann, boss = room.add_reader("ann"), room.add_reader("boss", "admin")
    shared, reader, admin = ({"X-API-Key": k} for k in (SHARED, ann, boss))
    with TestClient(app) as c:
        film = c.post("/v1/predict", files={"file": (xray.name, xray.read_bytes())}, headers=shared).json()["study_id"]
        # the shared key: studies and films, but it is nobody: no reads, no reader changes
        assert c.get(f"/v1/studies/{film}/image", headers=shared).status_code == 200
        assert c.post(f"/v1/studies/{film}/reads", json={"label": "Normal"}, headers=shared).status_code == 401
        assert c.get("/v1/readers", headers=shared).status_code == 401
        # a reader: films and reads, not the readers or the log
        assert c.get(f"/v1/studies/{film}/image", headers={"X-Reader-Key": ann}).content == xray.read_bytes()
        assert c.post(f"/v1/studies/{film}/reads", json={"label": "Normal"}, headers=reader).status_code == 201
        assert c.get("/v1/reader", headers=reader).json() == {"name": "ann", "role": "reader"}
        for method, path in (
            ("GET", "/v1/readers"),
            ("POST", "/v1/readers"),
            ("DELETE", "/v1/readers/boss"),
            ("GET", "/v1/access-log"),
        ):
            assert c.request(method, path, json={"name": "eve"}, headers=reader).status_code == 403
        # an admin: adds a reader whose key works at once, lists readers without keys, revokes at once
        added = c.post("/v1/readers", json={"name": "bob"}, headers=admin)
        assert added.status_code == 201 and added.json()["role"] == "reader"
        bob = {"X-API-Key": added.json()["key"]}
        assert c.get("/v1/reader", headers=bob).json()["name"] == "bob"
        assert c.post("/v1/readers", json={"name": "bob"}, headers=admin).status_code == 409
        listed = c.get("/v1/readers", headers=admin)
        assert {r["name"]: r["role"] for r in listed.json()} == {"ann": "reader", "boss": "admin", "bob": "reader"}
        assert all(r["last_used_at"] for r in listed.json()) and "key" not in listed.json()[0]
        assert not any(k in listed.text for k in (ann, boss, added.json()["key"]))
        assert c.delete("/v1/readers/bob", headers=admin).status_code == 200
        assert c.get("/v1/reader", headers=bob).status_code == 401  # revoked: the very next request
        assert c.delete("/v1/readers/boss", headers=admin).status_code == 409  # not your own key
        assert c.delete("/v1/readers/nobody", headers=admin).status_code == 404
        log = c.get("/v1/access-log", headers=admin).json()["items"]
    seen = {(e["actor"], e["action"]) for e in log}
    assert {
        ("api key", "upload"),
        ("ann", "view_image"),
        ("ann", "read"),
        ("boss", "add_reader"),
        ("boss", "revoke_reader"),
    } <= seen
    assert {e["client"] for e in log if e["actor"] != "python"} == {"testclient"}  # "python": room.add_reader


def test_wrong_keys_are_limited_per_client(served_run, tmp_path):
    app = _app(served_run, tmp_path, api_key=SHARED, failed_keys=(3, 60.0))
    with TestClient(app) as c:
        for _ in range(3):
            assert c.get("/v1/model", headers={"X-API-Key": "guess"}).status_code == 401
        blocked = c.get("/v1/model", headers={"X-API-Key": SHARED})  # even the right key: no more guesses
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
        assert c.get("/healthz").status_code == 200


def test_the_failed_key_limiter_counts_per_client_in_a_window():
    now = [0.0]
    limiter = FailedKeyLimiter(max_failures=2, window=10.0, max_clients=2, clock=lambda: now[0])
    limiter.failed("a")
    now[0] = 4.0
    limiter.failed("a")
    assert limiter.retry_after("a") == 6 and limiter.retry_after("b") is None
    now[0] = 10.5  # the first failure is out of the window
    assert limiter.retry_after("a") is None
    limiter.failed("b")
    limiter.failed("c")  # three clients, room for two: the least recent goes
    assert set(limiter._failures) == {"b", "c"}


def _fresh_run(served_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(served_run / "model.pt", run / "model.pt")
    return run


def test_serve_refuses_the_network_without_a_key_in_one_line(served_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CXR_API_KEY", raising=False)
    run = _fresh_run(served_run, tmp_path)
    done = run_cli_inprocess(capsys, monkeypatch, "serve", run, "--host", "0.0.0.0", "--port", free_loopback_port())
    assert_one_line_error(
        done,
        "refusing to listen on 0.0.0.0 without authentication",
        "CXR_API_KEY",
        "cxr readers add",
        "--insecure-no-auth",
    )
    assert not (run / "reading.db").exists()  # refused before anything was created


def test_serve_takes_the_network_with_a_key_or_the_insecure_flag(served_run, tmp_path, capsys, monkeypatch, caplog):
    import uvicorn

    monkeypatch.delenv("CXR_API_KEY", raising=False)
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    run = _fresh_run(served_run, tmp_path)
    from cxr.readingroom import ReadingRoom

    room = ReadingRoom.for_run(run)
    room.add_reader("ann")
    assert (
        run_cli_inprocess(
            capsys, monkeypatch, "serve", run, "--host", "0.0.0.0", "--port", free_loopback_port()
        ).returncode
        == 0
    )
    app, kw = started.pop()
    assert kw["host"] == "0.0.0.0"
    room.revoke_reader("ann")  # every key gone: a service on the network still answers nobody without one
    with TestClient(app) as c:
        assert c.get("/v1/studies").status_code == 401 and c.get("/healthz").json()["warning"] is None
    room.close()
    with caplog.at_level(logging.WARNING, logger="cxr"):
        assert (
            run_cli_inprocess(
                capsys,
                monkeypatch,
                "serve",
                run,
                "--host",
                "0.0.0.0",
                "--insecure-no-auth",
                "--port",
                free_loopback_port(),
            ).returncode
            == 0
        )
    app, _ = started.pop()
    assert "runs without authentication (--insecure-no-auth)" in caplog.text  # at start
    with TestClient(app) as c:
        assert c.get("/v1/studies").status_code == 200
        assert "--insecure-no-auth" in c.get("/healthz").json()["warning"]  # the page shows it (common.js)
    assert "insecure-warning" in c.get("/static/common.js").text


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("no-such-host.invalid")


def test_the_service_log_names_no_file_and_no_patient(served_run, tmp_path, xray, caplog):
    from tests.readingroom.test_storage import _dicom_bytes

    dicom, _ = _dicom_bytes(tmp_path, "PATIENT-7781")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "ROE_RICHARD.png").write_text("not an image")
    shutil.copy(xray, drop / "POE_EDGAR.jpeg")
    app = _app(served_run, tmp_path, api_key="", watch=drop)
    with caplog.at_level(logging.DEBUG), TestClient(app) as c:
        assert c.post("/v1/predict", files={"file": ("DOE_JOHN.dcm", dicom)}).status_code == 200
        assert c.post("/v1/predict", files={"file": ("SMITH_JANE.png", b"text")}).status_code == 415
        watcher = app.state.reading.watcher
        watcher.poll(), watcher.poll()
        (tmp_path / "not-a-folder").write_text("")
        app.state.reading.room.store.root = tmp_path / "not-a-folder"  # the store fails: 503, logged
        assert c.post("/v1/predict", files={"file": ("LEE_ANN.jpeg", xray.read_bytes())}).status_code == 503
    assert "watch: recorded study" in caplog.text and "watch: a file was not recorded" in caplog.text
    assert "reading room:" in caplog.text
    for name in ("DOE_JOHN", "SMITH_JANE", "ROE_RICHARD", "POE_EDGAR", "LEE_ANN", "PATIENT-7781"):
        assert name not in caplog.text, name
