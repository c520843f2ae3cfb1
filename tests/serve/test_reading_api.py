"""The reading room through the HTTP API: predictions recorded, worklist, reads with reader keys, the watcher."""

import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cxr.readingroom.db import sqlite_url
from cxr.readingroom.schema import Film
from cxr.serve import create_app
from tests.pg import postgres_server, postgres_url  # noqa: F401 (fixtures)

CLASSES = ["Covid", "Normal", "Viral Pneumonia"]


@pytest.fixture
def app_client(served_run, tmp_path):
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "reading.db"))
    with TestClient(app) as c:
        yield c


def _post(client, path, **kw):
    return client.post("/v1/predict", files={"file": (path.name, path.read_bytes())}, **kw)


def test_every_prediction_is_recorded_with_its_image(app_client, xray):
    r = _post(app_client, xray)
    assert r.status_code == 200, r.text
    pred = r.json()
    study = app_client.get(f"/v1/studies/{pred['study_id']}").json()
    assert study["predicted"] == pred["predicted"] and study["filename"] == xray.name and study["source"] == "upload"
    stored, answered = ([x["probabilities"][c] for c in CLASSES] for x in (study, pred))
    np.testing.assert_allclose(stored, answered)
    assert study["model"] == {k: pred["model"][k] for k in ("id", "version", "architecture")}
    assert app_client.get(f"/v1/studies/{pred['study_id']}/image").content == xray.read_bytes()
    assert app_client.get(f"/v1/studies/{'0' * 32}").status_code == 404
    assert app_client.get("/v1/studies/nope").status_code == 422  # not a study id at all


def test_an_unreadable_upload_is_refused_and_not_recorded(app_client):
    assert app_client.post("/v1/predict", files={"file": ("x.png", b"text")}).status_code == 415
    assert app_client.get("/v1/studies").json()["total"] == 0


def test_the_default_database_is_in_the_run_directory(served_run, xray):
    with TestClient(create_app(served_run, backend="torch", explain=False)) as c:
        study_id = _post(c, xray).json()["study_id"]
    assert (served_run / "reading.db").is_file() and (served_run / "reading-salt").is_file()
    with TestClient(create_app(served_run, backend="torch", explain=False)) as c:  # a restart keeps it
        assert c.get(f"/v1/studies/{study_id}").status_code == 200


def test_worklist_filters_reads_and_disagreements(app_client, xray, served_run):
    ids = [_post(app_client, xray).json()["study_id"] for _ in range(3)]
    key = app_client.app.state.reading.room.add_reader("ann")
    auth = {"X-Reader-Key": key}  # a reader exists: every /v1 route needs a key from now on
    assert app_client.get(f"/v1/studies/{ids[0]}").status_code == 401
    predicted = app_client.get(f"/v1/studies/{ids[0]}", headers=auth).json()["predicted"]
    other = next(c for c in CLASSES if c != predicted)
    reads = f"/v1/studies/{ids[0]}/reads"
    assert app_client.post(reads, json={"label": other}).status_code == 401
    assert app_client.post(reads, json={"label": other}, headers={"X-Reader-Key": "wrong"}).status_code == 401
    assert app_client.post(f"/v1/studies/{'0' * 32}/reads", json={"label": other}, headers=auth).status_code == 404
    bad = app_client.post(reads, json={"label": "Cat"}, headers=auth)
    assert bad.status_code == 422 and "Covid" in str(bad.json()["detail"])  # the schema lists the classes
    assert app_client.post(reads, json={"note": "no label"}, headers=auth).status_code == 422
    assert app_client.get(f"/v1/studies/{ids[0]}", headers=auth).json()["history"] == []  # nothing half-written
    r = app_client.post(reads, json={"label": other, "note": "look again"}, headers=auth)
    assert r.status_code == 201 and r.json()["reader"] == "ann" and r.json()["version"] == 1
    assert app_client.get("/v1/reader", headers=auth).json() == {"name": "ann", "role": "reader"}
    assert app_client.get("/v1/reader").status_code == 401

    disagreements = app_client.get("/v1/disagreements", headers=auth).json()
    assert [x["id"] for x in disagreements["items"]] == [ids[0]]
    assert disagreements["items"][0]["disagreeing_readers"] == ["ann"]
    unread = app_client.get("/v1/studies", params={"unread": True}, headers=auth).json()
    assert unread["total"] == 2 and {x["id"] for x in unread["items"]} == set(ids[1:])
    page = app_client.get("/v1/studies", params={"limit": 2, "offset": 2, "order": "newest"}, headers=auth).json()
    assert page["total"] == 3 and [x["id"] for x in page["items"]] == [ids[0]]
    for bad_params in ({"order": "random"}, {"limit": 0}, {"offset": 274386764877100630920921088}):
        assert app_client.get("/v1/studies", params=bad_params, headers=auth).status_code == 422
    late = {"received_from": "2999-01-01T00:00:00Z"}
    assert app_client.get("/v1/studies", params=late, headers=auth).json()["total"] == 0
    edge = {"received_from": "0001-01-01T00:00:00+01:00", "received_to": "9999-12-31T23:59:59-01:00"}
    assert app_client.get("/v1/studies", params=edge, headers=auth).json()["total"] == 3  # beyond datetime: clamped

    app_client.post(reads, json={"label": predicted}, headers=auth)  # changed read: the earlier one stays
    history = app_client.get(f"/v1/studies/{ids[0]}", headers=auth).json()["history"]
    assert [(h["label"], h["version"]) for h in history] == [(other, 1), (predicted, 2)]
    assert app_client.get("/v1/disagreements", headers=auth).json()["total"] == 0
    worklist = app_client.get("/worklist")
    assert worklist.status_code == 200 and 'src="/static/worklist.js"' in worklist.text


