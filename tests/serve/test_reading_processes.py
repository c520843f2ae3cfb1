"""Two `cxr serve` processes on one PostgreSQL database see each other's films and reads (real processes, real
server; the in-process variant in test_reading_api.py runs in the default suite)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.pg import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.serve.test_browser import _free_loopback_port

ROOT = Path(__file__).resolve().parents[2]


def _start(run: Path, db: str) -> tuple[subprocess.Popen, str]:
    port = _free_loopback_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "CXR_API_KEY": "",
    }
    cmd = [sys.executable, "-m", "cxr.cli", "serve", str(run), "--port", str(port), "--db", db]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), f"http://127.0.0.1:{port}"


def _wait(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"cxr serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail("cxr serve did not start")


@pytest.mark.slow
def test_two_service_processes_on_one_postgresql_see_each_others_films(served_run, postgres_url, xray):
    servers = [_start(served_run, postgres_url) for _ in range(2)]
    try:
        for proc, url in servers:
            _wait(proc, url)
        (_, a), (_, b) = servers
        films = [
            httpx.post(f"{u}/v1/predict", files={"file": (xray.name, xray.read_bytes())}, timeout=60).json()
            for u in (a, b)
        ]
        ids = {f["study_id"] for f in films}
        for url in (a, b):
            assert {x["id"] for x in httpx.get(f"{url}/v1/studies", timeout=30).json()["items"]} == ids
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
