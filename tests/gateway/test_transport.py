"""The gateway's DICOM transport against a real Orthanc: C-STORE and C-ECHO (scu.py), STOW-RS and pull by QIDO-RS +
WADO-RS (dicomweb.py). Most tests share one Orthanc (each uses its own UIDs); the restart and pull tests need their
own, since they stop it or count everything on it."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

pytest.importorskip("pynetdicom")
pytest.importorskip("dicomweb_client")

from pydicom import dcmread  # noqa: E402
from pydicom.uid import SecondaryCaptureImageStorage  # noqa: E402

from cxr.gateway.config import Destination  # noqa: E402
from cxr.gateway.dicomweb import PASSWORD_ENV, DicomWebPuller, PullFailed, stow  # noqa: E402
from cxr.gateway.scu import NO_CONTEXT, SendFailed, echo, is_success, send_cstore  # noqa: E402
from tests.gateway.films import dx_film, encode, write  # noqa: E402
from tests.gateway.orthanc import Orthanc, free_port, qido_value, running_orthanc  # noqa: E402

SOP_UID, MODALITY = "00080018", "00080060"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """One Orthanc for the tests that only add instances with fresh UIDs."""
    with running_orthanc(tmp_path_factory.mktemp("pacs"), {"cxr": ("CXR", "127.0.0.1", free_port())}) as orthanc:
        yield orthanc


def dimse(orthanc: Orthanc, ae_title: str | None = None) -> Destination:
    return Destination.parse(f"{ae_title or orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")


def web(orthanc: Orthanc) -> Destination:
    return Destination.parse(orthanc.dicomweb_url, username=orthanc.auth[0])


def secondary_capture(seed: int = 5):
    """A non-radiograph (modality OT, Secondary Capture) that pull mode must leave alone."""
    ds = dx_film(seed=seed)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "OT"
    return ds


def test_stored_statuses():
    assert is_success(0x0000) and is_success(0xB000) and is_success(0xB006) and is_success(0xB007)
    assert not is_success(0xA700) and not is_success(0xC000) and not is_success(NO_CONTEXT)


def test_the_fixture_knows_cxr_as_a_modality(pacs):
    known = pacs.modalities()
    assert set(known) == {"cxr"} and known["cxr"]["AET"] == "CXR" and known["cxr"]["Host"] == "127.0.0.1"


def test_cstore_of_films_is_found_by_qido_with_the_same_uid(pacs):
    dx, cr = dx_film(), dx_film(modality="CR", seed=1)
    assert send_cstore([dx, cr], dimse(pacs), calling_ae="CXR") == [0, 0]
    found = pacs.qido_instances(study_uid=dx.StudyInstanceUID)
    assert [qido_value(r, SOP_UID) for r in found] == [dx.SOPInstanceUID]
    assert qido_value(found[0], MODALITY) == "DX"
    stored = dcmread(io.BytesIO(pacs.retrieve(cr.SOPInstanceUID)))
    assert stored.Modality == "CR" and stored.PixelData == cr.PixelData


def test_an_instance_the_pacs_has_no_context_for_is_refused_alone(pacs):
    odd, dx = dx_film(seed=2), dx_film(seed=3)
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.999"  # no such SOP class
    statuses = send_cstore([odd, dx], dimse(pacs))
    assert statuses == [NO_CONTEXT, 0]
    assert pacs.find(dx.SOPInstanceUID) is not None and pacs.find(odd.SOPInstanceUID) is None


def test_echo_answers_only_where_a_pacs_listens(pacs):
    assert echo(dimse(pacs)) is True
    closed = Destination.parse(f"ORTHANC@127.0.0.1:{free_port()}")
    assert echo(closed, timeout=5) is False
    with pytest.raises(SendFailed) as failed:
        send_cstore([dx_film()], closed, timeout=5)
    message = str(failed.value)
    assert f"127.0.0.1:{closed.port}" in message and "cannot connect" in message and "\n" not in message


def test_a_wrong_called_ae_title_is_rejected_in_one_line(pacs):
    with pytest.raises(SendFailed) as failed:
        send_cstore([dx_film()], dimse(pacs, ae_title="NOTORTHANC"))
    message = str(failed.value)
    assert "NOTORTHANC@127.0.0.1" in message and "rejected" in message and "called AE" in message
    assert "\n" not in message


def test_stow_with_the_password_stores_and_a_wrong_one_says_401(pacs, monkeypatch):
    dx = dx_film(seed=4)
    assert stow([dx], web(pacs), password=pacs.auth[1]) == [0]
    assert pacs.find(dx.SOPInstanceUID) is not None
    monkeypatch.setenv(PASSWORD_ENV, pacs.auth[1])  # the default: the password from the environment
    other = dx_film(modality="CR", seed=5)
    assert stow([other], web(pacs)) == [0] and pacs.find(other.SOPInstanceUID) is not None

    wrong = "not-the-password-" + pacs.auth[1][:4]
    late = dx_film(seed=6)
    with pytest.raises(SendFailed) as failed:
        stow([late], web(pacs), password=wrong)
    message = str(failed.value)
    assert "401" in message and PASSWORD_ENV in message and "\n" not in message
    assert wrong not in message and pacs.auth[1] not in message
    assert pacs.find(late.SOPInstanceUID) is None


def test_stow_to_a_closed_port_fails_in_one_line():
    where = Destination.parse(f"http://127.0.0.1:{free_port()}/dicom-web", username="cxr")
    with pytest.raises(SendFailed) as failed:
        stow([dx_film()], where, password="secret-pw", timeout=5)
    message = str(failed.value)
    assert "cannot connect" in message and where.url in message and "secret-pw" not in message
    assert "\n" not in message


def test_sends_fail_while_orthanc_is_down_and_work_when_it_is_back(orthanc):
    first, second = dx_film(seed=7), dx_film(seed=8)
    assert send_cstore([first], dimse(orthanc)) == [0]
    orthanc.stop()
    with pytest.raises(SendFailed, match="cannot connect"):
        send_cstore([second], dimse(orthanc), timeout=5)
    with pytest.raises(SendFailed, match="cannot connect"):
        stow([second], web(orthanc), password=orthanc.auth[1], timeout=5)
    orthanc.start()
    assert send_cstore([second], dimse(orthanc)) == [0]
    assert orthanc.sop_instance_uids() == {first.SOPInstanceUID, second.SOPInstanceUID}  # same storage as before


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed (apt-get install dcmtk)")
def test_dcmtk_storescu_stores_into_the_fixture(pacs, tmp_path):
    dx = dx_film(seed=9)
    path = write(dx, tmp_path / "film.dcm")
    done = subprocess.run(
        ["storescu", "-aet", "DCMTK", "-aec", pacs.aet, "127.0.0.1", str(pacs.dicom_port), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert dcmread(io.BytesIO(pacs.retrieve(dx.SOPInstanceUID))).SOPInstanceUID == dx.SOPInstanceUID


def test_pull_yields_each_new_radiograph_once(orthanc):
    dx, cr, other = dx_film(seed=10), dx_film(modality="CR", seed=11), secondary_capture(seed=12)
    for ds in (dx, cr, other):
        orthanc.upload(encode(ds))
    assert len(orthanc.instances()) == 3
    puller = DicomWebPuller(orthanc.dicomweb_url, username=orthanc.auth[0], password=orthanc.auth[1])
    seen: set[str] = set()
    pulled = {}
    for uid, data in puller.poll(seen.__contains__):
        assert uid not in pulled
        seen.add(uid)
        pulled[uid] = dcmread(io.BytesIO(data))
    assert set(pulled) == {dx.SOPInstanceUID, cr.SOPInstanceUID}
    for original in (dx, cr):
        read = pulled[original.SOPInstanceUID]
        assert read.SOPInstanceUID == original.SOPInstanceUID and read.Modality == original.Modality
        assert read.PixelData == original.PixelData
        assert (read.pixel_array == original.pixel_array).all()
    assert list(puller.poll(seen.__contains__)) == []

    newer = dx_film(seed=13)
    orthanc.upload(encode(newer))
    assert [uid for uid, _ in puller.poll(seen.__contains__)] == [newer.SOPInstanceUID]


def test_pull_respects_the_limit(pacs):
    films = [dx_film(seed=20 + i) for i in range(3)]
    for ds in films:
        pacs.upload(encode(ds))
    puller = DicomWebPuller(pacs.dicomweb_url, username=pacs.auth[0], password=pacs.auth[1])
    known = pacs.sop_instance_uids() - {ds.SOPInstanceUID for ds in films}  # what earlier tests stored
    first = [uid for uid, _ in puller.poll(known.__contains__, limit=2)]
    assert len(first) == 2 and set(first) < {ds.SOPInstanceUID for ds in films}


def test_pull_problems_are_one_line(pacs):
    wrong = DicomWebPuller(pacs.dicomweb_url, username=pacs.auth[0], password="wrong-pw")
    with pytest.raises(PullFailed) as failed:
        list(wrong.poll(lambda uid: False))
    message = str(failed.value)
    assert "401" in message and "wrong-pw" not in message and "\n" not in message
    closed = DicomWebPuller(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5)
    with pytest.raises(PullFailed, match="cannot connect"):
        list(closed.poll(lambda uid: False))
