"""Load test of `cxr serve` on loopback: N concurrent clients POST one X-ray to /v1/predict for a fixed time.

Usage: python benchmarks/serve_load.py [RUN] [--clients 1 8 32] [--seconds 30] [--image PATH] [--workers 1]
       -> benchmarks/results/serve_load.json

Without RUN, a smallnet bundle at 224 px (random weights: speed does not depend on them) is built and exported to
ONNX in a temporary folder. The server runs as `cxr serve` in its own process on 127.0.0.1 (never any other
address); the clients share the same CPU, so the figures are a floor. Each client loop is bounded by time and
stops by itself. Reports throughput, p50/p99 latency and the error count (anything but HTTP 200) per level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import ROOT, SHARED_DATA, write_result
from PIL import Image

HOST = "127.0.0.1"  # loopback only
DEFAULT_IMAGE = SHARED_DATA / "covid19-codecademy" / "test" / "Covid" / "0102.jpeg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def build_demo_run(folder: Path) -> Path:
    import torch

    from cxr.inference.bundle import BundleMeta, save_bundle
    from cxr.inference.onnx_export import export_onnx
    from cxr.models import create_model

    torch.manual_seed(0)
    classes = ["Covid", "Normal", "Viral Pneumonia"]
    save_bundle(folder, create_model("smallnet", len(classes)), BundleMeta("smallnet", classes, 224, 0.5, 0.25))
    export_onnx(folder)
    return folder


async def client_loop(client: httpx.AsyncClient, url: str, data: bytes, name: str, until: float, out: list) -> None:
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
        await asyncio.gather(*(client_loop(client, "/v1/predict", data, name, until, samples) for _ in range(clients)))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="run directory to serve (default: a demo smallnet)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--workers", type=int, default=1, help="cxr serve --workers")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()

    data = args.image.read_bytes()
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {**os.environ, "CXR_API_KEY": ""}  # measure without auth
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or build_demo_run(Path(tmp))
        cmd = [sys.executable, "-m", "cxr.cli", "serve", str(run), "--host", HOST, "--port", str(port),
               "--workers", str(args.workers), "--backend", args.backend]  # fmt: skip
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            info = wait_until_up(base, server)
            load_before = [round(x, 2) for x in os.getloadavg()]
            levels = []
            for n in args.clients:
                r = asyncio.run(level(base, data, args.image.name, n, args.seconds))
                print(r, flush=True)
                levels.append(r)
        finally:
            server.terminate()
            server.wait(30)
    write_result(
        "serve_load",
        {
            "command": "python benchmarks/serve_load.py " + " ".join(
                ([str(args.run)] if args.run else []) + ["--clients", *map(str, args.clients), "--seconds",
                 str(args.seconds), "--workers", str(args.workers)]),  # fmt: skip
            "model": info["model"],
            "backend": info["backend"],
            "image_size": info["image_size"],
            "upload": {
                "file": "/".join(args.image.parts[-4:]),
                "bytes": len(data),
                "pixels": list(Image.open(args.image).size),
            },
            "server": f"cxr serve --workers {args.workers} on {HOST} (own process); clients in this process",
            "load_average_before": load_before,
            "levels": levels,
        },
    )


if __name__ == "__main__":
    main()
