"""The DICOM gateway's throughput and latency on this machine: films sent by C-STORE (one association per film, as a
modality sends) to `cxr serve RUN --dicom-port`, scored, and their SR stored in a real Orthanc (tests/gateway/
orthanc.py). Per level of concurrent senders: films per second from the first send to the last SR, and the latency
from a film's C-STORE acknowledgement to its SR being queryable in Orthanc (QIDO-RS polled every POLL seconds: the
latency is late by at most that). results/gateway.json.

Without RUN, the demo smallnet at 224 px in ONNX (benchmarks/load.py). Server, Orthanc and senders share the CPU.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

from benchmarks.common import write_result
from benchmarks.load import DEFAULT_IMAGE, HOST, build_demo_run, free_port, serve_command, wait_until_up
from tests.gateway.films import dx_film
from tests.gateway.orthanc import running_orthanc

SENDER = "BENCH"
POLL = 0.1
PACED = 2.0  # films per second of the paced level


def film_like(image: Path, index: int):
    """A DX film whose pixels are the benchmark image (8 bits), with its own study, series and instance."""
    gray = np.asarray(Image.open(image).convert("L"))
    return dx_film(pixels=gray, accession=f"B{index:06d}", seed=index)


def send_films(films, port: int, acked: dict[str, float], failures: list[str], rate: float = 0.0) -> None:
    """C-STORE each film on its own association; `rate` > 0: at most that many films per second (paced)."""
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    start = time.perf_counter()
    for i, film in enumerate(films):
        if rate > 0:
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        assoc = ae.associate(HOST, port, ae_title="CXR")
        if not assoc.is_established:
            failures.append("association")
            continue
        status = assoc.send_c_store(film)
        assoc.release()
        if int(getattr(status, "Status", -1)) == 0:
            acked[str(film.StudyInstanceUID)] = time.perf_counter()
        else:
            failures.append(f"status {getattr(status, 'Status', None)}")


def watch_srs(orthanc, studies: set[str], seen: dict[str, float], stop: threading.Event) -> None:
    url = f"{orthanc.dicomweb_url}/instances"
    params = {"Modality": "SR", "includefield": "0020000D", "limit": "100000"}
    while not stop.is_set() and not studies <= seen.keys():
        try:
            found = requests.get(url, params=params, auth=orthanc.auth, timeout=10).json()
        except (requests.RequestException, ValueError):
            found = []
        t = time.perf_counter()
        for item in found:
            study = (item.get("0020000D", {}).get("Value") or [None])[0]
            if study in studies and study not in seen:
                seen[study] = t
        stop.wait(POLL)


def level(
    orthanc, port: int, image: Path, senders: int, films: int, offset: int, timeout: float, rate: float = 0.0
) -> dict:
    batch = [film_like(image, offset + i) for i in range(films)]
    studies = {str(f.StudyInstanceUID) for f in batch}
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    failures: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_srs, args=(orthanc, studies, seen, stop))
    watcher.start()
    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=send_films, args=(batch[k::senders], port, acked, failures, rate))
        for k in range(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = time.perf_counter()
    watcher.join(timeout)
    stop.set()
    watcher.join()
    done = max(seen.values(), default=sent)
    latency = np.array([seen[s] - acked[s] for s in seen if s in acked]) * 1000
    return {
        "senders": senders,
        "paced_films_per_s": rate or None,  # None: each sender as fast as the gateway acknowledges
        "films": films,
        "acknowledged": len(acked),
        "failures": len(failures),
        "srs_in_orthanc": len(seen),
        "send_films_per_s": round(len(acked) / (sent - t0), 2),
        "films_per_s_to_sr": round(len(seen) / (done - t0), 2) if seen else None,
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 0) if len(latency) else None,
        "latency_ms_p99": round(float(np.percentile(latency, 99)), 0) if len(latency) else None,
        "poll_seconds": POLL,
    }


def gateway_benchmark(run: Path | None, senders: list[int], films: int, image: Path | None, command: str) -> None:
    image = image or DEFAULT_IMAGE
    with tempfile.TemporaryDirectory() as tmp, running_orthanc(Path(tmp) / "orthanc") as orthanc:
        if run is None:
            (Path(tmp) / "run").mkdir()
            run = build_demo_run(Path(tmp) / "run")
        http_port, dicom_port = free_port(), free_port()
        options = ["--dicom-port", str(dicom_port), "--allow", f"{SENDER}@{HOST}", "--send-to", orthanc.dimse_address]
        options += ["--db", f"sqlite:///{Path(tmp) / 'reading.db'}"]
        env = {**os.environ, "CXR_API_KEY": ""}
        server = subprocess.Popen(serve_command(run, http_port, 1, *options), env=env)
        try:
            model = wait_until_up(f"http://{HOST}:{http_port}", server)
            levels, offset = [], 0
            # paced first: the latency of one film when nothing queues (a department's rate is far below this)
            levels.append(level(orthanc, dicom_port, image, 1, max(20, films // 4), offset, timeout=600, rate=PACED))
            offset += max(20, films // 4)
            for n in senders:
                levels.append(level(orthanc, dicom_port, image, n, films, offset, timeout=600))
                offset += films
        finally:
            server.terminate()
            server.wait(30)
    write_result(
        "gateway",
        {
            "command": command,
            "model": model.get("model"),
            "backend": model.get("backend"),
            "image": str(image),
            "levels": levels,
            "note": "server, Orthanc and senders on one machine; one association per film; latency: C-STORE "
            "acknowledged -> the film's SR found by QIDO-RS in Orthanc (polled every poll_seconds)",
        },
    )
