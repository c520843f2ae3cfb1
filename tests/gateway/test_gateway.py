"""The DICOM gateway end to end against a real Orthanc: films in by C-STORE (storescu and pynetdicom) or pulled over
DICOMweb, scored and listed by the service, results back in Orthanc as SRs (found by QIDO-RS)."""

from __future__ import annotations

import io
import logging
import subprocess
import time

import numpy as np
import pydicom
import pytest
from PIL import Image

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from fastapi.testclient import TestClient  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    Verification,
)
from sqlalchemy import func, select  # noqa: E402

from cxr.gateway.config import load_gateway_config  # noqa: E402
from cxr.gateway.sr import sr_findings  # noqa: E402
from cxr.inference.bundle import Bundle  # noqa: E402
from cxr.inference.predict import predict_paths  # noqa: E402
from cxr.readingroom.db import sqlite_url  # noqa: E402
from cxr.readingroom.schema import DicomInstance, Film, OutboxItem  # noqa: E402
from cxr.serve.app import create_app  # noqa: E402
from tests.conftest import CODECADEMY  # noqa: E402
from tests.gateway import wait_for  # noqa: E402
from tests.gateway.films import dx_film, encode, write  # noqa: E402
from tests.gateway.orthanc import free_port  # noqa: E402
from tests.serve.conftest import served_run  # noqa: E402, F401 (the served model fixture)

MODALITY = "MODALITY"
WAIT = 60.0


class Running:
    """A served model with its gateway, and helpers to send films to it."""

    def __init__(self, client: TestClient, config):
        self.client, self.config = client, config
        self.app = client.app
        self.gateway = self.app.state.gateway
        self.room = self.app.state.reading.room

    def send(self, *datasets, calling_ae: str = MODALITY) -> list[int]:
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        ae.add_requested_context(ComputedRadiographyImageStorage)
        assoc = ae.associate("127.0.0.1", self.config.port, ae_title=self.config.ae_title)
        if not assoc.is_established:
            return []
        try:
            return [int(assoc.send_c_store(ds).Status) for ds in datasets]
        finally:
            assoc.release()

    def settle(self) -> None:
        """Every received instance scored (the intake thread is idle)."""
        assert self.gateway.intake.wait_idle(WAIT)
        time.sleep(0.05)
        assert self.gateway.intake.wait_idle(WAIT)

    def status(self) -> dict:
        """GET /v1/gateway with an admin key (the operator's view)."""
        key = self.room.add_reader(f"ops{time.monotonic_ns()}", "admin")
        answer = self.client.get("/v1/gateway", headers={"X-Reader-Key": key})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def count(self, model) -> int:
        with self.room.session() as session:
            return session.scalar(select(func.count()).select_from(model))

    def film_of(self, sop_uid: str) -> Film:
        with self.room.session() as session:
            return session.scalar(select(Film).where(Film.sop_uid == sop_uid))


@pytest.fixture
def gateway(served_run, tmp_path, orthanc, monkeypatch):
    """`cxr serve RUN --dicom-port P --allow MODALITY@127.0.0.1 --send-to ORTHANC@127.0.0.1:PORT` (in process)."""
    monkeypatch.setenv("CXR_DICOMWEB_PASSWORD", orthanc.auth[1])
    started = []

    def start(explain: bool = False, store_images: bool = True, **settings) -> Running:
        settings.setdefault("allow", [f"{MODALITY}@127.0.0.1"])
        settings.setdefault("send_to", [orthanc.dimse_address])
        config = load_gateway_config(None, port=free_port(), retry_seconds=0.2, max_retry_seconds=1.0, **settings)
        db = tmp_path / f"room{len(started)}"
        db.mkdir()
        app = create_app(
            served_run, db=sqlite_url(db / "reading.db"), dicom=config, explain=explain, store_images=store_images
        )
        client = TestClient(app)
        client.__enter__()
        started.append(client)
        return Running(client, config)

    yield start
    for client in started:
        client.__exit__(None, None, None)


def srs_in(orthanc, study_uid: str) -> list[pydicom.Dataset]:
    found = orthanc.qido_instances(study_uid=study_uid, modality="SR")
    return [pydicom.dcmread(io.BytesIO(orthanc.retrieve(r["00080018"]["Value"][0]))) for r in found]


