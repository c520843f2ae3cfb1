"""The Storage SCP: a DICOM listener (pynetdicom) for C-ECHO and C-STORE of chest radiographs.

Closed by default: an association is accepted only from a calling AE title (and host, when the allow-list names one)
on `--allow`; others get A-ASSOCIATE-RJ "calling AE title not recognised". Only the radiograph storage classes (CR,
DX for presentation and for processing) and the transfer syntaxes this installation can decode are negotiated, so a
CT or an undecodable compression is refused at negotiation, before any byte is stored. A C-STORE is answered after
the instance is on disk and recorded (intake.py); a dataset that cannot be read gets a failure status and a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)

from cxr.errors import CxrError
from cxr.gateway.config import GatewayConfig, Peer

log = logging.getLogger(__name__)

STORAGE_CLASSES = (
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ComputedRadiographyImageStorage,
)
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
COMPRESSED = (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
# C-STORE statuses (PS3.4 B.2.3)
SUCCESS, OUT_OF_RESOURCES, NOT_AUTHORIZED, DATASET_MISMATCH, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0x0124, 0xA900, 0xC210
REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03

# on_instance(part-10 bytes, decoded header, sender "AE@host") -> a C-STORE status
OnInstance = Callable[[bytes, Dataset, str], int]


def transfer_syntaxes() -> list[UID]:
    """Uncompressed ones, and each compressed one whose pixel decoder is installed (the model must read the film)."""
    usable = [uid for uid in COMPRESSED if get_decoder(uid).is_available]
    return [*UNCOMPRESSED, *usable]


def allowed(peers: list[Peer], ae_title: str, host: str) -> bool:
    return any(p.ae_title == ae_title.strip() and (p.host is None or p.host == host) for p in peers)


class StorageSCP:
    def __init__(self, config: GatewayConfig, on_instance: OnInstance):
        self.config, self.on_instance = config, on_instance
        self.ae = AE(ae_title=config.ae_title)
        self.ae.maximum_pdu_size = 0  # no limit: films are tens of MB
        syntaxes = transfer_syntaxes()
        for sop_class in STORAGE_CLASSES:
            self.ae.add_supported_context(sop_class, syntaxes)
        self.ae.add_supported_context(Verification)
        self.ae.require_called_aet = True  # a sender configured for another AE title is told so
        self.server = None

    def start(self) -> None:
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_STORE, self._on_store)]
        try:
            self.server = self.ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        except OSError as e:
            where = f"{self.config.host}:{self.config.port}"
            raise CxrError(f"--dicom-port: cannot listen on {where} ({e.strerror}); pick another port") from None
        log.info("DICOM gateway: AE %s listening on %s:%s", self.config.ae_title, self.config.host, self.config.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _on_requested(self, event) -> None:
        requestor = event.assoc.requestor
        title = requestor.primitive.calling_ae_title.strip()
        if not allowed(self.config.allow, title, requestor.address):
            log.warning("DICOM gateway: refused an association from %s@%s (not on --allow)", title, requestor.address)
            event.assoc.acse.send_reject(REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
            event.assoc.kill()  # as pynetdicom's own rejection does: waits for the A-ASSOCIATE-RJ to go out

    def _on_store(self, event) -> int:
        requestor = event.assoc.requestor
        sender = f"{requestor.ae_title.strip()}@{requestor.address}"
        if not allowed(self.config.allow, requestor.ae_title, requestor.address):  # belt and braces
            return NOT_AUTHORIZED
        try:
            header = event.dataset
            sop_uid = str(header.SOPInstanceUID).strip()
            has_pixels = "PixelData" in header
        except Exception as e:  # pydicom raises many types on a malformed dataset
            log.warning("DICOM gateway: an instance from %s could not be read (%s); refused", sender, type(e).__name__)
            return CANNOT_UNDERSTAND
        if not sop_uid or not has_pixels:
            what = "no SOPInstanceUID" if not sop_uid else "no pixel data"
            log.warning("DICOM gateway: an instance from %s has %s; refused", sender, what)
            return DATASET_MISMATCH
        try:
            return self.on_instance(event.encoded_dataset(include_meta=True), header, sender)
        except Exception as e:  # disk full, database down: the sender keeps the film and retries
            log.error("DICOM gateway: instance from %s not stored (%s); the sender may retry", sender, type(e).__name__)
            return OUT_OF_RESOURCES
