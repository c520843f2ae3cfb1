"""Make the images the docs show, from a real run: a Grad-CAM overlay and a screenshot of the served page.

    python docs/make_images.py                    # trains the default recipe on covid19-codecademy (the demo's run)
    python docs/make_images.py --run runs/demo    # or uses a finished run

Everything goes through the `cxr` commands a user runs (train, explain, serve), so the pictures show what they give.
The screenshot needs Debian's Chromium (/usr/bin/chromium) and Playwright; without them only the overlay is made.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MAX_WIDTH = 900  # px: sharp on a docs page, small in git


def cxr(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxr.cli", *args], check=True, **kwargs)


def save_small(src: Path, dst: Path) -> Path:
    """At most MAX_WIDTH wide, full colour (a 256-colour palette posterises the film and would misrepresent it)."""
    image = Image.open(src).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.save(dst, optimize=True)
    print(f"wrote {dst} ({dst.stat().st_size // 1024} KB)")
    return dst


def explained_film(run: Path, films: Path, work: Path) -> tuple[Path, Path]:
    """`cxr explain` on a class folder; the first film (by name) the model gets right, and its overlay."""
    cxr("explain", str(run), str(films), "--out", str(work))
    with open(work / "explanations.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: row["path"])
    right = [row for row in rows if row["label"] == row["predicted"]]
    if not right:
        sys.exit(f"the run gets no film of {films} right; pass a better --run")
    film = Path(right[0]["path"])
    overlays = sorted(work.glob(f"*{film.stem}_gradcam.png"))
    return film, overlays[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot_page(run: Path, film: Path, dst: Path) -> None:
    """`cxr serve` on loopback, the film uploaded in headless Chromium, the Grad-CAM overlay on, one screenshot."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cxr.cli", "serve", str(run), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("cxr serve did not start")
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_function("document.getElementById('model-line').textContent.includes('version')")
            page.set_input_files("#file", str(film))
            page.wait_for_selector("body[data-state=ready]")
            page.check("#overlay-toggle")
            page.wait_for_function("(o => o.naturalWidth > 0 && !o.hidden)(document.getElementById('overlay'))")
            with tempfile.TemporaryDirectory() as tmp:
                shot = Path(tmp) / "page.png"
                page.screenshot(path=str(shot), full_page=True)
                save_small(shot, dst)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished run (default: train the default recipe into --work)")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared/data/covid19-codecademy",
        help="dataset whose test/<class>/ films are shown",
    )
    parser.add_argument("--class", dest="class_name", default="Covid", help="class folder of test/ to show a film of")
    parser.add_argument("--work", type=Path, default=ROOT / "runs/docs-images", help="where the run is trained")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images", help="where the PNGs go")
    args = parser.parse_args()

    run = args.run
    if run is None:
        run = args.work
        cxr("train", "--data", str(args.data), "--out", str(run), "--overwrite")
    with tempfile.TemporaryDirectory() as tmp:
        film, overlay = explained_film(run, args.data / "test" / args.class_name, Path(tmp))
        save_small(overlay, args.out / "gradcam-overlay.png")
    print(f"film shown: {film}")
    if CHROMIUM.is_file():
        screenshot_page(run, film, args.out / "serve-page.png")
    else:
        print(f"no {CHROMIUM}: serve-page.png not made (apt-get install chromium)", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
