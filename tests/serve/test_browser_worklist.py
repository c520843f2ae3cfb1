"""The worklist in a real browser (Chromium via Playwright, as test_browser.py): drop two films, see them in triage
order, record a read that disagrees with the model on the film view, find the film under disagreements; the access
log holds the reader's film views and read. On SQLite and on PostgreSQL."""

import pytest

from cxr.readingroom.db import sqlite_url
from cxr.readingroom.queries import StudyFilter
from cxr.serve import create_app
from tests.conftest import SHARED_DATA
from tests.pg import fresh_database, postgres_server  # noqa: F401 (fixture)
from tests.serve.test_browser import page, serving  # noqa: F401 (page is a fixture)
from tests.serve.test_browser import pytestmark as browser_marks

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")
pytestmark = [browser_marks, needs_data]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request, served_run, tmp_path_factory):
    if request.param == "sqlite":
        db = sqlite_url(tmp_path_factory.mktemp("worklist") / "reading.db")
    else:
        db = fresh_database(request.getfixturevalue("postgres_server"))
    return create_app(served_run, db=db)


@pytest.fixture(scope="module")
def server_url(app):
    with serving(app) as url:
        yield url


def test_drop_two_films_read_one_and_find_it_under_disagreements(page, server_url, app, tmp_path):  # noqa: F811
    films = [
        SHARED_DATA / "chest-xray-pneumonia" / "test" / "NORMAL" / "IM-0001-0001.jpeg",
        SHARED_DATA / "covid19-codecademy" / "test" / "Covid" / "0100.jpeg",  # both pass the demo's input guard
    ]
    key = app.state.reading.room.add_reader("Dr Browser")

    page.goto(f"{server_url}/worklist")
    page.wait_for_selector("#auth:not([hidden])")  # a reader exists: every /v1 route needs a key now
    page.fill("#api-key", key)  # the reader's own key opens the worklist too
    page.click("#api-key-save")
    page.wait_for_function("document.getElementById('model-line').textContent.includes('version')")
    page.set_input_files("#files", [str(f) for f in films])
    page.wait_for_selector("body[data-state=ready][data-listed='2']")
    rows = page.locator("#studies tr")
    scores = [float(rows.nth(i).get_attribute("data-score")) for i in range(2)]
    api = app.state.reading.room.studies()["items"]
    assert scores == sorted(scores, reverse=True) == [x["positive_score"] for x in api]  # triage order
    assert [rows.nth(i).get_attribute("data-id") for i in range(2)] == [x["id"] for x in api]
    assert rows.nth(0).locator("td.score").inner_text().endswith(f"{100 * api[0]['positive_score']:.1f}%")
    page.screenshot(path=str(tmp_path / "worklist.png"), full_page=True)

    target = api[1]  # the less suspicious film: the reader overrules the model
    disagreeing = next(c for c in target["probabilities"] if c != target["predicted"])
    rows.nth(1).locator("a").click()
    page.wait_for_selector("body[data-state=ready]")
    assert page.inner_text("#predicted") == target["predicted"]
    assert page.evaluate("document.getElementById('preview').naturalWidth") > 0  # the stored film is shown
    page.wait_for_selector("#read-form:not([hidden])")  # the key given on the worklist is a reader's: no second ask
    assert page.inner_text("#reader-name") == "reading as Dr Browser"
    page.select_option("#read-label", disagreeing)
    page.fill("#read-note", "opacity in the left lower lobe")
    page.click("#read-submit")
    page.wait_for_selector(f'#read-history li[data-label="{disagreeing}"]')
    assert not page.is_hidden("#disagreement-note")
    reads = app.state.reading.room.study(target["id"])["reads"]
    assert [(r["reader"], r["label"], r["note"]) for r in reads] == [
        ("Dr Browser", disagreeing, "opacity in the left lower lobe")
    ]
    log = app.state.reading.room.access_log()["items"]
    seen = {(e["action"], e["film_id"]) for e in log if e["actor"] == "Dr Browser" and e["client"] == "127.0.0.1"}
    assert {("view_study", target["id"]), ("view_image", target["id"]), ("read", target["id"])} <= seen
    assert {("upload", x["id"]) for x in api} <= seen  # the films dropped on the page, sent with the reader's key

    page.goto(f"{server_url}/worklist")
    page.wait_for_selector("body[data-listed='2']")
    page.check("#disagreement")
    page.wait_for_selector("body[data-listed='1']")
    row = page.locator("#studies tr")
    assert row.get_attribute("data-id") == target["id"] and row.get_attribute("data-disagreement") == "true"
    assert f"Dr Browser: {disagreeing}" in row.locator("td.reads").inner_text()


def test_a_film_the_guard_flags_sits_in_the_check_the_input_group_not_in_triage_order(page, server_url, app, tmp_path):  # noqa: F811
    """Issue 35: a film unlike the training films (here a colour photograph) is never ranked as a likely positive."""
    from PIL import Image
    from skimage import data

    photo = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).save(photo)
    xray = SHARED_DATA / "covid19-codecademy" / "test" / "Covid" / "0108.jpeg"  # passes the demo's guard
    key = app.state.reading.room.add_reader("Dr Guard")
    room = app.state.reading.room
    before = room.studies(limit=200)["total"]

    page.goto(f"{server_url}/worklist")
    page.evaluate("sessionStorage.clear()")  # the module's page may hold another reader's key
    page.reload()
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#api-key", key)
    page.click("#api-key-save")
    page.wait_for_function("document.getElementById('model-line').textContent.includes('version')")
    page.set_input_files("#files", [str(photo), str(xray)])
    page.wait_for_selector("body[data-state=ready][data-check-input='1']")
    flagged = room.studies(StudyFilter(check_input=True))["items"]
    assert [x["filename"] for x in flagged] == ["photo.png"]
    assert room.studies(StudyFilter(check_input=False))["total"] == before + 1

    group = page.locator("#check-studies tr")
    assert not page.is_hidden("#check-input") and group.count() == 1
    assert group.get_attribute("data-id") == flagged[0]["id"] and group.get_attribute("data-guard") == "flag"
    assert "check the input" in group.locator("td.guard").inner_text()
    assert group.locator("td.score").count() == 0  # no triage score, no "positive" badge
    triage = page.locator("#studies tr")
    triage_ids = [triage.nth(i).get_attribute("data-id") for i in range(triage.count())]
    assert flagged[0]["id"] not in triage_ids and len(triage_ids) == before + 1
    page.wait_for_selector("body[data-health=ok]")  # the "model health" section: this week, too few films to test
    assert page.locator("#health-rows tr").count() >= 1 and not page.is_hidden("#health")
    page.screenshot(path=str(tmp_path / "check-input.png"), full_page=True)
