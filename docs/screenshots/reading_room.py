"""Screenshots of the reading room for docs/reading-room.md: the worklist and a film view with a disagreeing read.

Usage: python docs/screenshots/reading_room.py
-> docs/images/reading-room-worklist.png, docs/images/reading-room-film.png

A smallnet fitted in seconds on 8 codecademy images per class (tests/inference/spread_bundles.py), served on
loopback with a fresh SQLite database; six test films are uploaded through the worklist page itself, one reader
records two reads. Needs /usr/bin/chromium and Playwright, as the browser tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from cxr.readingroom.db import sqlite_url  # noqa: E402
from cxr.serve import create_app  # noqa: E402
from tests.conftest import CODECADEMY  # noqa: E402
from tests.inference.spread_bundles import make_bundle  # noqa: E402
from tests.serve.test_browser import CHROMIUM, CHROMIUM_ARGS, serving  # noqa: E402

OUT = ROOT / "docs" / "images"
FILMS = [
    "Covid/0102.jpeg",
    "Covid/0106.jpeg",
    "Normal/0101.jpeg",
    "Normal/0102.jpeg",
    "Viral Pneumonia/0101.jpeg",
    "Viral Pneumonia/0103.jpeg",
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    films = [CODECADEMY / "test" / f for f in FILMS]
    missing = [str(f) for f in films if not f.is_file()]
    if missing:
        raise SystemExit(f"missing test films: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        run = make_bundle(Path(tmp) / "demo", image_size=64)
        app = create_app(run, db=sqlite_url(Path(tmp) / "reading.db"))
        room = app.state.reading.room
        key = room.add_reader("Dr Lee")
        with serving(app) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(f"{url}/worklist")
            page.evaluate("key => sessionStorage.setItem('cxr-reader-key', key)", key)  # a reader exists: keys on
            page.reload()
            page.wait_for_function("document.getElementById('model-line').textContent.includes('version')")
            page.set_input_files("#files", [str(f) for f in films])
            page.wait_for_selector(f"body[data-state=ready][data-listed='{len(films)}']")
            items = room.studies()["items"]
            agree, overrule = items[0], items[-1]  # the reader confirms the top film and overrules the last
            room.add_read(agree["id"], key, agree["predicted"])
            other = next(c for c in overrule["probabilities"] if c != overrule["predicted"])
            room.add_read(overrule["id"], key, other, "no consolidation; the model overcalls")
            page.reload()
            page.wait_for_selector(f"body[data-listed='{len(films)}']")
            page.screenshot(path=str(OUT / "reading-room-worklist.png"), full_page=True)
            page.goto(f"{url}/?study={overrule['id']}")
            page.wait_for_selector("body[data-state=ready]")
            page.evaluate("key => sessionStorage.setItem('cxr-reader-key', key)", key)
            page.reload()
            page.wait_for_selector("#read-form:not([hidden])")
            page.check("#overlay-toggle")
            page.wait_for_function("(o => o.naturalWidth > 0 && !o.hidden)(document.getElementById('overlay'))")
            page.screenshot(path=str(OUT / "reading-room-film.png"), full_page=True)
            browser.close()
    print(f"wrote {OUT / 'reading-room-worklist.png'} and {OUT / 'reading-room-film.png'}")


if __name__ == "__main__":
    main()
