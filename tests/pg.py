"""A throw-away PostgreSQL cluster for tests and the load benchmark: Debian's binaries, `initdb` + `pg_ctl` in a
temp folder on a free loopback port, run as the `postgres` user when we are root (initdb refuses root), stopped and
deleted afterwards. Without the binaries, tests that need it are skipped with the reason, never mocked.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "PostgreSQL is not installed (.ci/run installs it: apt-get install postgresql)"


def pg_bin() -> Path | None:
    found = sorted(glob.glob(PG_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    return Path(found[-1]) if found and (Path(found[-1]) / "initdb").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Yield the server URL (postgresql+psycopg://postgres@127.0.0.1:PORT/postgres), trust auth on loopback only."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError(INSTALL_HINT)
    root = Path(tempfile.mkdtemp(prefix="cxr-pg-"))
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")

    def run(*cmd):
        return subprocess.run(
            _as_owner([str(bindir / cmd[0]), *cmd[1:]]), check=True, capture_output=True, text=True, timeout=120
        )

    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the cluster; returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres_server():
    if pg_bin() is None:
        pytest.skip(INSTALL_HINT)
    with throwaway_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    return fresh_database(postgres_server)
