"""Results to a DICOM AE by C-STORE (pynetdicom), and C-ECHO to check a destination.

One association carries a batch; the outbox keeps whatever fails and retries with back-off, so a failed association
is one line saying which destination and why (refused connection, rejected, aborted), never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from cxr.errors import CxrError
from cxr.gateway.config import Destination

SUCCESS = 0x0000
# Warnings after which the SCP has stored the instance: coercion of data elements (B000), elements discarded (B006),
# data set does not match the SOP class (B007). PS3.4 Annex B.2.3.
STORED_WARNINGS = frozenset({0xB000, 0xB006, 0xB007})
NO_CONTEXT = 0x0122  # "Refused: SOP Class not supported": the SCP accepted no context for this instance
MAX_CONTEXTS = 128  # PS3.8: presentation context ids are odd numbers 1-255


class SendFailed(CxrError):
    """A result could not be delivered (the PACS refused the connection, rejected or aborted the association, or
    answered an HTTP error). The outbox retries it later."""


def is_success(status: int) -> bool:
    """True when the SCP has the instance: success, or one of the warnings that still mean "stored"."""
    return status == SUCCESS or status in STORED_WARNINGS


def transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax the dataset is encoded in; a dataset built in memory without file meta is sent explicit."""
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return UID(uid) if uid else ExplicitVRLittleEndian


def _requested_contexts(datasets: Sequence[Dataset]) -> list[tuple[UID, list[UID]]]:
    """One context per (SOP class, compressed syntax); uncompressed data offers both little-endian syntaxes, since
    pynetdicom re-encodes between them if the SCP picks the other."""
    contexts: dict[tuple[UID, str], list[UID]] = {}
    for ds in datasets:
        sop_class, syntax = UID(ds.SOPClassUID), transfer_syntax(ds)
        if syntax.is_compressed:
            contexts.setdefault((sop_class, syntax), [syntax])
        else:
            offered = contexts.setdefault((sop_class, "uncompressed"), [])
            for uid in (syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
                if uid not in offered:
                    offered.append(uid)
    if len(contexts) > MAX_CONTEXTS:
        raise SendFailed(
            f"{len(contexts)} SOP class/transfer syntax pairs in one batch; one association carries at most "
            f"{MAX_CONTEXTS}: send fewer at a time"
        )
    return [(sop_class, syntaxes) for (sop_class, _), syntaxes in contexts.items()]


def _check_dimse(destination: Destination) -> tuple[str, str, int]:
    if destination.kind != "dimse" or not (destination.ae_title and destination.host and destination.port):
        raise ValueError(f"{destination.name or destination.url}: not a DICOM AE (AE@host:port)")
    return destination.ae_title, destination.host, destination.port


def _where(destination: Destination) -> str:
    return f"{destination.ae_title}@{destination.host}:{destination.port}"


def _associate(
    contexts: list[tuple[UID, list[UID]]], destination: Destination, calling_ae: str, timeout: float
) -> Association:
    """An established association, or SendFailed saying why there is none."""
    called, host, port = _check_dimse(destination)
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    connected: list[bool] = []
    handlers = [(evt.EVT_CONN_OPEN, lambda event: connected.append(True))]
    assoc = ae.associate(host, port, ae_title=called, evt_handlers=handlers)
    if assoc.is_established:
        return assoc
    where = _where(destination)
    if not connected:
        raise SendFailed(f"{where}: cannot connect (refused or unreachable): is the PACS running and the port right?")
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        reason = f"{rsp.result_str}, {rsp.reason_str}" if rsp is not None else "no reason given"
        raise SendFailed(
            f"{where} rejected the association ({reason}): check the called AE title and that the PACS knows "
            f"{calling_ae!r} as a modality"
        )
    if assoc.is_aborted and not assoc.accepted_contexts and assoc.rejected_contexts:
        classes = ", ".join(sorted({cx.abstract_syntax.name for cx in assoc.rejected_contexts}))
        raise SendFailed(f"{where} accepts none of the offered SOP classes/transfer syntaxes ({classes})")
    raise SendFailed(f"{where} aborted the association or did not answer within {timeout:g} s")


def send_cstore(
    datasets: Sequence[Dataset], destination: Destination, calling_ae: str = "CXR", timeout: float = 30
) -> list[int]:
    """C-STORE every dataset over one association; the DIMSE status per dataset, in order (see `is_success`).

    A dataset whose SOP class the SCP did not accept gets NO_CONTEXT (0x0122) and the others are still sent;
    an association that cannot be made, or ends before every dataset is answered, raises SendFailed.
    """
    if not datasets:
        return []
    assoc = _associate(_requested_contexts(datasets), destination, calling_ae, timeout)
    statuses: list[int] = []
    try:
        for ds in datasets:
            try:
                response = assoc.send_c_store(ds)
            except ValueError:  # pynetdicom: no accepted presentation context for this SOP class/syntax
                statuses.append(NO_CONTEXT)
                continue
            if "Status" not in response:  # an empty response: aborted, or no answer within the DIMSE timeout
                raise SendFailed(
                    f"{_where(destination)} ended the association after {len(statuses)} of {len(datasets)} "
                    f"instances (aborted, or no answer within {timeout:g} s)"
                )
            statuses.append(int(response.Status))
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(destination: Destination, calling_ae: str = "CXR", timeout: float = 10) -> bool:
    """C-ECHO: True when the destination accepts an association from `calling_ae` and answers success."""
    try:
        assoc = _associate(
            [(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])], destination, calling_ae, timeout
        )
    except SendFailed:
        return False
    try:
        response = assoc.send_c_echo()
        return int(response.get("Status", -1)) == SUCCESS
    finally:
        if assoc.is_established:
            assoc.release()
