"""Who and what, without clear identifiers: the salted patient hash and DICOM UIDs (reader keys: keys.py).

The salt comes from $CXR_SALT, else from a file `reading-salt` in the run directory, created once (mode 0600).
Several service processes on one PostgreSQL database must share it: set CXR_SALT, or serve the same run directory.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cxr.data.images import DICOM_MAGIC_END, is_dicom
from cxr.errors import CxrError

SALT_ENV = "CXR_SALT"
SALT_FILE = "reading-salt"


def load_salt(folder: str | Path) -> bytes:
    """$CXR_SALT, else the salt file in `folder`, created on first use.

    Written to a private temp file, then hard-linked into place: the link fails if the file exists, so two processes
    starting together agree on one salt, and neither can read a salt file before its content is there.
    """
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV].encode()
    path = Path(folder) / SALT_FILE
    if not path.exists():
        tmp = path.with_name(f".{SALT_FILE}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as e:
            raise CxrError(f"cannot create the salt file {path} ({e.strerror}); set ${SALT_ENV} instead") from None
        finally:
            tmp.unlink(missing_ok=True)
    salt = path.read_text().strip()
    if not salt:
        raise CxrError(f"{path} is empty; delete it (a new salt is made) or set ${SALT_ENV}")
    return salt.encode()


def patient_hash(salt: bytes, patient_id: str | None) -> str | None:
    """HMAC-SHA256 of the patient ID: the same patient links across films, the ID itself is never stored."""
    if not patient_id or not patient_id.strip():
        return None
    return hmac.new(salt, patient_id.strip().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DicomIds:
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    accession: str | None = None
    patient_id: str | None = None  # only ever passed on to patient_hash
    study_date: str | None = None
    view_position: str | None = None


def header_text(ds, keyword: str, size: int = 64) -> str | None:
    """A header value as the reading room stores it: stripped, at most `size` characters, None when absent or empty."""
    value = ds.get(keyword)
    return (str(value).strip()[:size] or None) if value is not None else None


def dicom_ids(data: bytes, filename: str | None) -> DicomIds:
    """The identifiers in a DICOM header (nothing for PNG/JPEG or a header pydicom cannot parse)."""
    if not is_dicom(Path(filename or "upload"), data[:DICOM_MAGIC_END]):
        return DicomIds()
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        return DicomIds(
            header_text(ds, "StudyInstanceUID"),
            header_text(ds, "SeriesInstanceUID"),
            header_text(ds, "SOPInstanceUID"),
            header_text(ds, "AccessionNumber"),
            header_text(ds, "PatientID"),
            header_text(ds, "StudyDate", 8),
            header_text(ds, "ViewPosition", 16),
        )
    except Exception:  # the image itself decoded (the prediction exists); a malformed header only loses the UIDs
        return DicomIds()
