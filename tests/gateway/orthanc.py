"""A real, throw-away Orthanc PACS for the gateway tests: Debian's /usr/sbin/Orthanc with the DICOMweb plugin, on free
loopback ports, its storage in a temp folder, HTTP behind a random user and password. The gateway is tested against
a real DIMSE and DICOMweb peer, never a mock; without the binary, tests that need it are skipped with the reason.

`stop()` then `start()` restarts it on the same ports and storage: the outbox test needs "the PACS is down, results
wait, they arrive when it is back".
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = "Orthanc is not installed (.ci/run installs it: apt-get install orthanc orthanc-dicomweb dcmtk)"
START_TIMEOUT = 30.0


def orthanc_installed() -> bool:
    return ORTHANC.is_file() and DICOMWEB_PLUGIN.is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process and its configuration; `start()` and `stop()` keep the ports, storage and password."""

    def __init__(self, root: Path, modalities: dict[str, tuple[str, str, int]] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.aet = "ORTHANC"
        self.http_port, self.dicom_port = free_port(), free_port()
        self.auth = ("cxr-test", secrets.token_urlsafe(16))
        self.log_path = self.root / "orthanc.log"
        self.config_path = self.root / "orthanc.json"
        self.config_path.write_text(json.dumps(self._config(modalities or {}), indent=2))
        self._process: subprocess.Popen | None = None
        self.start_seconds: float | None = None  # how long the last start took (the report quotes it)

    def _config(self, modalities: dict[str, tuple[str, str, int]]) -> dict:
        storage = str(self.root / "storage")
        return {
            "Name": "cxr-test-pacs",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,  # like a real PACS: a wrong called AE title is rejected
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.auth[0]: self.auth[1]},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1"},
            "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "UnknownSopClassAccepted": False,
            "HttpProxy": "",  # Orthanc reaches no network of its own here (it has no telemetry)
            "WebDavEnabled": False,
            "SaveJobs": False,
            "StableAge": 1,
            "DeidentifyLogs": True,
            "SyncStorageArea": False,  # throw-away storage: no fsync per instance
            "OverwriteInstances": False,
        }

    # -- process ---------------------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Orthanc and wait until both its REST API (with the password) and its DICOM port answer."""
        if self.running:
            return
        began = time.monotonic()
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [str(ORTHANC), str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        finally:
            log.close()  # the child holds its own descriptor
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self._process.returncode}:\n{self.log_tail()}")
            if self._answers():
                self.start_seconds = time.monotonic() - began
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer GET /system within {timeout:.0f} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            ok = requests.get(f"{self.http_url}/system", auth=self.auth, timeout=2).status_code == 200
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=2):
                return ok
        except (requests.RequestException, OSError):
            return False

    def stop(self) -> None:
        """Terminate, wait, kill if it hangs: the ports are free again when this returns."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- addresses -------------------------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    @property
    def dimse_address(self) -> str:
        """As `--send-to` takes it: AE@host:port."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    # -- REST and DICOMweb, for the tests' assertions --------------------------------------------------------------

    def _get(self, path: str, **kwargs) -> requests.Response:
        response = requests.get(f"{self.http_url}{path}", auth=self.auth, timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def modalities(self) -> dict[str, dict]:
        """The DICOM peers Orthanc knows (REST /modalities?expand): name -> {"AET", "Host", "Port", ...}."""
        return self._get("/modalities", params={"expand": ""}).json()

    def instances(self) -> list[str]:
        """Orthanc's ids of every stored instance (REST)."""
        return self._get("/instances").json()

    def instance_tags(self, orthanc_id: str) -> dict[str, str]:
        """The instance's main tags by keyword (REST /instances/{id}/simplified-tags)."""
        return self._get(f"/instances/{orthanc_id}/simplified-tags").json()

    def sop_instance_uids(self) -> set[str]:
        return {self.instance_tags(i)["SOPInstanceUID"] for i in self.instances()}

    def instance_bytes(self, orthanc_id: str) -> bytes:
        """The stored Part 10 file as Orthanc keeps it."""
        return self._get(f"/instances/{orthanc_id}/file").content

    def find(self, sop_uid: str) -> str | None:
        """Orthanc's id of the instance with this SOPInstanceUID (REST /tools/lookup), None if it is not stored."""
        response = requests.post(f"{self.http_url}/tools/lookup", data=sop_uid, auth=self.auth, timeout=30)
        response.raise_for_status()
        found = [hit["ID"] for hit in response.json() if hit["Type"] == "Instance"]
        return found[0] if found else None

    def retrieve(self, sop_uid: str) -> bytes:
        """The stored file of the instance with this SOPInstanceUID."""
        orthanc_id = self.find(sop_uid)
        if orthanc_id is None:
            raise KeyError(f"{sop_uid} is not stored in Orthanc")
        return self.instance_bytes(orthanc_id)

    def qido_instances(self, study_uid: str | None = None, modality: str | None = None) -> list[dict]:
        """QIDO-RS instance search, DICOM JSON (keys are tags: "00080018" is SOPInstanceUID)."""
        params = {k: v for k, v in (("StudyInstanceUID", study_uid), ("Modality", modality)) if v}
        return self._get("/dicom-web/instances", params=params, headers={"Accept": "application/dicom+json"}).json()

    def upload(self, data: bytes) -> str:
        """Store a Part 10 file through REST (POST /instances); returns Orthanc's id of it."""
        response = requests.post(f"{self.http_url}/instances", data=data, auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()["ID"]


@contextmanager
def running_orthanc(tmp_path: Path, modalities: dict[str, tuple[str, str, int]] | None = None) -> Iterator[Orthanc]:
    """A started Orthanc (modalities: name -> (AE title, host, port) it knows), stopped afterwards whatever happens."""
    if not orthanc_installed():
        pytest.skip(INSTALL_HINT)
    orthanc = Orthanc(Path(tmp_path) / "orthanc", modalities)
    try:
        orthanc.start()
        yield orthanc
    finally:
        orthanc.stop()


def qido_value(result: dict, tag: str) -> str | None:
    """The first value of `tag` ("00080018") in one DICOM JSON result."""
    values = result.get(tag, {}).get("Value") or [None]
    return values[0]
