"""Fixtures for the DICOM gateway tests."""

from __future__ import annotations

import pytest

from tests.gateway.orthanc import running_orthanc

# --- A real PACS: Orthanc with DICOMweb (tests/gateway/orthanc.py); skipped with the reason when not installed ---


@pytest.fixture
def orthanc(tmp_path):
    """A fresh Orthanc for one test (starts in well under a second; stopping it cleanly takes about 3 s)."""
    with running_orthanc(tmp_path) as pacs:
        yield pacs