def test_films_sent_with_storescu_and_pynetdicom_come_back_as_srs_in_orthanc(gateway, orthanc, tmp_path):
    g = gateway()
    first, second = dx_film(seed=1, accession="A1"), dx_film(seed=2, accession="A2", modality="CR", view=None)
    path = write(first, tmp_path / "first.dcm")
    done = subprocess.run(
        ["storescu", "-aet", MODALITY, "-aec", "CXR", "127.0.0.1", str(g.config.port), str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert g.send(second) == [0]
    g.settle()
    for film in (first, second):
        srs = wait_for(lambda f=film: srs_in(orthanc, f.StudyInstanceUID), what="the SR in Orthanc")
        assert len(srs) == 1
        recorded = g.film_of(film.SOPInstanceUID)
        expected = dict(zip(recorded.classes, recorded.probabilities))
        assert sr_findings(srs[0]) == pytest.approx(expected, abs=1e-6)
        assert srs[0].AccessionNumber == film.AccessionNumber
    listed = g.client.get("/v1/studies").json()["items"]
    by_accession = {item["dicom"]["accession"]: item for item in listed}
    assert by_accession["A1"]["dicom"]["view"] == "PA" and by_accession["A1"]["dicom"]["study_date"] == "20261204"
    assert by_accession["A2"]["source"] == "dicom" and by_accession["A2"]["dicom"]["view"] is None
    assert "Test^Synthetic" not in str(listed)  # names are never stored


def test_an_unknown_ae_is_refused_and_nothing_is_recorded(gateway, tmp_path):
    g = gateway()
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", g.config.port, ae_title=g.config.ae_title)
    assert assoc.is_rejected and not assoc.is_established
    path = write(dx_film(), tmp_path / "f.dcm")
    done = subprocess.run(
        ["storescu", "-aet", "STRANGER", "-aec", "CXR", "127.0.0.1", str(g.config.port), str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Calling AE Title Not Recognized" in done.stderr + done.stdout
    # an allowed title from another host than the one allowed is refused too
    g2 = gateway(allow=[f"{MODALITY}@10.9.8.7"])
    assert g2.send(dx_film()) == [] and g2.count(DicomInstance) == 0


def test_an_echo_from_an_allowed_ae_is_answered(gateway):
    g = gateway()
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", g.config.port, ae_title="CXR")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def test_a_resent_film_is_stored_and_scored_once(gateway, orthanc):
    g = gateway()
    film = dx_film(seed=3)
    assert g.send(film, film) == [0, 0]
    assert g.send(film) == [0]
    g.settle()
    assert g.count(DicomInstance) == 1 and g.count(Film) == 1
    wait_for(lambda: g.gateway.outbox.pending() == 0, what="the outbox to empty")
    assert len(srs_in(orthanc, film.StudyInstanceUID)) == 1
    assert g.count(OutboxItem) == 1


def test_results_wait_while_orthanc_is_down_and_arrive_when_it_is_back(gateway, orthanc):
    g = gateway()
    orthanc.stop()
    film = dx_film(seed=4)
    assert g.send(film) == [0]
    g.settle()
    wait_for(lambda: _attempted(g), what="a failed send")
    assert g.gateway.outbox.pending() == 1
    (waiting,) = g.status()["outbox"]["waiting"]
    assert waiting["items"] == 1 and "cannot connect" in waiting["last_error"].lower()
    orthanc.start()
    wait_for(lambda: g.gateway.outbox.pending() == 0, what="the retry to succeed")
    assert len(srs_in(orthanc, film.StudyInstanceUID)) == 1


def _attempted(g: Running) -> bool:
    with g.room.session() as session:
        item = session.scalar(select(OutboxItem))
        return item is not None and item.attempts >= 1 and item.last_error is not None


def test_a_malformed_or_pixel_less_instance_is_refused_and_the_next_film_is_scored(
    gateway, tmp_path, caplog, monkeypatch
):
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send a file's bytes as they are, unparsed
    g = gateway()
    no_pixels = dx_film(seed=5)
    del no_pixels.PixelData
    caplog.set_level(logging.WARNING, logger="cxr.gateway")
    assert g.send(no_pixels) == [0xA900]
    broken = tmp_path / "broken.dcm"
    data = bytearray(encode(dx_film(seed=6)))
    header_end = data.find(b"\x08\x00\x16\x00")  # (0008,0016): the first dataset element after the file meta
    data[header_end:] = b"\x08\x00\x16\x00UI\xff\xff" + b"\x00garbage" * 8
    broken.write_bytes(bytes(data))
    statuses = g.send(broken)
    assert statuses and statuses[0] != 0
    assert any("refused" in r.getMessage() for r in caplog.records)
    good = dx_film(seed=7)
    assert g.send(good) == [0]
    g.settle()
    assert g.film_of(good.SOPInstanceUID) is not None and g.count(Film) == 1


def test_a_lateral_film_is_kept_as_skipped_not_scored(gateway):
    g = gateway()
    lateral = dx_film(view="LL", seed=8)
    assert g.send(lateral) == [0]
    g.settle()
    with g.room.session() as session:
        row = session.scalar(select(DicomInstance))
    assert row.status == "skipped" and "LL" in row.reason and g.count(Film) == 0
    status = g.status()
    assert status["listening"] and status["instances"] == {"skipped": 1}
    assert "LL" in status["not_scored"][0]["reason"] and status["not_scored"][0]["from"] == MODALITY


def test_a_pulled_film_is_scored_once_and_its_sr_sent_by_stow(gateway, orthanc):
    film = dx_film(seed=9)
    orthanc.upload(encode(film))
    g = gateway(allow=[], pull=orthanc.dicomweb_url, dicomweb_username=orthanc.auth[0], send_to=[orthanc.dicomweb_url])
    wait_for(lambda: g.film_of(film.SOPInstanceUID), what="the pulled film to be scored")
    assert g.gateway.pull_once() == 0  # seen: not fetched again (and the SR it sent back is not a CR/DX)
    wait_for(lambda: srs_in(orthanc, film.StudyInstanceUID), what="the SR stored by STOW-RS")
    assert g.count(Film) == 1


@pytest.mark.skipif(not CODECADEMY.is_dir(), reason="needs the shared datasets")
def test_a_real_film_as_dicom_gets_the_probabilities_cxr_predict_gives_the_image(gateway, served_run, tmp_path):
    g = gateway(send_to=[])
    source = sorted((CODECADEMY / "test" / "Normal").iterdir())[0]
    gray = np.asarray(Image.open(source).convert("L"))
    png = tmp_path / "film.png"
    Image.fromarray(gray).save(png)
    film = dx_film(pixels=gray, seed=0)
    assert g.send(film) == [0]
    g.settle()
    recorded = g.film_of(film.SOPInstanceUID)
    expected = predict_paths(Bundle.load(served_run), [png])
    assert recorded.probabilities == pytest.approx(list(expected.probabilities[0]), abs=1e-5)


def test_a_read_goes_back_as_a_second_sr(gateway, orthanc):
    g = gateway(send_reads=True)
    film = dx_film(seed=10)
    assert g.send(film) == [0]
    g.settle()
    study_id = g.film_of(film.SOPInstanceUID).id
    key = g.room.add_reader("ann")
    answer = g.client.post(f"/v1/studies/{study_id}/reads", json={"label": "Normal"}, headers={"X-Reader-Key": key})
    assert answer.status_code == 201
    srs = wait_for(lambda: len(srs_in(orthanc, film.StudyInstanceUID)) == 2 and srs_in(orthanc, film.StudyInstanceUID))
    assert any("ann" in str(ds) for ds in srs)


def test_the_gateway_settings_are_checked_in_one_line():
    from cxr.errors import CxrError

    with pytest.raises(CxrError, match="AE@host:port"):
        load_gateway_config(None, port=104, send_to=["ORTHANC@localhost"])
    with pytest.raises(CxrError, match="ae_title"):
        load_gateway_config(None, port=104, ae_title="A" * 17)


def test_the_grad_cam_overlay_goes_back_as_a_secondary_capture(gateway, orthanc):
    g = gateway(send_overlay=True, explain=True)
    film = dx_film(seed=11)
    assert g.send(film) == [0]
    g.settle()
    wait_for(lambda: g.gateway.outbox.pending() == 0 and g.count(OutboxItem) == 2, what="the SR and the overlay sent")
    (found,) = orthanc.qido_instances(study_uid=film.StudyInstanceUID, modality="OT")
    overlay = pydicom.dcmread(io.BytesIO(orthanc.retrieve(found["00080018"]["Value"][0])))
    assert overlay.SamplesPerPixel == 3 and overlay.pixel_array.shape[:2] == (film.Rows, film.Columns)
    assert "NOT FOR DIAGNOSTIC USE" in overlay.SeriesDescription


def test_without_stored_images_the_sr_still_goes_and_the_missing_overlay_is_a_log_line(gateway, orthanc, caplog):
    caplog.set_level(logging.WARNING, logger="cxr.gateway")
    g = gateway(send_overlay=True, explain=True, store_images=False)
    film = dx_film(seed=12)
    assert g.send(film) == [0]
    g.settle()
    wait_for(lambda: srs_in(orthanc, film.StudyInstanceUID), what="the SR")
    with g.room.session() as session:
        row = session.scalar(select(DicomInstance))
    assert row.status == "scored" and row.reason is None
    assert any("no overlay for study" in r.getMessage() for r in caplog.records)
