"""DICOMweb transport (dicomweb-client): results out by STOW-RS, and pull mode for a PACS that cannot push (QIDO-RS
finds new CR/DX instances, WADO-RS fetches them).

Basic auth's password comes from the argument or $CXR_DICOMWEB_PASSWORD, never from a file, and never appears in an
error: a failure is one line naming the service (without credentials) and the HTTP status or connection problem.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from cxr.errors import CxrError
from cxr.gateway.config import RADIOGRAPH_MODALITIES, Destination
from cxr.gateway.scu import SUCCESS, SendFailed

PASSWORD_ENV = "CXR_DICOMWEB_PASSWORD"
PROCESSING_FAILURE = 0xC000  # a failed instance whose FailureReason the server did not give (PS3.4 Annex B.2.3)
QIDO_PAGE = 200  # instances per QIDO-RS request while paging through a search
SOP_INSTANCE_UID, STUDY_UID, SERIES_UID, MODALITY = "00080018", "0020000D", "0020000E", "00080060"

log = logging.getLogger(__name__)


class PullFailed(CxrError):
    """The DICOMweb service to pull from cannot be searched or read (down, wrong URL, wrong credentials)."""


def public_url(url: str) -> str:
    """The URL without user:password@, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _client(url: str, username: str | None, password: str | None, timeout: float) -> DICOMwebClient:
    """A client whose session carries basic auth; no retries of its own (the outbox and the poll loop retry)."""
    session = requests.Session()
    if username:
        session.auth = (username, password or "")
    client = DICOMwebClient(url, session=session, timeout=timeout)
    client.set_http_retry_params(retry=False)
    return client


def _http_problem(error: Exception, timeout: float) -> str:
    """What went wrong, in words: the status (with a hint for auth), or the connection problem; no URL, no secret."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        code, reason = error.response.status_code, error.response.reason or ""
        hints = {401: "check the username and $" + PASSWORD_ENV, 403: "check the username and $" + PASSWORD_ENV}
        hints[404] = "check the URL (the service's DICOMweb root, such as https://pacs/dicom-web)"
        hint = f": {hints[code]}" if code in hints else ""
        return f"HTTP {code} {reason}".rstrip() + hint
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(error, requests.ConnectionError):
        return "cannot connect (refused or unreachable): is the service running and the URL right?"
    return f"unexpected answer ({type(error).__name__})"


def stow(
    datasets: Sequence[Dataset], destination: Destination, password: str | None = None, timeout: float = 30
) -> list[int]:
    """STOW-RS every dataset in one request; a status per dataset in order, as C-STORE gives (scu.is_success tells
    stored from failed). HTTP errors and connection problems raise SendFailed."""
    if destination.kind != "dicomweb" or not destination.url:
        raise ValueError(f"{destination.name}: not a DICOMweb URL")
    if not datasets:
        return []
    where = public_url(destination.url)
    password = password if password is not None else os.environ.get(PASSWORD_ENV)
    if destination.username and not password:
        raise SendFailed(f"STOW-RS to {where}: user {destination.username!r} needs a password in ${PASSWORD_ENV}")
    client = _client(destination.url, destination.username, password, timeout)
    try:
        response = client.store_instances(list(datasets))
    except (requests.RequestException, ValueError) as e:
        raise SendFailed(f"STOW-RS to {where}: {_http_problem(e, timeout)}") from None
    return _statuses(datasets, response)


def _statuses(datasets: Sequence[Dataset], response: Dataset) -> list[int]:
    """Per dataset: its FailureReason if the server lists it as failed, its WarningReason if stored with a warning,
    else success (an HTTP 200 with no per-instance detail means every instance was stored)."""
    failed = {
        str(item.get("ReferencedSOPInstanceUID", "")): int(item.get("FailureReason", PROCESSING_FAILURE))
        for item in response.get("FailedSOPSequence", [])
    }
    warned = {
        str(item.get("ReferencedSOPInstanceUID", "")): int(item.WarningReason)
        for item in response.get("ReferencedSOPSequence", [])
        if "WarningReason" in item
    }
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    return [failed.get(uid, warned.get(uid, SUCCESS)) for uid in uids]


def part10_bytes(ds: Dataset) -> bytes:
    """The dataset as a Part 10 file (preamble, file meta), as the spool keeps received instances."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _first(result: dict, tag: str) -> str | None:
    values = result.get(tag, {}).get("Value") or [None]
    return str(values[0]) if values[0] is not None else None


class DicomWebPuller:
    """Finds CR/DX instances the gateway has not seen on a DICOMweb service (QIDO-RS, paged) and fetches them
    (WADO-RS) as Part 10 bytes: the same bytes a push over C-STORE would have spooled."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        modalities: Sequence[str] = RADIOGRAPH_MODALITIES,
        timeout: float = 30,
    ) -> None:
        self.url = url.rstrip("/")
        self.where = public_url(self.url)
        self.modalities = tuple(m.upper() for m in modalities)
        self.timeout = timeout
        password = password if password is not None else os.environ.get(PASSWORD_ENV)
        self._client = _client(self.url, username, password, timeout)

    def poll(self, known: Callable[[str], bool], limit: int = 100) -> Iterator[tuple[str, bytes]]:
        """Yield (SOPInstanceUID, Part 10 bytes) for up to `limit` instances for which `known(uid)` is False.

        Lazy: each instance is fetched when the caller asks for the next one, so the caller records it (and `known`
        turns True) before the next fetch. An instance deleted between search and fetch is skipped."""
        fetched: set[str] = set()
        for modality in self.modalities:
            for result in self._search(modality):
                if len(fetched) >= limit:
                    return
                uid, study, series = (_first(result, tag) for tag in (SOP_INSTANCE_UID, STUDY_UID, SERIES_UID))
                found_modality = _first(result, MODALITY)
                if not (uid and study and series) or uid in fetched or known(uid):
                    continue
                if found_modality is not None and found_modality.upper() not in self.modalities:
                    continue  # a server that ignores the Modality filter at instance level
                data = self._fetch(study, series, uid)
                if data is not None:
                    fetched.add(uid)
                    yield uid, data

    def _search(self, modality: str) -> Iterator[dict]:
        """Every instance of one modality, a page at a time (Modality is a series attribute; Orthanc's QIDO-RS
        matches it at instance level too)."""
        offset = 0
        while True:
            try:
                page = self._client.search_for_instances(
                    search_filters={"Modality": modality}, limit=QIDO_PAGE, offset=offset
                )
            except (requests.RequestException, ValueError) as e:
                raise PullFailed(f"QIDO-RS search of {self.where}: {_http_problem(e, self.timeout)}") from None
            yield from page
            if len(page) < QIDO_PAGE:
                return
            offset += len(page)

    def _fetch(self, study: str, series: str, uid: str) -> bytes | None:
        try:
            ds = self._client.retrieve_instance(study, series, uid)
        except requests.HTTPError as e:
            if e.response is not None and e.response.status_code == 404:
                log.warning("WADO-RS %s: instance %s is gone since the search; skipped", self.where, uid)
                return None
            raise PullFailed(f"WADO-RS fetch from {self.where}: {_http_problem(e, self.timeout)}") from None
        except (requests.RequestException, ValueError) as e:
            raise PullFailed(f"WADO-RS fetch from {self.where}: {_http_problem(e, self.timeout)}") from None
        return part10_bytes(ds)
