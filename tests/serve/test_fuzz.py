"""An outside fuzzer against the API: schemathesis (PyPI), run as its own process on `cxr serve`'s OpenAPI schema,
every operation, every check (`--checks all`: no 5xx, every status and body as the schema documents, schema-invalid
requests refused and valid ones accepted, auth not ignored), plus fuzz_hooks.py's own: no /v1 answer without a key.

Three runs: keys on, fuzzed with an admin's key (every operation reachable); keys on, fuzzed without any key (every
/v1 answer must be 401); and the loopback demo with no key at all. `make test` runs a few examples per operation;
the slow test many more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cxr.readingroom.db import sqlite_url
from cxr.serve import create_app
from tests.serve.live import serving

pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")
ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SHARED_KEY = "fuzz-shared-key"


def fuzz(
    url: str, examples: int, valid_keys: list[str], headers: dict[str, str] | None = None, seed: int = 1
) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
    ]
    for name, value in (headers or {}).items():
        cmd += ["--header", f"{name}: {value}"]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.serve.fuzz_hooks",
        "CXR_FUZZ_KEYS": ",".join(valid_keys),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _passed(done: subprocess.CompletedProcess) -> None:
    tail = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert "No issues found" in done.stdout or " passed" in done.stdout, tail


def seed(url: str, xray: Path, headers: dict[str, str] | None = None) -> None:
    """Two films, so the fuzzer's links from GET /v1/studies reach real studies, not only 404s."""
    for _ in range(2):
        r = httpx.post(f"{url}/v1/predict", files={"file": (xray.name, xray.read_bytes())}, headers=headers, timeout=60)
        assert r.status_code == 200, r.text


def run_all(served_run, xray, tmp_path, examples: int, seed_value: int = 1) -> None:
    keyed = create_app(
        served_run, backend="torch", db=sqlite_url(tmp_path / "keyed.db"), api_key=SHARED_KEY, failed_keys=(10**6, 60.0)
    )  # the fuzzer sends wrong keys on purpose: no lock-out here
    room = keyed.state.reading.room
    admin = room.add_reader("fuzz admin", "admin")
    reader = room.add_reader("fuzz reader")
    valid = [SHARED_KEY, admin, reader]
    with serving(keyed) as url:
        seed(url, xray, {"X-API-Key": reader})
        _passed(fuzz(url, examples, valid, {"X-API-Key": admin}, seed_value))
        _passed(fuzz(url, examples, valid, seed=seed_value))  # no key: fuzz_hooks fails any /v1 answer but 401
    # it may revoke "fuzz reader" (GET /v1/readers links to DELETE /v1/readers/{name}), never its own key
    assert "fuzz admin" in {r["name"] for r in room.readers() if r["revoked_at"] is None}
    open_app = create_app(
        served_run, backend="torch", db=sqlite_url(tmp_path / "open.db"), api_key="", failed_keys=(10**6, 60.0)
    )
    with serving(open_app) as url:  # the loopback demo: no key anywhere, the schema declares none for "any" routes
        seed(url, xray)
        _passed(fuzz(url, examples, [], seed=seed_value))


def test_the_api_holds_its_schema_and_its_keys_under_a_fuzzer(served_run, xray, tmp_path):
    run_all(served_run, xray, tmp_path, examples=6)


@pytest.mark.slow
def test_the_api_holds_under_a_longer_fuzz(served_run, xray, tmp_path):
    run_all(served_run, xray, tmp_path, examples=60)