def test_the_api_key_guards_the_reading_routes(served_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_API_KEY", "s3cret")
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"))
    with TestClient(app) as c:
        assert c.get("/v1/studies").status_code == 401 and c.get("/v1/disagreements").status_code == 401
        assert c.get("/v1/studies", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_no_store_images_keeps_only_the_hash(served_run, tmp_path, xray):
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"), store_images=False)
    with TestClient(app) as c:
        study_id = _post(c, xray).json()["study_id"]
        assert c.get(f"/v1/studies/{study_id}").json()["image_stored"] is False
        assert c.get(f"/v1/studies/{study_id}/image").status_code == 404
    assert not (tmp_path / "images").exists()


def test_watched_folder_films_are_recorded_once(served_run, tmp_path, xray):
    drop = tmp_path / "drop"
    drop.mkdir()
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"), watch=drop)
    app.state.reading.watcher.poll_seconds = 0.1
    with TestClient(app) as c:
        shutil.copy(xray, drop / "first.jpeg")
        (drop / "notes.png").write_text("not an X-ray")
        deadline = time.monotonic() + 20
        while c.get("/v1/studies").json()["total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # several more polls: nothing is ingested twice, the text file never
        items = c.get("/v1/studies").json()["items"]
        assert [(x["filename"], x["source"]) for x in items] == [("first.jpeg", "watch")]
    with TestClient(
        create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"), watch=drop)
    ) as c:
        assert c.app.state.reading.watcher.poll() == []  # after a restart: the same film is not recorded again
        assert c.get("/v1/studies").json()["total"] == 1


def test_two_services_on_one_postgresql_database_see_each_others_films(served_run, postgres_url, xray, tmp_path):
    make = lambda: create_app(served_run, backend="torch", explain=False, db=postgres_url)  # noqa: E731
    with TestClient(make()) as a, TestClient(make()) as b:
        from_a = _post(a, xray).json()["study_id"]
        from_b = _post(b, xray).json()["study_id"]
        key = a.app.state.reading.room.add_reader("ann")
        assert (
            b.post(
                f"/v1/studies/{from_a}/reads", json={"label": "indeterminate"}, headers={"X-Reader-Key": key}
            ).status_code
            == 201
        )
        auth = {"X-API-Key": key}  # a reader's own key works in either header
        for client in (a, b):
            assert {x["id"] for x in client.get("/v1/studies", headers=auth).json()["items"]} == {from_a, from_b}
        assert a.get(f"/v1/studies/{from_a}", headers=auth).json()["reads"][0]["label"] == "indeterminate"
        assert b.get(f"/v1/studies/{from_b}/image", headers=auth).content == xray.read_bytes()  # one image store


def test_a_prediction_that_cannot_be_recorded_is_503_and_leaves_nothing(served_run, tmp_path, xray):
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"))
    (tmp_path / "not-a-folder").write_text("")
    app.state.reading.room.store.root = tmp_path / "not-a-folder"  # the image store cannot be written
    with TestClient(app) as c:
        r = _post(c, xray)
        assert r.status_code == 503 and "retry" in r.json()["detail"]
        assert c.get("/v1/studies").json()["total"] == 0


def test_the_watcher_takes_dicom_without_a_suffix_once_its_size_holds(served_run, tmp_path, xray):
    from tests.readingroom.test_storage import _dicom_bytes

    drop = tmp_path / "drop"
    drop.mkdir()
    app = create_app(served_run, backend="torch", explain=False, db=sqlite_url(tmp_path / "r.db"), watch=drop)
    watcher = app.state.reading.watcher  # polled by hand here: the thread starts with the app
    data, _ = _dicom_bytes(tmp_path, "PATIENT-1")
    (drop / "IM0001").write_bytes(data)
    (drop / ".IM0002.partial").write_bytes(data)  # a copy in progress: hidden, never taken
    (drop / "README").write_text("not DICOM, no suffix")
    assert watcher.poll() == []  # first sight: wait one poll for the size to hold
    (recorded,) = watcher.poll()
    assert watcher.poll() == []
    study = app.state.reading.room.study(recorded)
    assert study["filename"] == "IM0001" and study["source"] == "watch" and study["dicom"]["study_uid"] == "1.2.3"
    assert app.state.reading.room.studies()["total"] == 1
    app.state.reading.stop()


def test_a_film_the_guard_flags_is_in_the_check_the_input_group_not_the_triage_list(app_client, xray):
    import io

    from PIL import Image
    from skimage import data

    photo = io.BytesIO()
    Image.fromarray(data.astronaut()).save(photo, format="PNG")  # a colour photograph: unlike any chest film
    odd = app_client.post("/v1/predict", files={"file": ("photo.png", photo.getvalue())}).json()
    film = _post(app_client, xray).json()
    assert odd["in_distribution"] is False
    study = app_client.get(f"/v1/studies/{odd['study_id']}").json()
    assert study["check_input"] is True and study["guard"]["verdict"] == "flag"
    assert study["guard"]["reason"] and f"({study['guard']['reason']})" in odd["warning"]
    assert study["guard"]["score"] == pytest.approx(odd["ood_score"])
    triage = app_client.get("/v1/studies", params={"check_input": "false"}).json()
    group = app_client.get("/v1/studies", params={"check_input": "true"}).json()
    assert [x["id"] for x in group["items"]] == [odd["study_id"]]
    assert odd["study_id"] not in [x["id"] for x in triage["items"]] and film["study_id"] in [
        x["id"] for x in triage["items"]
    ]
    everything = app_client.get("/v1/studies").json()["items"]
    assert everything[-1]["id"] == odd["study_id"]  # unfiltered triage order: the flagged film comes last
    with app_client.app.state.reading.room.session() as session:  # what the guard read, kept for `cxr monitor`
        stats = session.get(Film, odd["study_id"]).input_stats
    assert (stats["width"], stats["height"]) == (512, 512) and stats["colourfulness"] > 20


def test_health_reports_the_weeks_and_logs_an_alert_when_a_drift_test_fires(app_client, xray, caplog, monkeypatch):
    from datetime import datetime

    from cxr.readingroom.monitor import FilmRow, monitor_rows
    from cxr.serve import health_routes

    _post(app_client, xray)
    body = app_client.get("/v1/health").json()
    assert body["status"] == "ok" and body["details"]["alerts"] == []
    (week,) = body["details"]["windows"]
    assert week["films"] == 1 and week["baseline"] is True and body["details"]["family_false_alarm_rate"] == 0.01

    # a stream that drifted: a week of 40 films all flagged by the guard, where validation lets 1 % through
    rows = [
        FilmRow(datetime(2027, 1, 4 + 7 * w, 9, i), [0.1, 0.8, 0.1], 1, 2.0, "flag" if w else "pass", {})
        for w in (0, 1)
        for i in range(40)
    ]
    drifted = monitor_rows(CLASSES, rows, {"guard": {"pass_rate": 0.99}}, "week", 1, 0.01)
    monkeypatch.setattr(health_routes, "monitor", lambda *args, **kwargs: drifted)
    monkeypatch.setattr(health_routes, "CACHE_SECONDS", 0.0)
    with caplog.at_level("WARNING", logger="cxr.serve.health_routes"):
        body = app_client.get("/v1/health").json()
        app_client.get("/v1/health")  # logged once, not at every request
    assert body["status"] == "alert"
    (alert,) = body["details"]["alerts"]
    assert alert.startswith("model drift: guard_flag_rate in the week of 2027-01-11")
    assert [r.getMessage() for r in caplog.records if r.name == "cxr.serve.health_routes"] == [alert]
