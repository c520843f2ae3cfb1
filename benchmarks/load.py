"""Load tests of `cxr serve` on loopback (127.0.0.1 only; the clients share the CPU with the server, so the figures
are a floor). Without RUN, a smallnet bundle at 224 px (random weights: speed does not depend on them) with an input
guard is built and exported to ONNX in a temporary folder.

- `load serve`: N concurrent clients POST one X-ray to /v1/predict for a fixed time, per level of N; throughput,
  p50/p99 latency and the error count (anything but HTTP 200). results/serve_load.json.
- `load reading`: the reading room under load and crash: 8 concurrent clients post films and reads for 30 s, against
  SQLite and against PostgreSQL (a throw-away cluster, tests/pg.py); then the same load with the server killed
  (SIGKILL) and restarted mid-way. Each client loops: POST /v1/predict (a film), then POST /v1/studies/{id}/reads on
  the film it got back. Afterwards the database is opened directly: every accepted film and read must be there, none
  twice. A request in flight when the server is killed may have committed without its answer arriving ("committed,
  unacknowledged"): allowed; an acknowledged one missing is a failure. results/reading_load.json.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from benchmarks.common import ROOT, dataset_path, write_result

if TYPE_CHECKING:
    from cxr.readingroom import ReadingRoom

HOST = "127.0.0.1"  # loopback only
DEFAULT_IMAGE = dataset_path("codecademy") / "test" / "Covid" / "0102.jpeg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def build_demo_run(folder: Path) -> Path:
    """smallnet at 224 px, random weights (speed does not depend on them) and an input guard fitted on 48
    codecademy train films, as every trained run has one: the serving path measured is the guarded one."""
    import torch

    from cxr.data.images import find_images, load_grayscale
    from cxr.inference.bundle import BundleMeta, save_bundle
    from cxr.inference.guard_fit import fit_guard
    from cxr.inference.onnx_export import export_onnx
    from cxr.models import create_model

    torch.manual_seed(0)
    classes = ["Covid", "Normal", "Viral Pneumonia"]
    meta = BundleMeta("smallnet", classes, 224, 0.5, 0.25)
    model = create_model("smallnet", len(classes)).eval()
    train = dataset_path("codecademy") / "train"
    paths = [p for c in classes for p in find_images([train / c])[:16]]
    labels = np.array([classes.index(p.parent.name) for p in paths])
    images = np.stack([load_grayscale(p, 224) for p in paths])
    guard = fit_guard(model, meta, images[::2], labels[::2], images[1::2], paths[::2])
    save_bundle(folder, model, meta, guard)
    export_onnx(folder)
    return folder


async def predict_loop(client: httpx.AsyncClient, url: str, data: bytes, name: str, until: float, out: list) -> None:
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            r = await client.post(url, files={"file": (name, data, "image/jpeg")})
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        out.append((time.perf_counter() - t0, ok))


async def level(base: str, data: bytes, name: str, clients: int, seconds: float) -> dict:
    samples: list[tuple[float, bool]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        until = t0 + seconds
        await asyncio.gather(*(predict_loop(client, "/v1/predict", data, name, until, samples) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    latency = np.array([s for s, ok in samples if ok]) * 1000
    errors = sum(not ok for _, ok in samples)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(samples),
        "errors": errors,
        "throughput_rps": round((len(samples) - errors) / elapsed, 2),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
        "latency_ms_p99": round(float(np.percentile(latency, 99)), 1) if len(latency) else None,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode}")
        try:
            return httpx.get(f"{base}/v1/model", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("server did not start")


def serve_command(run: Path, port: int, workers: int, *options: str) -> list[str]:
    """`cxr serve RUN` on HOST:port with `workers` threads and further `options`, as a separate process."""
    return [
        sys.executable,
        "-m",
        "cxr.cli",
        "serve",
        str(run),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *options,
    ]


def serve_load(
    run: Path | None, clients: list[int], seconds: float, image: Path, workers: int, backend: str, command: str
) -> None:
    from PIL import Image

    data = image.read_bytes()
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {**os.environ, "CXR_API_KEY": ""}  # measure without auth
    with tempfile.TemporaryDirectory() as tmp:
        run = run or build_demo_run(Path(tmp))
        cmd = serve_command(run, port, workers, "--backend", backend)
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            info = wait_until_up(base, server)
            load_before = [round(x, 2) for x in os.getloadavg()]
            levels = []
            for n in clients:
                r = asyncio.run(level(base, data, image.name, n, seconds))
                print(r, flush=True)
                levels.append(r)
        finally:
            server.terminate()
            server.wait(30)
    write_result(
        "serve_load",
        {
            "command": command,
            "model": info["model"],
            "backend": info["backend"],
            "image_size": info["image_size"],
            "upload": {"file": "/".join(image.parts[-4:]), "bytes": len(data), "pixels": list(Image.open(image).size)},
            "server": f"cxr serve --workers {workers} on {HOST} (own process); clients in this process",
            "load_average_before": load_before,
            "levels": levels,
        },
    )


class Server:
    """`cxr serve RUN --db URL` in its own process; `kill()` is SIGKILL (no clean-up code runs)."""

    def __init__(self, run: Path, db: str, workers: int):
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.cmd = serve_command(run, self.port, workers, "--db", db)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        t0 = time.perf_counter()
        env = {**os.environ, "CXR_API_KEY": ""}
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self.base, self.proc)
        return time.perf_counter() - t0

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Tally:
    def __init__(self):
        self.films: list[str] = []
        self.reads: list[int] = []
        self.latency = {"predict": [], "read": []}
        self.errors = 0


async def reading_loop(
    client, data: bytes, name: str, labels: list[str], key: str, until: float, tally: Tally, seed: int
) -> None:
    i = seed
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            r = await client.post(
                "/v1/predict", files={"file": (name, data, "image/jpeg")}, headers={"X-Reader-Key": key}
            )
        except httpx.HTTPError:
            tally.errors += 1
            await asyncio.sleep(0.05)  # server down (killed): retry shortly
            continue
        if r.status_code != 200:
            tally.errors += 1
            continue
        tally.latency["predict"].append(time.perf_counter() - t0)
        study = r.json()["study_id"]
        tally.films.append(study)
        t0 = time.perf_counter()
        try:
            r = await client.post(
                f"/v1/studies/{study}/reads", json={"label": labels[i % len(labels)]}, headers={"X-Reader-Key": key}
            )
        except httpx.HTTPError:
            tally.errors += 1
            continue
        i += 1
        if r.status_code == 201:
            tally.latency["read"].append(time.perf_counter() - t0)
            tally.reads.append(r.json()["id"])
        else:
            tally.errors += 1


async def load(
    server: Server,
    data: bytes,
    name: str,
    labels: list[str],
    key: str,
    clients: int,
    seconds: float,
    kill_at: float | None,
) -> tuple[Tally, float, float | None]:
    tally = Tally()
    restart = None

    async def killer():
        nonlocal restart
        await asyncio.sleep(kill_at)
        server.kill()
        restart = await asyncio.to_thread(server.start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        until = t0 + seconds
        tasks = [reading_loop(client, data, name, labels, key, until, tally, c) for c in range(clients)]
        await asyncio.gather(*tasks, *([killer()] if kill_at is not None else []))
        elapsed = time.perf_counter() - t0
    return tally, elapsed, restart


def stored(room: ReadingRoom) -> tuple[list[str], list[int]]:
    from sqlalchemy import select

    from cxr.readingroom.schema import Film, Read

    with room.session() as s:
        return list(s.scalars(select(Film.id)).all()), list(s.scalars(select(Read.id)).all())


def check(room: ReadingRoom, tally: Tally, before: tuple[list[str], list[int]]) -> dict:
    """Every acknowledged film and read is in the database, none twice (rows from earlier phases set aside)."""
    films, reads = stored(room)
    stored_films, stored_reads = set(films) - set(before[0]), set(reads) - set(before[1])
    return {
        "films_acknowledged": len(tally.films),
        "films_missing": len(set(tally.films) - stored_films),
        "films_acknowledged_twice": len(tally.films) - len(set(tally.films)),
        "films_committed_unacknowledged": len(stored_films - set(tally.films)),
        "reads_acknowledged": len(tally.reads),
        "reads_missing": len(set(tally.reads) - stored_reads),
        "reads_committed_unacknowledged": len(stored_reads - set(tally.reads)),
        "rows_duplicated": (len(films) - len(set(films))) + (len(reads) - len(set(reads))),
    }


def ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(values) * 1000, q)), 1) if values else None


def summary(tally: Tally, elapsed: float) -> dict:
    done = len(tally.latency["predict"]) + len(tally.latency["read"])
    return {
        "seconds": round(elapsed, 1),
        "requests_ok": done,
        "errors": tally.errors,
        "requests_per_s": round(done / elapsed, 2),
        "films_per_s": round(len(tally.films) / elapsed, 2),
        "predict_ms_p50": ms(tally.latency["predict"], 50),
        "predict_ms_p99": ms(tally.latency["predict"], 99),
        "read_ms_p50": ms(tally.latency["read"], 50),
        "read_ms_p99": ms(tally.latency["read"], 99),
    }


def run_backend(backend: str, run: Path, args, data: bytes, stack: ExitStack) -> dict:
    from cxr.readingroom import ReadingRoom
    from cxr.readingroom.db import sqlite_url

    if backend == "sqlite":
        db = sqlite_url(run / "reading.db")
    else:
        from tests.pg import fresh_database, throwaway_cluster  # the tests' throw-away cluster (run from the root)

        db = fresh_database(stack.enter_context(throwaway_cluster()))
    room = ReadingRoom(db, None, salt=b"")  # migrates the database, as the server would
    key = room.add_reader(f"bench-{backend}")
    labels = ["Normal", "Covid", "indeterminate"]
    out = {"db": db.split("@")[-1] if backend != "sqlite" else "sqlite:///RUN/reading.db"}
    server = Server(run, db, args.workers)
    try:
        out["start_seconds"] = round(server.start(), 1)
        before = stored(room)
        tally, elapsed, _ = asyncio.run(
            load(server, data, args.image.name, labels, key, args.clients, args.seconds, None)
        )
        out["load"] = summary(tally, elapsed) | check(room, tally, before)
        print(backend, "load", out["load"], flush=True)
        before = stored(room)
        tally, elapsed, restart = asyncio.run(
            load(server, data, args.image.name, labels, key, args.clients, args.seconds, args.seconds / 3)
        )
        out["kill9"] = (
            summary(tally, elapsed)
            | check(room, tally, before)
            | {"killed_at_s": round(args.seconds / 3, 1), "restart_seconds": round(restart, 1)}
        )
        print(backend, "kill -9", out["kill9"], flush=True)
    finally:
        server.stop()
    if backend == "sqlite":
        with room.engine.connect() as conn:
            out["integrity_check"] = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
    room.close()
    return out


def reading_load(args, command: str) -> None:
    """`args`: run (or None), clients, seconds, workers, image, backends (the `load reading` options)."""
    data = args.image.read_bytes()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for backend in args.backends:
            run = Path(tmp) / backend  # a fresh run per backend: its own reading.db, images and salt
            run.mkdir()
            if args.run:
                for f in args.run.iterdir():
                    if f.is_file() and f.suffix in (".pt", ".onnx", ".json", ".yaml"):
                        (run / f.name).symlink_to(f.resolve())
            else:
                build_demo_run(run)
            results[backend] = run_backend(backend, run, args, data, stack)
    write_result(
        "reading_load",
        {
            "command": command,
            "model": "smallnet 224 px, ONNX (random weights)" if not args.run else str(args.run),
            "upload": {"file": "/".join(args.image.parts[-4:]), "bytes": len(data)},
            "per_client_loop": "POST /v1/predict, then POST /v1/studies/{id}/reads on that film",
            "server": f"cxr serve --workers {args.workers} on {HOST} (own process); clients in this process",
            "backends": results,
        },
    )
