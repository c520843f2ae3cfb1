"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `cxr serve` on loopback."""

import re
from pathlib import Path

import httpx
import pytest

from cxr.serve import create_app
from tests.serve.live import free_loopback_port as _free_loopback_port  # noqa: F401 (test_reading_processes uses it)
from tests.serve.live import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no browser at {CHROMIUM} (.ci/run installs it: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server_url(served_run):
    """`cxr serve` for the module."""
    with serving(create_app(served_run)) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_upload_shows_the_apis_prediction_and_a_grad_cam_overlay(page, server_url, xray, tmp_path):
    api = httpx.post(f"{server_url}/v1/predict", files={"file": (xray.name, xray.read_bytes())}, timeout=30).json()

    page.goto(server_url)
    page.wait_for_function("document.getElementById('model-line').textContent.includes('version')")
    page.set_input_files("#file", str(xray))
    page.wait_for_selector("body[data-state=ready]")
    page.screenshot(path=str(tmp_path / "prediction.png"), full_page=True)

    assert page.inner_text("#predicted") == api["predicted"]
    bars = page.locator("#bars .bar")
    assert bars.count() == len(api["probabilities"])
    for name, p in api["probabilities"].items():
        row = page.locator(f'#bars .bar[data-class="{name}"]')
        assert row.locator(".value").inner_text() == f"{100 * p:.1f}%"
    assert page.locator("#bars .bar.top").get_attribute("data-class") == api["predicted"]
    assert page.evaluate("document.getElementById('preview').naturalWidth") > 0  # the X-ray itself is shown

    page.check("#overlay-toggle")
    page.wait_for_function("(o => o.naturalWidth > 0 && !o.hidden)(document.getElementById('overlay'))")
    assert page.is_hidden("#preview")
    page.screenshot(path=str(tmp_path / "overlay.png"), full_page=True)
    assert (tmp_path / "prediction.png").stat().st_size > 10_000 and (tmp_path / "overlay.png").stat().st_size > 10_000


def test_a_film_unlike_the_training_films_shows_the_warning_above_the_bars(page, server_url, xray, tmp_path):
    from PIL import Image

    black = tmp_path / "black.png"
    Image.new("L", (512, 512)).save(black)
    page.goto(server_url)
    page.set_input_files("#file", str(black))
    page.wait_for_selector("body[data-state=ready]")
    warning = page.locator("#ood-warning")
    assert warning.is_visible() and "unlike the films the model was trained on" in warning.inner_text()
    above = page.evaluate(
        "document.getElementById('ood-warning').getBoundingClientRect().bottom <= "
        "document.getElementById('bars').getBoundingClientRect().top"
    )
    assert above
    page.screenshot(path=str(tmp_path / "warning.png"), full_page=True)
    page.set_input_files("#file", str(xray))  # a real film afterwards: the warning goes unless the guard flags it too
    page.wait_for_function("document.getElementById('filename').textContent.includes('IM-0001')")
    page.wait_for_selector("body[data-state=ready]")
    api = httpx.post(f"{server_url}/v1/predict", files={"file": (xray.name, xray.read_bytes())}, timeout=30).json()
    assert warning.is_visible() == (api["warning"] is not None)


def test_a_file_that_is_not_an_image_shows_the_servers_message(page, server_url, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an X-ray")
    page.goto(server_url)
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("body[data-state=error]")
    status = page.inner_text("#status")
    assert "notes.png" in status and "not a readable image" in status
    assert page.is_hidden("#result")
    page.screenshot(path=str(tmp_path / "error.png"))


def test_the_api_docs_render_without_internet(page, server_url):
    page.goto(f"{server_url}/docs")
    page.locator(".swagger-ui .opblock-summary-path", has_text=re.compile(r"/v1/predict")).first.wait_for()
    assert "cxr" in page.inner_text(".swagger-ui .info .title")


def test_a_service_without_keys_on_the_network_says_so_on_both_pages(page, served_run, tmp_path):
    from cxr.readingroom.db import sqlite_url

    # as `cxr serve RUN --host 0.0.0.0 --insecure-no-auth` builds it (served on loopback here)
    app = create_app(served_run, db=sqlite_url(tmp_path / "r.db"), exposed=True, insecure_no_auth=True)
    with serving(app) as url:
        for path in ("/", "/worklist"):
            page.goto(f"{url}{path}")
            banner = page.locator("#insecure-warning")
            banner.wait_for()
            assert "--insecure-no-auth" in banner.inner_text() and "every stored film" in banner.inner_text()
        app.state.reading.room.add_reader("ann")  # a key exists: no longer open, no longer warned
        page.goto(url)
        page.wait_for_selector("#auth:not([hidden])")
        assert page.locator("#insecure-warning").count() == 0
