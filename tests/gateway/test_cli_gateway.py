"""The docs page's walk-through ("Connect to a PACS") as a user types it: `cxr serve --dicom-port` as its own
process, a film sent with dcmtk's storescu, the SR found in Orthanc; and the command line's one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from tests.gateway import wait_for  # noqa: E402
from tests.gateway.films import dx_film, write  # noqa: E402
from tests.gateway.orthanc import free_port  # noqa: E402
from tests.serve.conftest import served_run  # noqa: E402, F401 (the served model fixture)

CXR = [sys.executable, "-m", "cxr.cli"]


def test_a_film_from_storescu_reaches_orthanc_as_an_sr_through_cxr_serve(served_run, orthanc, tmp_path):  # noqa: F811
    http_port, dicom_port = free_port(), free_port()
    command = [
        *CXR,
        "serve",
        str(served_run),
        "--port",
        str(http_port),
        "--db",
        f"sqlite:///{tmp_path / 'reading.db'}",
        "--dicom-port",
        str(dicom_port),
        "--allow",
        "STORESCU@127.0.0.1",
        "--send-to",
        orthanc.dimse_address,
    ]
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CXR_API_KEY": ""})
    try:
        _wait(lambda: _up(http_port), server, tmp_path)
        film = dx_film(seed=21, accession="DOCS1")
        path = write(film, tmp_path / "film.dcm")
        sent = subprocess.run(
            ["storescu", "-aet", "STORESCU", "-aec", "CXR", "127.0.0.1", str(dicom_port), str(path)],
            capture_output=True,
            text=True,
        )
        assert sent.returncode == 0, sent.stderr
        found = _wait(lambda: orthanc.qido_instances(study_uid=film.StudyInstanceUID, modality="SR"), server, tmp_path)
        assert len(found) == 1
        listed = requests.get(f"http://127.0.0.1:{http_port}/v1/studies", timeout=10).json()["items"]
        assert [item["dicom"]["accession"] for item in listed] == ["DOCS1"]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert "Test^Synthetic" not in (tmp_path / "serve.log").read_text()  # no patient name in the service's log


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait(condition, server: subprocess.Popen, tmp_path, timeout: float = 120):
    """`wait_for` while the service lives; what it logged in the failure."""

    def alive_and_ready():
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        return condition()

    try:
        return wait_for(alive_and_ready, timeout, "the service", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; the service said:\n" + (tmp_path / "serve.log").read_text()[-3000:]) from None


@pytest.mark.parametrize(
    "options, message",
    [
        (["--dicom-port", "11112"], "no sender is allowed; add --allow AE@host"),
        (["--dicom-port", "11112", "--allow", "M", "--send-to", "PACS@host"], "give AE@host:port"),
        (["--dicom-port", "11112", "--allow", "M", "--ae-title", "X" * 17], "1-16 printable ASCII characters"),
    ],
)
def test_bad_gateway_options_are_one_line(served_run, options, message):  # noqa: F811
    done = subprocess.run([*CXR, "serve", str(served_run), *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr


def test_a_dicom_port_in_use_is_one_line(served_run):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = ["--port", str(free_port()), "--dicom-port", str(port), "--allow", "M"]
        done = subprocess.run([*CXR, "serve", str(served_run), *options], capture_output=True, text=True, timeout=120)
    assert (
        done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--dicom-port" in done.stderr
    )


def test_a_bad_setting_in_the_gateway_file_is_one_line_naming_it(served_run, tmp_path):  # noqa: F811
    config = tmp_path / "gateway.yaml"
    config.write_text("port: 11112\nallow: [MOD]\nfrontal:\n  view_position: [PA]\n")  # the key is view_positions
    done = subprocess.run(
        [*CXR, "serve", str(served_run), "--dicom-config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "DICOM gateway setting frontal.view_position" in done.stderr
